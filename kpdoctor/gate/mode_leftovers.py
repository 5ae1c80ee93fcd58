"""What the old mode left on a node after a kube-proxy mode switch, with cleanup commands safe for the new mode.

Unlike the removal gate's cleanup (`kpdoctor.gate.cleanup`), kube-proxy still runs here, in the new mode,
so the commands must not touch what it now uses: never `kube-proxy --cleanup` (it removes every mode's
state, the running one's too), never a blanket `grep -v KUBE` when the new mode is IPVS (IPVS mode keeps
iptables chains of its own).

- old mode iptables: kube-proxy's KUBE-* chains in any iptables backend (the kubelet's own chains
  excluded); after a switch to IPVS only the iptables mode's per-Service chains (KUBE-SVC/SEP/EXT/FW/SVL-*);
- old mode nftables: the `kube-proxy` nft tables;
- old mode IPVS: virtual servers, the `kube-ipvs0` dummy interface, KUBE-* ipsets (recorded shapes only:
  this machine's kernel has no IPVS).

What real kube-proxy v1.36 leaves when switched in the lab is measured by tests/test_klab_mode_switch.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from kpdoctor.cluster.kube_proxy_node import ProxyMode
from kpdoctor.dataplane.chain_owners import ipset_cleanup_command, kube_proxy_ipsets
from kpdoctor.gate.cleanup import IPTABLES_DUMPS, kube_proxy_chains, kube_proxy_nft_tables
from kpdoctor.gate.model import CleanupItem
from kpdoctor.node.parsed import parse_iptables_view
from kpdoctor.node.state import IPTABLES_V4_DUMPS, NodeState
from kpdoctor.shellcmd import Lit, command

IPTABLES_MODE_ONLY = re.compile(r"^KUBE-(SVC|SEP|EXT|FW|SVL)-")
_IPSET = re.compile(r"^Name:\s*(KUBE-\S+)", re.MULTILINE)
# facts that prove the absence of each old mode's state
NEEDED = {
    "iptables": IPTABLES_V4_DUMPS,
    "nftables": ("nft-ruleset.json",),
    "ipvs": ("ipvsadm-save.txt",),
}


@dataclass(frozen=True)
class OldModeLeftovers:
    items: tuple[CleanupItem, ...]  # Service state of the old mode: blocks the post-switch gate
    missing: str  # the facts (one of) that were not collected, "" when the absence is proven
    guards: tuple[CleanupItem, ...] = ()  # harmless, protective leftovers: listed, not blocking


LOCALNET_GUARD = "block incoming localnet connections"


def _localnet_guard(state: NodeState) -> list[CleanupItem]:
    """iptables mode's localnet guard (filter KUBE-FIREWALL, "block incoming localnet connections") and
    net.ipv4.conf.all.route_localnet=1: real kube-proxy v1.36 leaves both when switched to nftables (measured
    in the lab, tests/test_klab_mode_switch.py). The rule drops packets to 127.0.0.0/8 that did not come from
    it, which route_localnet=1 would otherwise let in: remove them together, or leave both."""
    dumps = [f for f in ("iptables-nft-save.txt", "iptables-legacy-save.txt") if state.text(f)] or [
        f for f in ("iptables-save.txt",) if state.text(f)]
    found = [f for f in dumps if LOCALNET_GUARD in (state.text(f) or "")]
    if not found:
        return []
    localnet = any(line.replace(" ", "") == "net.ipv4.conf.all.route_localnet=1"
                   for line in (state.text("sysctl.txt") or "").splitlines())
    ipt = {"iptables-nft-save.txt": "iptables-nft", "iptables-legacy-save.txt": "iptables-legacy"}.get(found[0],
                                                                                                   "iptables")
    rule = ("-D", "KUBE-FIREWALL", "!", "-s", "127.0.0.0/8", "-d", "127.0.0.0/8", "-m", "comment", "--comment",
            LOCALNET_GUARD, "-m", "conntrack", "!", "--ctstate", "RELATED,ESTABLISHED,DNAT", "-j", "DROP")
    cmds: list[str] = []
    if localnet:
        cmds.append(command("sysctl", "-w", "net.ipv4.conf.all.route_localnet=0",
                            note=": first, or the guard's removal exposes 127.0.0.0/8 services to the network"))
    cmds += [command(ipt, "-t", "filter", *rule), command(ipt, "-D", "INPUT", "-j", "KUBE-FIREWALL"),
             command(ipt, "-D", "OUTPUT", "-j", "KUBE-FIREWALL"), command(ipt, "-X", "KUBE-FIREWALL")]
    if ":KUBE-FIREWALL " in (state.text("ip6tables-save.txt") or ""):  # the IPv6 side: the chain and its jumps
        cmds += [command("ip6tables", "-D", "INPUT", "-j", "KUBE-FIREWALL"),
                 command("ip6tables", "-D", "OUTPUT", "-j", "KUBE-FIREWALL"),
                 command("ip6tables", "-X", "KUBE-FIREWALL")]
    return [CleanupItem(
        "filter KUBE-FIREWALL (iptables mode's localnet guard, \"block incoming localnet connections\")"
        + (" and net.ipv4.conf.all.route_localnet=1" if localnet else "")
        + ": left by kube-proxy itself; harmless (it protects while route_localnet=1), remove both together",
        tuple(cmds))]


def _shown(names: list[str]) -> str:
    uniq = sorted(set(names), key=lambda n: (len(n), n))
    return f"{len(names)} KUBE-* chains ({', '.join(uniq[:4])}{', ...' if len(uniq) > 4 else ''})"


def _iptables(state: NodeState, target: ProxyMode) -> list[CleanupItem]:
    items: list[CleanupItem] = []
    per_backend = any(state.text(f) is not None for f in ("iptables-nft-save.txt", "iptables-legacy-save.txt"))
    for fact, label, save, restore in IPTABLES_DUMPS:
        text = state.text(fact)
        if not text or (fact == "iptables-save.txt" and per_backend):
            continue  # `iptables` is one of the two backends, each dumped on its own
        chains = kube_proxy_chains(parse_iptables_view(text))
        if target == "ipvs":
            chains = [c for c in chains if IPTABLES_MODE_ONLY.match(c)]
        if not chains:
            continue
        if target == "ipvs":
            cmds = (command(save, Lit(">"), f"/root/{save}-before-cleanup.txt"),
                    command(save, Lit("|"), "grep", "-v", "-E", "KUBE-(SVC|SEP|EXT|FW|SVL)-", Lit("|"), restore,
                            note=": only the iptables mode's per-Service chains; IPVS mode's own chains stay"))
        else:
            cmds = (command(save, Lit(">"), f"/root/{save}-before-cleanup.txt"),
                    command(save, Lit("|"), "grep", "-v", "KUBE", Lit("|"), restore,
                            note=": kube-proxy no longer uses iptables (the kubelet re-creates its KUBE-* canaries)"))
        items.append(CleanupItem(f"{label}: {_shown(chains)} of the old iptables mode", cmds))
    return items


def _nftables(state: NodeState) -> list[CleanupItem]:
    return [CleanupItem(f"nftables: table {table} of the old nftables mode",
                        (command("nft", "delete", "table", *table.split(" ")),))
            for table in kube_proxy_nft_tables(state.text("nft-ruleset.json") or "")]


def _ipvs(state: NodeState) -> list[CleanupItem]:
    items = []
    services = sum(1 for line in (state.text("ipvsadm-save.txt") or "").splitlines() if line.startswith("-A "))
    if services:
        items.append(CleanupItem(f"IPVS: {services} virtual services of the old IPVS mode",
                                 (command("ipvsadm", "--clear"),)))
    if "kube-ipvs0" in (state.text("ip-addr.json") or ""):
        items.append(CleanupItem("dummy interface kube-ipvs0 of the old IPVS mode (answers for every Service IP)",
                                 (command("ip", "link", "delete", "kube-ipvs0"),)))
    every = _IPSET.findall(state.text("ipset-list.txt") or "")
    sets = kube_proxy_ipsets(every)  # kube-router's KUBE-SRC-*/KUBE-DST-* stay
    if sets:
        items.append(CleanupItem(f"ipset: {len(sets)} KUBE-* sets of the old IPVS mode",
                                 (ipset_cleanup_command(every),)))
    return items


def old_mode_leftovers(state: NodeState, old: str, target: ProxyMode) -> OldModeLeftovers:
    """The `old` mode's state on a node that now runs `target` (nothing when old == target)."""
    if old == target:
        return OldModeLeftovers((), "")
    needed = NEEDED.get(old, ())
    missing = "" if any(state.text(f) is not None for f in needed) else " or ".join(needed)
    guards: list[CleanupItem] = []
    if old == "iptables":
        items = _iptables(state, target)
        guards = _localnet_guard(state) if target == "nftables" else []
    elif old == "nftables":
        items = _nftables(state)
    else:
        items = _ipvs(state)
    return OldModeLeftovers(tuple(items), missing, tuple(guards))
