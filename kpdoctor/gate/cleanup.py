"""kube-proxy's leftovers on a node, and the plan that removes them once the DaemonSet is gone.

Deleting the DaemonSet stops kube-proxy but leaves its state behind: KUBE-*
chains (in whichever iptables backend it used), the `kube-proxy` nft tables,
IPVS virtual services on `kube-ipvs0`, KUBE-* ipsets. Those stale rules keep
DNATing to old endpoints next to Cilium's datapath, so they must go — after the
DaemonSet is deleted (or kube-proxy re-creates them) and together with the
ConfigMap (or `kubeadm upgrade` reinstalls kube-proxy).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from kpdoctor.cluster.state import KUBE_SYSTEM, ClusterState
from kpdoctor.dataplane.chain_owners import grep_v_kube_spares, ipset_cleanup_command, kube_proxy_ipsets
from kpdoctor.dataplane.chain_owners import kube_proxy_chains as _owned_by_kube_proxy
from kpdoctor.dataplane.nft_structure import parse_nft_structure
from kpdoctor.gate.context import GateContext
from kpdoctor.gate.model import (
    CleanupItem,
    CleanupPlan,
    GateCase,
    GateCondition,
    GateReason,
    NodeCleanup,
    blocking,
)
from kpdoctor.gate.model import unknown as unknown_reason
from kpdoctor.node.parsed import IptablesView, ParsedNode
from kpdoctor.node.state import IPTABLES_V4_DUMPS, NodeState
from kpdoctor.shellcmd import Lit, Name, command

# (fact, backend label, save command, restore command)
IPTABLES_DUMPS = (
    ("iptables-save.txt", "iptables (default backend)", "iptables-save", "iptables-restore"),
    ("iptables-nft-save.txt", "iptables-nft", "iptables-nft-save", "iptables-nft-restore"),
    ("iptables-legacy-save.txt", "iptables-legacy", "iptables-legacy-save", "iptables-legacy-restore"),
    ("ip6tables-save.txt", "ip6tables (default backend)", "ip6tables-save", "ip6tables-restore"),
)
REQUIRED_FACTS = (IPTABLES_V4_DUMPS, ("nft-ruleset.json",))
_COUNTERS = re.compile(r"\[\d+:\d+\]")


def kube_proxy_chains(dump: IptablesView | None) -> list[str]:
    """kube-proxy's chains declared in a parsed iptables-save dump, table by table (the kubelet's stay:
    `kpdoctor.dataplane.chain_owners` says which are whose)."""
    if dump is None:
        return []
    return [name for table, chains in dump.policies.items() for name in _owned_by_kube_proxy(table, chains)]


def _by_hand(dump: IptablesView | None, save: str, restore: str) -> str:
    """`save | grep -v KUBE | restore`, unless that would also delete kube-router's KUBE-* chains."""
    spares = grep_v_kube_spares(dump.policies if dump else {}, save, restore)
    return spares or command(save, Lit("|"), "grep", "-v", "KUBE", Lit("|"), restore)


def _dump_body(text: str) -> str:
    """A dump without its comment lines and packet counters, to tell two dumps of one backend apart."""
    return _COUNTERS.sub("", "\n".join(line for line in text.splitlines() if not line.startswith("#")))


def kube_proxy_nft_tables(ruleset_json: str) -> list[str]:
    """`family kube-proxy` for each kube-proxy table of `nft -j list ruleset` (read by the one light nft reader)."""
    found = parse_nft_structure(ruleset_json) if ruleset_json else None
    return [f"{family} kube-proxy" for family, name in (found.tables if found else ()) if name == "kube-proxy"]


def _has_kube_ipvs0(addr_json: str) -> bool:
    try:
        links = json.loads(addr_json or "[]")
    except (json.JSONDecodeError, RecursionError):
        return "kube-ipvs0" in (addr_json or "")
    return any(isinstance(link, dict) and link.get("ifname") == "kube-ipvs0" for link in links or [])


@dataclass(frozen=True, slots=True)
class NodeLeftovers:
    node: str
    items: tuple[CleanupItem, ...]
    missing_facts: tuple[str, ...]  # required facts that were not collected


def _summary(names: list[str]) -> str:
    shown = ", ".join(sorted(set(names), key=lambda n: (len(n), n))[:4])
    return f"{len(names)} KUBE-* chains ({shown}{', ...' if len(set(names)) > 4 else ''})"


def node_leftovers(state: NodeState) -> NodeLeftovers:
    items: list[CleanupItem] = []
    parsed = ParsedNode(state)
    seen_dumps: set[str] = set()
    for fact, label, save, restore in IPTABLES_DUMPS:
        text = state.text(fact)
        if not text:
            continue
        body = _dump_body(text)
        if fact == "iptables-save.txt" and body in (_dump_body(state.text("iptables-nft-save.txt") or ""),
                                                     _dump_body(state.text("iptables-legacy-save.txt") or "")):
            continue  # `iptables` is one of the two backends here: listed under its own name below
        if body in seen_dumps:
            continue
        seen_dumps.add(body)
        dump = parsed.iptables(fact)
        chains = kube_proxy_chains(dump)
        if chains:
            items.append(CleanupItem(f"{label}: {_summary(chains)}", (
                command("kube-proxy", "--cleanup"),
                _by_hand(dump, save, restore),
            )))
    for family in (t.rsplit(" ", 1)[0] for t in kube_proxy_nft_tables(state.text("nft-ruleset.json") or "")):
        items.append(CleanupItem(f"nftables: table {family} kube-proxy", (
            command("kube-proxy", "--cleanup"), command("nft", "delete", "table", family, "kube-proxy"))))
    ipvs = len(parsed.ipvs_services or ())
    if ipvs:
        items.append(CleanupItem(f"IPVS: {ipvs} virtual services", ("kube-proxy --cleanup", "ipvsadm --clear")))
    if _has_kube_ipvs0(state.text("ip-addr.json") or ""):
        items.append(CleanupItem("dummy interface kube-ipvs0", ("ip link delete kube-ipvs0",)))
    sets = kube_proxy_ipsets(parsed.ipsets or ())  # kube-router's KUBE-SRC-*/KUBE-DST-* stay
    if sets:
        items.append(CleanupItem(f"ipset: {len(sets)} KUBE-* sets ({', '.join(sets[:3])}{', ...' if len(sets) > 3 else ''})",
                                 (ipset_cleanup_command(parsed.ipsets or ()),)))
    missing = tuple(
        " or ".join(group) for group in REQUIRED_FACTS if not any(state.text(f) is not None for f in group)
    )
    return NodeLeftovers(state.name, tuple(items), missing)


def _kube_proxy_image(cluster: ClusterState) -> str:
    for ds in cluster.kube_proxy_daemonsets:
        for c in ds.containers:
            if c.image:
                return c.image
    return ""


def cleanup_plan(ctx: GateContext) -> CleanupPlan:
    cluster = ctx.cluster
    commands: list[str] = []
    for ds in cluster.kube_proxy_daemonsets:
        commands.append(command("kubectl", "-n", Name(ds.namespace), "delete", "daemonset", Name(ds.name)))
    for cm in cluster.configmaps:
        if cm.namespace == KUBE_SYSTEM and cm.name.startswith("kube-proxy"):
            commands.append(command("kubectl", "-n", Name(cm.namespace), "delete", "configmap", Name(cm.name)))
    if not commands:
        commands.append("# kube-proxy DaemonSet and ConfigMaps: none left in the input")
    image = _kube_proxy_image(cluster)
    notes = (
        "Order: delete the DaemonSet(s) first (a running kube-proxy re-creates its rules), then the ConfigMap(s), "
        "then clean every node.",
        "Deleting ConfigMap kube-system/kube-proxy is what stops `kubeadm upgrade` from reinstalling the kube-proxy "
        "addon; or run upgrades with --skip-phases=addon/kube-proxy.",
        "`kube-proxy --cleanup` (as root on the node, with the binary of the removed version"
        + (f", e.g. from {image}" if image else "") + ") removes iptables, IPVS and nftables state in one go; "
        "the per-backend commands below are the equivalent by hand (Cilium's documented iptables-save | grep -v KUBE "
        "| iptables-restore also drops the kubelet's KUBE-* canary chains, which the kubelet re-creates).",
    )
    nodes = []
    for node in ctx.all_nodes:
        state = ctx.nodes.get(node)
        if state is None or not state.reachable:
            nodes.append(NodeCleanup(node, False, (CleanupItem("not inspected: run the generic cleanup", (
                "kube-proxy --cleanup",
                "iptables-save | grep -v KUBE | iptables-restore",
                "ip6tables-save | grep -v KUBE | ip6tables-restore",
                "nft delete table ip kube-proxy; nft delete table ip6 kube-proxy",
                "ipvsadm --clear; ip link delete kube-ipvs0",
            )),), note="no node facts in the input"))
            continue
        left = node_leftovers(state)
        note = f"not collected: {', '.join(left.missing_facts)}" if left.missing_facts else ""
        nodes.append(NodeCleanup(node, True, left.items, note=note))
    return CleanupPlan(tuple(commands), notes, tuple(nodes))


def no_leftover_state(ctx: GateContext) -> GateCondition:
    """Post-removal: no kube-proxy state on any node (needs the node facts to prove it)."""
    title = "No kube-proxy state left on any node (KUBE-* chains, nft table kube-proxy, IPVS, ipsets)"
    cases = []
    if not ctx.all_nodes:
        return GateCondition("no-leftover-state", title, (unknown_reason("Nodes", "cannot prove: no nodes"),))
    for node in ctx.all_nodes:
        subject = f"Node {node}"
        state = ctx.nodes.get(node)
        reasons: list[GateReason] = []
        if state is None or not state.reachable:
            why = state.error if state is not None else "no node facts in the input (use a bundle)"
            reasons.append(unknown_reason(subject, f"cannot prove {node} is clean: {why}"))
        else:
            left = node_leftovers(state)
            for item in left.items:
                reasons.append(blocking(subject, f"kube-proxy leftover on {node}: {item.what}",
                                        commands=item.commands))
            if left.missing_facts:
                reasons.append(unknown_reason(subject, f"cannot prove {node} is clean: not collected: "
                                                       f"{', '.join(left.missing_facts)}"))
        cases.append(GateCase(subject, tuple(reasons)))
    return GateCondition("no-leftover-state", title, cases=tuple(cases))
