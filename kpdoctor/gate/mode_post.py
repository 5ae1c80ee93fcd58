"""`kpdoctor gate mode-switch --phase post-switch --baseline FILE`: did the switch really happen everywhere?

Pure: cluster state + node facts + the pre-switch baseline in, GateResult out. Per node that runs
kube-proxy, every condition must be proven (zero false passes: an unknown is exit 3, never 0):
- `reports-target`: kube-proxy reports the target mode (its /proxyMode, else the last "Using X Proxier"
  log line, else cannot prove) and is not crash-looping (CrashLoopBackOff / not running blocks; restarts
  since the pod started cannot be proven stable);
- `configured-target`: the node's own kube-proxy configuration (pod -> DaemonSet -> ConfigMap, one per
  DaemonSet) says the target: a DaemonSet not switched would bring the old mode back on its next restart;
- `target-rules`: the node's rules in the target mode exist and equal the reference proxier's for it;
- `old-mode-gone`: none of the old mode's state is left (leftovers listed with cleanup commands that are
  safe next to the new mode, `kpdoctor.gate.mode_leftovers`);
- `baseline-unchanged`: the node's view per Service equals the baseline's but for the documented
  differences (warnings) and for changes the cluster objects made since (warnings, said so).
"""

from __future__ import annotations

from collections.abc import Mapping

from kpdoctor.cluster.kube_proxy_node import ProxyMode
from kpdoctor.cluster.state import ClusterState
from kpdoctor.dataplane.semantic import SemanticView, diff
from kpdoctor.findings import Severity
from kpdoctor.gate.mode_baseline import Baseline
from kpdoctor.gate.mode_leftovers import old_mode_leftovers
from kpdoctor.gate.mode_nodes import GATE_NAME, MAX_LISTED, Node, nodes_of
from kpdoctor.gate.mode_views import DOCUMENTED, compare, families, mode_view
from kpdoctor.gate.model import GateCase, GateCondition, GateReason, GateResult, blocking, unknown, warning
from kpdoctor.node.state import NodeState
from kpdoctor.proxier.context import build_input

NOT_RUNNING = ("CrashLoopBackOff", "Error", "CreateContainerConfigError", "ImagePullBackOff", "ErrImagePull")


def _reported_mode(cluster: ClusterState, node: Node, state: NodeState | None) -> tuple[str | None, str]:
    from kpdoctor.cluster.kube_proxy_node import KUBE_PROXY_LOG, logged_mode

    if node.facts is not None and node.facts.proxy_mode:
        return node.facts.proxy_mode.strip().lower(), f"kube-proxy/proxyMode.txt: {node.facts.proxy_mode.strip()}"
    pod = cluster.kube_proxy_pod_on(node.name)
    log = cluster.logs.get(pod.key) if pod is not None else None
    if log is None and state is not None:
        log = state.text(KUBE_PROXY_LOG)
    found = logged_mode(log)
    if found is not None:
        return found[0], f"kube-proxy log: {found[1][:200]}"
    return None, ""


def reports_target(cluster: ClusterState, nodes: list[Node], states: Mapping[str, NodeState],
                   target: ProxyMode) -> GateCondition:
    title = f"Every node's kube-proxy runs and reports {target} mode"
    cases = []
    for node in nodes:
        subject = f"Node {node.name}"
        reasons: list[GateReason] = []
        pod = cluster.kube_proxy_pod_on(node.name)
        if pod is not None:
            bad = [c for c in pod.container_statuses if c.reason in NOT_RUNNING or c.state in ("waiting", "terminated")]
            if bad or (pod.phase and pod.phase not in ("Running",)):
                why = ", ".join(sorted({c.reason or c.state for c in bad})) or f"phase {pod.phase}"
                reasons.append(blocking(subject, (
                    f"kube-proxy pod {pod.key} is not running ({why}, {pod.restart_count} restarts): kube-proxy "
                    f"fails in the new mode; read `kubectl -n {pod.namespace} logs {pod.name} --previous` and roll "
                    "back"), evidence=tuple(f"{c.name}: last exit {c.last_exit_code} {c.last_reason}".strip()
                                             for c in bad if c.last_exit_code is not None)))
            elif pod.restart_count:
                reasons.append(unknown(subject, (
                    f"cannot prove kube-proxy is stable: pod {pod.key} restarted {pod.restart_count} times since it "
                    "started (a crash loop between restarts looks the same); read its log --previous")))
        mode, where = _reported_mode(cluster, node, states.get(node.name))
        if mode is None:
            reasons.append(unknown(subject, (
                "cannot prove the mode kube-proxy runs: no /proxyMode (kube-proxy/proxyMode.txt) and no "
                "\"Using ... Proxier\" log line")))
        elif mode != target:
            reasons.append(blocking(subject, f"kube-proxy still runs {mode} mode, not {target}",
                                    evidence=(where,)))
        cases.append(GateCase(subject, tuple(reasons)))
    return GateCondition("reports-target", title, cases=tuple(cases))


def configured_target(cluster: ClusterState, nodes: list[Node], target: ProxyMode) -> GateCondition:
    title = f"Every kube-proxy DaemonSet's configuration says {target}"
    cases = []
    for node in nodes:
        subject = f"Node {node.name}"
        if node.config is None:
            cases.append(GateCase(subject, (unknown(subject, "cannot prove: no kube-proxy configuration found"),)))
        elif node.config.effective_mode != target:
            found = cluster.proxy_config_for(node.name)
            ds = f"DaemonSet {found.daemonset.key} " if found is not None and found.daemonset is not None else ""
            cases.append(GateCase(subject, (blocking(subject, (
                f"{ds}configures mode {node.config.effective_mode!r}, not {target}: this DaemonSet was not switched "
                "(its next restart brings the old mode back)"), evidence=(node.origin,)),)))
        else:
            cases.append(GateCase(subject))
    return GateCondition("configured-target", title, cases=tuple(cases))


def _actual(state: NodeState, target: ProxyMode, expected: SemanticView, family: str) -> tuple[SemanticView | None, str]:
    from kpdoctor.comparison import ViewUnavailable, actual_view

    try:
        return actual_view(state, target, expected=expected, family=family), ""
    except ViewUnavailable as exc:
        return None, str(exc)


def _short(view: object) -> str:
    from kpdoctor.gate.mode_views import _show

    return _show(view)  # type: ignore[arg-type]


def rules_and_baseline(cluster: ClusterState, nodes: list[Node], states: Mapping[str, NodeState], target: ProxyMode,
                       baseline: Baseline) -> tuple[GateCondition, GateCondition]:
    """`target-rules` and `baseline-unchanged`: both need the node's rules read back in the target mode."""
    rules_cases, base_cases = [], []
    for node in nodes:
        subject = f"Node {node.name}"
        state = states.get(node.name)
        rules: list[GateReason] = []
        base: list[GateReason] = []
        before = baseline.nodes.get(node.name)
        if before is None or before.mode is None or not before.views:
            base.append(unknown(subject, "cannot prove: the baseline has no view of this node (node added since, "
                                         "or its mode was unknown before the switch)"))
        if node.config is None or state is None or not state.reachable:
            why = "no kube-proxy configuration" if node.config is None else "no node facts (use a bundle)"
            rules.append(unknown(subject, f"cannot prove: {why}"))
            rules_cases.append(GateCase(subject, tuple(rules)))
            base_cases.append(GateCase(subject, tuple(base) or (unknown(subject, f"cannot prove: {why}"),)))
            continue
        from dataclasses import replace

        config = replace(node.config, mode=target)
        for family in families(cluster):
            expected = mode_view(build_input(cluster, node.name, config=config, family=family))
            actual, error = _actual(state, target, expected, family)
            if actual is None:
                why = f"the node's {target} rules ({family}) were not collected{': ' + error if error else ''}"
                rules.append(unknown(subject, f"cannot prove: {why}"))
                base.append(unknown(subject, f"cannot prove: {why}"))
                continue
            if expected.frontends and not actual.frontends:
                rules.append(blocking(subject, (
                    f"the node has no kube-proxy {target} rules ({family}): {len(expected.frontends)} frontends "
                    "expected")))
                base.append(blocking(subject, f"no Service port is served in {target} mode ({family})"))
                continue
            diffs = diff(expected, actual)
            for d in diffs[:MAX_LISTED]:
                rules.append(blocking(subject, (
                    f"{d.frontend} ({d.service or 'no Service'}): the node's {target} rules differ from the "
                    f"reference proxier's ({d.kind})"),
                    evidence=(f"reference: {_short(d.expected)}", f"node: {_short(d.actual)}")))
            if len(diffs) > MAX_LISTED:
                rules.append(blocking(subject, f"{len(diffs) - MAX_LISTED} more frontends differ"))
            if not expected.frontends and not actual.frontends:
                rules.append(warning(subject, f"no Service frontends in {family} to compare"))
            if before is None or before.mode is None or family not in before.views:
                continue
            old_now = mode_view(build_input(cluster, node.name, config=replace(node.config, mode=before.mode),
                                            family=family))
            base.extend(_baseline_reasons(subject, before.views[family], actual, old_now, before.mode, target,
                                          family))
        rules_cases.append(GateCase(subject, tuple(rules)))
        base_cases.append(GateCase(subject, tuple(base)))
    return (GateCondition("target-rules", f"Every node's {target} rules equal the reference proxier's",
                          cases=tuple(rules_cases)),
            GateCondition("baseline-unchanged",
                          "Every Service port behaves as before the switch (but for documented differences)",
                          cases=tuple(base_cases)))


def _baseline_reasons(subject: str, before: SemanticView, after: SemanticView, old_now: SemanticView,
                      old: str, target: ProxyMode, family: str) -> list[GateReason]:
    out: list[GateReason] = []
    documented: dict[str, int] = {}
    cluster_changed = 0
    blocking_count = 0
    by_name = {str(fe): fe for fe in (*before.frontends, *after.frontends, *old_now.frontends)}
    for c in compare(before, after, {old, target}):
        if c.documented:
            documented[c.documented] = documented.get(c.documented, 0) + 1
            continue
        fe = by_name.get(c.frontend)
        if old_now.frontends.get(fe) != before.frontends.get(fe):  # type: ignore[arg-type]
            # the old mode would differ from the baseline too: the cluster objects changed
            cluster_changed += 1
            continue
        blocking_count += 1
        if blocking_count <= MAX_LISTED:
            out.append(blocking(f"Service {c.service}", (
                f"{c.frontend} ({family}) changed with the switch from {old} to {target}: {c.what}"),
                evidence=(f"before ({old}): {c.before}", f"after ({target}): {c.after}")))
    if blocking_count > MAX_LISTED:
        out.append(blocking(subject, f"{blocking_count - MAX_LISTED} more frontends changed with the switch"))
    for kind, n in sorted(documented.items()):
        out.append(warning(subject, f"{n} frontend{'s' if n != 1 else ''} changed as documented ({family}): "
                                    f"{DOCUMENTED[kind]}"))
    if cluster_changed:
        out.append(warning(subject, (
            f"{cluster_changed} frontend{'s' if cluster_changed != 1 else ''} changed since the baseline because "
            f"the Services/EndpointSlices changed (the {old} mode would show the same change): not the switch")))
    return out


def old_mode_gone(nodes: list[Node], states: Mapping[str, NodeState], target: ProxyMode,
                  baseline: Baseline) -> GateCondition:
    title = "No node keeps the old mode's state (leftovers listed with their cleanup)"
    cases = []
    for node in nodes:
        subject = f"Node {node.name}"
        before = baseline.nodes.get(node.name)
        state = states.get(node.name)
        olds = [before.mode] if before is not None and before.mode else [m for m in ("iptables", "nftables", "ipvs")
                                                                          if m != target]
        if state is None or not state.reachable:
            cases.append(GateCase(subject, (unknown(subject, "cannot prove: no node facts (use a bundle)"),)))
            continue
        reasons: list[GateReason] = []
        for old in olds:
            left = old_mode_leftovers(state, old, target)
            reasons += [blocking(subject, f"left by the old {old} mode: {item.what}", commands=item.commands)
                        for item in left.items]
            reasons += [GateReason("warning", subject, f"left by the old {old} mode: {item.what}", Severity.WARNING,
                                   commands=item.commands) for item in left.guards]
            if left.missing:
                reasons.append(unknown(subject, f"cannot prove the {old} mode's state is gone: not collected: "
                                                f"{left.missing}"))
        cases.append(GateCase(subject, tuple(reasons)))
    return GateCondition("old-mode-gone", title, cases=tuple(cases))


def run_post_switch(cluster: ClusterState, nodes: Mapping[str, NodeState] | None, *, target: ProxyMode,
                    baseline: Baseline, source: str = "") -> GateResult:
    states = dict(nodes or {})
    known = nodes_of(cluster, states)
    if not known:
        conditions: tuple[GateCondition, ...] = (GateCondition("reports-target", "Nodes", (
            unknown("Nodes", "cannot prove: no nodes in the input"),)),)
    else:
        rules, base = rules_and_baseline(cluster, known, states, target, baseline)
        conditions = (reports_target(cluster, known, states, target), configured_target(cluster, known, target),
                      rules, old_mode_gone(known, states, target, baseline), base)
    return GateResult(gate=GATE_NAME, phase="post-switch", source=source or cluster.source, conditions=conditions,
                      subject=f"kube-proxy switched to {target} mode on every node")
