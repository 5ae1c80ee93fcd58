"""`kpdoctor gate mode-switch --to MODE --phase pre-switch`: is it safe to switch kube-proxy's mode?

Pure: cluster state + node facts in, GateResult out (same contract, renderers and exit codes as
the removal gate). Conditions, each per node:
- `target-supported`: the kube-proxy version supports the target mode (nftables alpha 1.29, beta
  1.31, GA 1.33; IPVS deprecated since 1.35, behind `KubeProxyIPVS` since 1.37);
- `kernel-ready`: the kernel has what the target needs (kernel >= 5.13 for nftables; the module
  requirements of KP-KERNEL-MODULES, one definition in `kpdoctor.kernel_requirements`);
- `semantic-diff`: the reference proxier in both modes serves every Service port alike, but for the
  documented differences (`kpdoctor.gate.mode_views`);
- `nodeport-addresses`: the node addresses NodePorts stop answering on (a warning: the switch is
  allowed, the user must know);
- `ipvs-deprecation`: advice only (warnings).
"""

from __future__ import annotations

from collections.abc import Mapping

from kpdoctor.cluster.kube_proxy_node import ProxyMode
from kpdoctor.cluster.state import ClusterState
from kpdoctor.gate.mode_nodes import GATE_NAME, MAX_LISTED, TARGETS, Node, current_mode, nodes_of
from kpdoctor.gate.mode_plan import rollout_plan
from kpdoctor.gate.mode_views import DOCUMENTED, families, node_diff, nodeport_address_change
from kpdoctor.gate.model import GateCase, GateCondition, GateReason, GateResult, blocking, unknown, warning
from kpdoctor.node.state import NodeState
from kpdoctor.proxier.context import build_input

NFT_MIN_KERNEL = (5, 13)
# (alpha, beta, GA) minor versions of kube-proxy's nftables mode (KEP-3866)
NFT_ALPHA, NFT_BETA, NFT_GA = 29, 31, 33
IPVS_DEPRECATED, IPVS_GATED, IPVS_OFF_BY_DEFAULT = 35, 37, 40


def target_supported(cluster: ClusterState, nodes: list[Node], target: ProxyMode) -> GateCondition:
    title = f"kube-proxy's version supports {target} mode"
    version = cluster.kube_proxy_version()
    if version is None:
        return GateCondition("target-supported", title, (unknown("kube-proxy", (
            "cannot prove: the kube-proxy version is unknown (no versioned kube-proxy image, no Node nodeInfo "
            "kubeProxyVersion)")),))
    minor = version[1] if version[0] == 1 else 99
    shown = f"v{version[0]}.{version[1]}"
    evidence = (f"kube-proxy {shown} (image tag / nodeInfo)",)
    reasons: list[GateReason] = []
    if target == "nftables":
        if minor < NFT_ALPHA:
            reasons.append(blocking("kube-proxy", f"kube-proxy {shown} has no nftables mode (alpha in v1.29)"))
        elif minor < NFT_BETA:
            reasons.append(blocking("kube-proxy", (
                f"nftables mode is alpha in kube-proxy {shown} (feature gate NFTablesProxyMode, off by default): "
                "upgrade to v1.33+ where it is GA")))
        elif minor < NFT_GA:
            reasons.append(warning("kube-proxy", f"nftables mode is beta in kube-proxy {shown}; GA since v1.33"))
    elif target == "ipvs":
        reasons.append(warning("kube-proxy", (
            "IPVS mode is deprecated (KEP-5495: warning since v1.35, behind the KubeProxyIPVS feature gate since "
            "v1.37, off by default from v1.40): switch to nftables mode instead (--to nftables)")))
        if minor >= IPVS_OFF_BY_DEFAULT:
            reasons.append(blocking("kube-proxy", (
                f"kube-proxy {shown} disables IPVS mode by default (KubeProxyIPVS); use nftables mode")))
        elif minor >= IPVS_GATED:
            reasons.append(warning("kube-proxy", f"kube-proxy {shown} needs the KubeProxyIPVS feature gate on"))
    for node in nodes:  # nodes on IPVS today: the timeline for their version
        mode, _ = current_mode(node)
        if mode == "ipvs" and target != "ipvs":
            reasons.append(warning(f"Node {node.name}", (
                f"runs IPVS mode, deprecated since v1.35 (KEP-5495); kube-proxy {shown} "
                + ("still enables it by default" if minor < IPVS_OFF_BY_DEFAULT else "disables it by default")
                + ": the switch to nftables is the recommended one")))
    return GateCondition("target-supported", title, tuple(reasons), evidence=evidence)


def _kernel(node: Node, cluster: ClusterState) -> tuple[tuple[int, int, int] | None, str]:
    if node.facts is not None and node.facts.kernel is not None:
        return node.facts.kernel, f"uname-r.txt: {'.'.join(map(str, node.facts.kernel))}"
    obj = cluster.node_by_name.get(node.name)
    if obj is not None and obj.kernel_version:
        from kpdoctor.node.parsed import parse_kernel_release

        found = parse_kernel_release(obj.kernel_version)
        if found is not None:
            return found, f"Node {node.name} nodeInfo.kernelVersion: {obj.kernel_version}"
    return None, ""


def kernel_ready(cluster: ClusterState, nodes: list[Node], target: ProxyMode) -> GateCondition:
    from kpdoctor.kernel_requirements import evaluate, requirements

    title = f"Every node's kernel has what {target} mode needs"
    cases = []
    proofs: list[str] = []
    for node in nodes:
        subject = f"Node {node.name}"
        reasons: list[GateReason] = []
        evidence: list[str] = []  # what proved each requirement
        if target == "nftables":
            kernel, where = _kernel(node, cluster)
            if kernel is None:
                reasons.append(unknown(subject, "cannot prove: the node's kernel version was not collected"))
            elif kernel[:2] < NFT_MIN_KERNEL:
                reasons.append(blocking(subject, (
                    f"kernel {'.'.join(map(str, kernel))} is older than 5.13, which kube-proxy's nftables mode "
                    "needs"), evidence=(where,)))
            else:
                evidence.append(where)
        if node.facts is None:
            reasons.append(unknown(subject, "cannot prove: no node facts (use a `kpdoctor collect` bundle)"))
        else:
            p = node.facts
            scheduler = node.config.ipvs_scheduler if node.config else ""
            absent_shown = p.loaded_modules is not None and p.builtin_modules is not None
            for req in requirements(target, p, scheduler):
                found = evaluate(req, p)
                if found:
                    evidence.append(found)
                elif req.hard:
                    msg = f"no evidence the kernel has {req.what} (modules {', '.join(req.modules)})"
                    reasons.append(blocking(subject, msg) if absent_shown else unknown(subject, "cannot prove: " + msg))
        proofs.extend(f"{node.name}: {e}" for e in evidence)
        cases.append(GateCase(subject, tuple(reasons)))
    return GateCondition("kernel-ready", title, cases=tuple(cases), evidence=tuple(proofs))


def semantic_diff(cluster: ClusterState, nodes: list[Node], target: ProxyMode) -> GateCondition:
    title = f"Every Service port behaves the same in {target} mode (but for documented differences)"
    cases = []
    for node in nodes:
        subject = f"Node {node.name}"
        current, _ = current_mode(node)
        if node.config is None:
            cases.append(GateCase(subject, (unknown(subject, "cannot prove: no kube-proxy configuration found"),)))
            continue
        if current == target:
            cases.append(GateCase(subject))
            continue
        reasons: list[GateReason] = []
        for family in families(cluster):
            d = node_diff(cluster, node.name, node.config, target, family)
            for c in d.undocumented[:MAX_LISTED]:
                reasons.append(blocking(f"Service {c.service}", (
                    f"{c.frontend} on {node.name} ({family}) changes from {d.current} to {d.target}: {c.what}"),
                    evidence=(f"{d.current}: {c.before}", f"{d.target}: {c.after}")))
            if len(d.undocumented) > MAX_LISTED:
                reasons.append(blocking(subject, f"{len(d.undocumented) - MAX_LISTED} more undocumented changes"))
            by_kind: dict[str, list[str]] = {}
            for c in d.documented:
                by_kind.setdefault(c.documented, []).append(c.frontend)
            for kind, fes in sorted(by_kind.items()):
                reasons.append(warning(subject, (
                    f"{len(fes)} frontend{'s' if len(fes) != 1 else ''} change as documented ({family}): "
                    f"{DOCUMENTED[kind]}"), evidence=tuple(fes[:MAX_LISTED])))
            if kind_localhost := by_kind.get("localhost-nodeport"):
                reasons.append(warning(subject, (
                    f"{len(kind_localhost)} NodePorts answer on 127.0.0.1 today and will not after the switch; "
                    "which clients use them cannot be known from rules: check on the node with "
                    "`conntrack -L -d 127.0.0.1 -p tcp` and `ss -tn dst 127.0.0.1`")))
        cases.append(GateCase(subject, tuple(reasons)))
    return GateCondition("semantic-diff", title, cases=tuple(cases))


def nodeport_addresses(cluster: ClusterState, nodes: list[Node], target: ProxyMode) -> GateCondition:
    title = "NodePorts keep answering on the addresses they answer on today"
    has_nodeports = any(s.type in ("NodePort", "LoadBalancer") for s in cluster.services)
    cases = []
    for node in nodes:
        subject = f"Node {node.name}"
        if node.config is None or current_mode(node)[0] == target or not has_nodeports:
            cases.append(GateCase(subject))
            continue
        if node.facts is not None and node.facts.interfaces is not None:
            addrs = tuple(node.facts.addresses(4) + node.facts.addresses(6))
            source = "ip-addr.json"
        else:
            obj = cluster.node_by_name.get(node.name)
            addrs = tuple(a.address for a in obj.addresses if a.type in ("InternalIP", "ExternalIP")) \
                if obj is not None else ()
            source = f"Node {node.name} status.addresses (the node's other addresses were not collected)"
        cur = build_input(cluster, node.name, config=node.config)
        tgt = build_input(cluster, node.name, config=node.config, mode=target)
        change = nodeport_address_change(cur, tgt, addrs, source)
        reasons: tuple[GateReason, ...] = ()
        if change.lost:
            reasons = (warning(subject, (
                f"NodePorts stop answering on {', '.join(change.lost)} (today: {', '.join(change.before)}; "
                f"after: {', '.join(change.after)}): nftables mode's default nodePortAddresses is [primary]. "
                "To keep them, set nodePortAddresses explicitly in the ConfigMap before the switch"),
                evidence=(source,)),)
        elif source != "ip-addr.json" and change.before != change.after:
            reasons = (warning(subject, (
                f"NodePorts answer on {', '.join(change.before)} today and on {', '.join(change.after)} after; "
                "the node's other addresses were not collected")),)
        cases.append(GateCase(subject, reasons))
    return GateCondition("nodeport-addresses", title, cases=tuple(cases))


def modes_known(nodes: list[Node], target: ProxyMode) -> GateCondition:
    title = "The current mode of every node is known"
    if not nodes:
        return GateCondition("current-mode", title, (unknown("Nodes", "cannot prove: no nodes in the input"),))
    cases = []
    for node in nodes:
        mode, where = current_mode(node)
        subject = f"Node {node.name}"
        if mode is None:
            cases.append(GateCase(subject, (unknown(subject, "cannot prove: no kube-proxy configuration found"),)))
        elif mode not in TARGETS:
            cases.append(GateCase(subject, (unknown(subject, f"cannot prove: unknown mode {mode!r}"),)))
        elif mode == target:
            cases.append(GateCase(subject, (warning(subject, f"already in {target} mode ({where})"),)))
        else:
            cases.append(GateCase(subject))
    return GateCondition("current-mode", title, cases=tuple(cases))


def run_mode_switch(cluster: ClusterState, nodes: Mapping[str, NodeState] | None, *, target: ProxyMode,
                    source: str = "") -> GateResult:
    known = nodes_of(cluster, nodes or {})
    conditions: tuple[GateCondition, ...] = (
        modes_known(known, target),
        target_supported(cluster, known, target),
        kernel_ready(cluster, known, target),
        semantic_diff(cluster, known, target),
    )
    if target == "nftables":
        conditions += (nodeport_addresses(cluster, known, target),)
    from kpdoctor.gate.mode_config import config_carried
    from kpdoctor.gate.mode_readiness import userland_ready

    conditions += (userland_ready(cluster, known, target), config_carried(cluster, known, target))
    if target == "nftables":
        from kpdoctor.gate.mode_firewall import host_firewall

        conditions += (host_firewall(cluster, known, target),)
    plan = rollout_plan(cluster, {n.name: current_mode(n)[0] for n in known}, target)
    return GateResult(gate=GATE_NAME, phase="pre-switch", source=source or cluster.source, conditions=conditions,
                      cleanup=plan, subject=f"switch kube-proxy to {target} mode")
