"""Who owns an iptables chain - kube-proxy, the kubelet, or another component - per table. The one list.

Every place that asks "is this kube-proxy's chain?" (KP-LEFTOVER-RULES and KP-BACKEND-SPLIT through
`IptablesDump.kube_chains`, the gate's cleanup plan, the node summary's hint and host-firewall facts,
`kpdoctor.iptables_backend`) derives its answer from `OWNERS` here.

The kubelet's chains, from kubelet `pkg/kubelet/kubelet_network_linux.go` (v1.28+):
- `KUBE-IPTABLES-HINT` (mangle) tells iptables-wrappers which backend the node uses;
- `KUBE-KUBELET-CANARY` (mangle, nat, filter; `iptClient.Monitor`) detects a flush;
- `KUBE-FIREWALL` in **filter** (IPv4) holds the "block incoming localnet connections" rule. kube-proxy's
  iptables mode ensures an identical copy of that chain, but the kubelet keeps re-creating it after
  kube-proxy is gone, so it is never a kube-proxy leftover.
kube-proxy's IPVS mode has its own, unrelated `KUBE-FIREWALL` in **nat** (LoadBalancer source ranges):
that one is kube-proxy's.

kube-router's network policy controller (also embedded in k3s) names its chains `KUBE-*` too, from
cloudnativelabs/kube-router `pkg/controllers/netpol/network_policy_controller.go`: `KUBE-ROUTER-INPUT`,
`KUBE-ROUTER-FORWARD`, `KUBE-ROUTER-OUTPUT` (its hooks from the built-in filter chains), `KUBE-NWPLCY-*`
(one per NetworkPolicy, and `KUBE-NWPLCY-DEFAULT`) and `KUBE-POD-FW-*` (one per pod); its older service
proxy adds `KUBE-ROUTER-SERVICES`. They are kube-router's: they stay (and must stay) when kube-proxy is gone.
Every other `KUBE-*` chain counts as kube-proxy's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from kpdoctor.shellcmd import Lit, command

KUBE_PROXY = "kube-proxy"
KUBELET = "kubelet"
KUBE_ROUTER = "kube-router"


@dataclass(frozen=True, slots=True)
class ChainOwner:
    """Chains `owner` creates: exact `names` or names starting with one of `prefixes`, in `tables` (None: any)."""

    owner: str
    names: frozenset[str] = frozenset()
    prefixes: tuple[str, ...] = ()
    tables: frozenset[str] | None = None

    def owns(self, table: str, chain: str) -> bool:
        if self.tables is not None and table not in self.tables:
            return False
        return chain in self.names or chain.startswith(self.prefixes)


# First match wins: the kubelet's exact names and kube-router's prefixes come before kube-proxy's `KUBE-`.
OWNERS: tuple[ChainOwner, ...] = (
    ChainOwner(KUBELET, names=frozenset({"KUBE-IPTABLES-HINT", "KUBE-KUBELET-CANARY"})),
    ChainOwner(KUBELET, names=frozenset({"KUBE-FIREWALL"}), tables=frozenset({"filter"})),
    ChainOwner(KUBE_ROUTER, prefixes=("KUBE-ROUTER-", "KUBE-NWPLCY-", "KUBE-POD-FW-")),
    ChainOwner(KUBE_PROXY, prefixes=("KUBE-",)),
    ChainOwner("Docker", prefixes=("DOCKER",)),
    ChainOwner("Calico", prefixes=("cali-",)),
    ChainOwner("Cilium", prefixes=("CILIUM_", "OLD_CILIUM_")),
    ChainOwner("flannel", prefixes=("FLANNEL-",)),
    ChainOwner("ufw", prefixes=("ufw-", "ufw6-")),
    ChainOwner("fail2ban", prefixes=("f2b-",)),
    ChainOwner("firewalld", prefixes=("IN_public", "FWDI_", "INPUT_direct")),
)

# kubernetes-sigs/iptables-wrappers looks for these two kubelet chains to pick the node's backend.
HINT_CHAINS = ("KUBE-IPTABLES-HINT", "KUBE-KUBELET-CANARY")
# Host firewalls whose iptables chains the node summary reports (Calico's policy chains filter host traffic too).
HOST_FIREWALL_OWNERS = ("ufw", "fail2ban", "firewalld", "Calico")
HOST_FIREWALL_PREFIXES: tuple[str, ...] = tuple(
    p for name in HOST_FIREWALL_OWNERS for o in OWNERS if o.owner == name for p in o.prefixes
)


def _kubelet_names() -> tuple[frozenset[str], Mapping[str, frozenset[str]]]:
    anywhere: set[str] = set()
    per_table: dict[str, set[str]] = {}
    for o in OWNERS:
        if o.owner != KUBELET:
            continue
        if o.tables is None:
            anywhere |= o.names
        else:
            for t in o.tables:
                per_table.setdefault(t, set()).update(o.names)
    return frozenset(anywhere), {t: frozenset(anywhere | names) for t, names in per_table.items()}


_KUBELET_ANY_TABLE, _KUBELET_BY_TABLE = _kubelet_names()
_KUBE_PREFIX = "KUBE-"
# Other components' `KUBE-*` prefixes (any table): the fast filter below skips them.
_OTHER_KUBE_PREFIXES: tuple[str, ...] = tuple(
    p for o in OWNERS if o.owner != KUBE_PROXY and o.tables is None for p in o.prefixes if p.startswith(_KUBE_PREFIX)
)


def kubelet_chains(table: str) -> frozenset[str]:
    """The kubelet's chain names in `table`."""
    return _KUBELET_BY_TABLE.get(table, _KUBELET_ANY_TABLE)


def owner(table: str, chain: str) -> str | None:
    """Who creates `chain` in `table`, or None when no component on the list does."""
    for o in OWNERS:
        if o.owns(table, chain):
            return o.owner
    return None


def is_kube_proxy_chain(table: str, chain: str) -> bool:
    return chain.startswith(_KUBE_PREFIX) and chain not in kubelet_chains(table) \
        and not chain.startswith(_OTHER_KUBE_PREFIXES)


def kube_proxy_chains(table: str, chains: Iterable[str]) -> list[str]:
    """The names in `chains` (declared in `table`) that are kube-proxy's, in their order.

    Same answer as `owner(table, c) == KUBE_PROXY` for each name, as one set lookup (and one prefix test)
    per name: dumps hold 100k chains."""
    kubelet = kubelet_chains(table)
    others = _OTHER_KUBE_PREFIXES
    return [c for c in chains if c.startswith(_KUBE_PREFIX) and c not in kubelet and not c.startswith(others)]


def chains_of(who: str, table: str, chains: Iterable[str]) -> list[str]:
    """The names in `chains` (declared in `table`) that `who` owns, in their order."""
    return [c for c in chains if owner(table, c) == who]


def grep_v_kube_spares(tables: Mapping[str, Iterable[str]], save: str, restore: str) -> str | None:
    """None when `save | grep -v KUBE | restore` removes only kube-proxy's (and the kubelet's, re-created) chains
    from a dump declaring `tables` (table -> chain names); else why that command must not be run (it would delete
    kube-router's KUBE-* chains too)."""
    router = [c for table, chains in tables.items() for c in chains_of(KUBE_ROUTER, table, chains)]
    if not router:
        return None
    return (f"# not `{save} | grep -v KUBE | {restore}`: it would also delete kube-router's {len(router)} chains "
            "(KUBE-ROUTER-*, KUBE-NWPLCY-*, KUBE-POD-FW-*); use `kube-proxy --cleanup`")


# ipsets named KUBE-*: kube-proxy's IPVS mode (KUBE-CLUSTER-IP, KUBE-LOOP-BACK, KUBE-NODE-PORT-TCP, ...) and
# kube-router's network policy controller (`kubeSourceIPSetPrefix` "KUBE-SRC-", `kubeDestinationIPSetPrefix`
# "KUBE-DST-", in the same source file as its chain names).
KUBE_ROUTER_IPSET_PREFIXES = ("KUBE-SRC-", "KUBE-DST-")


def kube_proxy_ipsets(names: Iterable[str]) -> list[str]:
    """The names in `names` (ipsets) that are kube-proxy's, in their order."""
    return [n for n in names if n.startswith(_KUBE_PREFIX) and not n.startswith(KUBE_ROUTER_IPSET_PREFIXES)]


def ipset_cleanup_command(names: Iterable[str], *, on: str | None = None) -> str:
    """`ipset list -n | grep ^KUBE- | xargs -r -n1 ipset destroy`, with a `grep -v` sparing kube-router's sets
    when `names` (the node's ipsets) hold any; `on` names the node in the trailing comment."""
    spare = ("|", "grep", "-v", "-e", "^KUBE-SRC-", "-e", "^KUBE-DST-") \
        if any(n.startswith(KUBE_ROUTER_IPSET_PREFIXES) for n in names) else ()
    words = ("ipset", "list", "-n", "|", "grep", "^KUBE-", *spare, "|", "xargs", "-r", "-n1", "ipset", "destroy")
    return command(*(Lit(w) if w == "|" else w for w in words), on=on)
