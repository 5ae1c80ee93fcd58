"""Never suggest removing what serves Services: destructive remediation commands withheld per node.

A check's fix may remove kube-proxy state (KP-LEFTOVER-RULES, KP-BACKEND-SPLIT,
KP-CILIUM-KPR). That is right only for state nothing relies on. On a node where
no replacement (Cilium's kube-proxy replacement, proven by its agent) serves
Services, a command that removes the dataplane kube-proxy maintains there -
or any of them when which one is not known, or kube-proxy's objects, or
`kube-proxy --cleanup` (every dataplane) - takes every Service down on it.
Such commands are commented out (`kpdoctor.destructive.comment_out`) and the
fix says why. Works on the printed command strings, whatever built them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace

from kpdoctor.checks_api import CheckContext
from kpdoctor.destructive import command_part, comment_out, is_destructive
from kpdoctor.findings import Finding, Remediation

OBJECTS, ALL, NFT, IPVS, LEGACY, IPT_NFT = "kube-proxy objects", "all", "nftables", "ipvs", "iptables-legacy", \
    "iptables-nft"
_IPT_TOOL = re.compile(r"\bip6?tables(-legacy|-nft)?(-save|-restore)?\b")


def targets(command: str, default_backend: str = "") -> frozenset[str]:
    """What a destructive `command` removes (empty when it removes nothing of kube-proxy's)."""
    if not is_destructive(command):
        return frozenset()
    text = command_part(command)
    found: set[str] = set()
    if re.search(r"\bkubectl\b", text):
        found.add(OBJECTS)
    if re.search(r"\bkube-proxy\s+--cleanup\b", text):
        found.add(ALL)
    if re.search(r"\bnft\s", text):
        found.add(NFT)
    if re.search(r"\b(ipvsadm|ipset|kube-ipvs0)\b", text):
        found.add(IPVS)
    for match in _IPT_TOOL.finditer(text):
        flavour = match.group(1)
        if flavour == "-legacy":
            found.add(LEGACY)
        elif flavour == "-nft":
            found.add(IPT_NFT)
        else:  # the host's default iptables
            found |= {LEGACY} if default_backend == "legacy" else {IPT_NFT} if default_backend == "nf_tables" \
                else {LEGACY, IPT_NFT}
    return frozenset(found)


@dataclass(frozen=True)
class Serving:
    """What serves Services on a node: a proven replacement, or kube-proxy's `live` dataplanes (None: unknown)."""

    node: str
    replacement: bool
    live: frozenset[str] | None
    why: str
    default_backend: str = ""

    def unsafe(self, command: str) -> bool:
        hit = targets(command, self.default_backend)
        if not hit or self.replacement:
            return False
        return self.live is None or bool(hit & (self.live | {OBJECTS, ALL}))


def _proven_replacement(ctx: CheckContext, names: Iterable[str]) -> bool:
    """The Cilium agent on every one of the nodes proves it replaces kube-proxy (as the removal gate asks)."""
    from kpdoctor.cilium import agent_ready, proves_replacement, read_agent_status

    names = list(names)
    if not names or not ctx.cluster.cilium_pods:
        return False
    nodes = ctx.nodes if ctx.node is None else {ctx.node.name: ctx.node}
    for name in names:
        state = nodes.get(name)
        status = read_agent_status(name, state)[0] if state is not None else None
        if not proves_replacement(status, agent_ready(p for p in ctx.cluster.cilium_pods if p.node_name == name)):
            return False
    return True


def node_serving(ctx: CheckContext) -> Serving:
    """For the node of a node-scope context."""
    from kpdoctor.iptables_backend import node_maintained_backend
    from kpdoctor.node_context import configured_mode, kube_proxy_expected, parsed

    node = ctx.node
    assert node is not None
    p = parsed(ctx)
    default = p.iptables_version.backend if p.iptables_version else ""
    if _proven_replacement(ctx, [node.name]):
        return Serving(node.name, True, frozenset(), f"Cilium's kube-proxy replacement serves Services on {node.name}",
                       default)
    found = configured_mode(ctx) if kube_proxy_expected(ctx) else None
    mode = p.proxy_mode or (found[0] if found else None)
    if mode is None:
        return Serving(node.name, False, None, f"no replacement proven on {node.name} and kube-proxy's mode there is "
                       "unknown: the rules present may be the only thing serving Services", default)
    backend = node_maintained_backend(p)
    ipt = frozenset({f"iptables-{backend}"}) if backend else frozenset({LEGACY, IPT_NFT})
    live = {"nftables": frozenset({NFT}), "ipvs": ipt | {IPVS}}.get(mode, ipt)
    return Serving(node.name, False, live, f"kube-proxy ({mode} mode) is the only thing serving Services on "
                   f"{node.name}: no replacement proven there", default)


def cluster_serving(ctx: CheckContext) -> Serving:
    """For a cluster-scope context: safe only when the replacement is proven on every kube-proxy node."""
    pods = {p.node_name for p in ctx.cluster.kube_proxy_pods if p.node_name}
    names = sorted(pods or ctx.nodes)
    if _proven_replacement(ctx, names):
        return Serving("cluster", True, frozenset(), "Cilium's kube-proxy replacement is proven on every node")
    return Serving("cluster", False, None, "Cilium's kube-proxy replacement is not proven on every node that runs "
                   "kube-proxy (run `kpdoctor gate kube-proxy-removal`): kube-proxy may be the only thing serving "
                   "Services there")


def withhold(finding: Finding, serving: Serving) -> Finding:
    """`finding` with the commands that would remove what serves Services commented out, and why."""
    rem = finding.remediation
    if rem is None or not any(serving.unsafe(c) for c in rem.commands):
        return finding
    commands = tuple(comment_out(c) if serving.unsafe(c) else c for c in rem.commands)
    note = (f"NOT SAFE TO RUN now, commented out: the commands that remove kube-proxy state ({serving.why}). "
            "Run them only once Services are served without that state.")
    return replace(finding, remediation=Remediation(f"{rem.text} {note}".strip(), commands),
                   labels=(*finding.labels, ("withheld", str(sum(1 for c in rem.commands if serving.unsafe(c))))))


def guard(findings: list[Finding], ctx: CheckContext) -> list[Finding]:
    """The engine's pass over one check run's findings (cheap when none prints a destructive command)."""
    if not any(f.remediation and any(is_destructive(c) for c in f.remediation.commands) for f in findings):
        return findings
    try:
        serving = node_serving(ctx) if ctx.node is not None else cluster_serving(ctx)
    except Exception:  # noqa: BLE001 - a view that cannot be built: nothing proves the commands safe
        serving = Serving(ctx.node.name if ctx.node else "cluster", False, None,
                          "what serves Services there could not be determined")
    return [withhold(f, serving) for f in findings]
