"""What each node's real rules do with the Service's frontends, and nodes grouped by identical behaviour.

With the API: the same comparison KP-STALE-ENDPOINTS makes (`kpdoctor.comparison.compare`: the node's
dump read into a SemanticView against the reference proxier's), narrowed to one Service.
Without the API: the node's rules alone (`actual_view`), found by the Service name kube-proxy writes
in its rule comments ("observed": nothing to compare with).
Node-wide faults the scan found on the node (ip_forward off, FORWARD DROP, kube-proxy down) are
attached as conditions: they break the Service there whatever its rules say.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from types import MappingProxyType
from typing import Any

from kpdoctor.checks_api import CheckContext
from kpdoctor.cluster.kube_proxy_node import PROXY_MODES
from kpdoctor.cluster.state import ClusterState
from kpdoctor.comparison import ViewUnavailable, actual_view, compare, iptables_rules_key, known_mode
from kpdoctor.dataplane.semantic import DNAT, DROP, REJECT, FrontendDiff, FrontendView
from kpdoctor.findings import Finding, Severity
from kpdoctor.node.state import NodeState
from kpdoctor.node_context import configured_mode, kube_proxy_expected, parsed
from kpdoctor.service_proxy import presence
from kpdoctor.why.model import NODE_STATUS_ORDER, FrontendBehaviour, NodeBehaviour, NodeGroup, Target

MODES = PROXY_MODES
# FrontendDiff.kind -> the frontend's status (worst wins when a frontend has several)
_DIFF_STATUS = {"missing-frontend": "no-rule", "verdict": "wrong-verdict", "stale-endpoints": "stale",
                "stale-internal-endpoints": "stale", "missing-endpoints": "missing-endpoints",
                "missing-internal-endpoints": "missing-endpoints", "extra-frontend": "extra", "affinity": "at-risk"}
_FRONT_ORDER = ("no-rule", "wrong-verdict", "stale", "missing-endpoints", "extra", "at-risk", "observed", "ok")
_NODE_OF_FRONT = {"no-rule": "wrong-verdict", "wrong-verdict": "wrong-verdict", "stale": "stale",
                  "missing-endpoints": "missing-endpoints", "extra": "extra", "at-risk": "at-risk",
                  "observed": "observed", "ok": "ok"}
_STALE_CHECK = "KP-STALE-ENDPOINTS"
# node-wide faults that freeze the rules (kube-proxy not running/syncing) rather than break forwarding: the
# Service works there as long as it does not change
FREEZING_CHECKS = frozenset({"KP-PROXY-NODE-HEALTH", "KP-PROXY-HEALTH", "KP-SYNC-LAG"})


def belongs(service_port_name: str, target: Target) -> bool:
    """Whether a view's `ns/name:port` is the target Service (and its :PORT, by name, when given)."""
    key, _, port = service_port_name.partition(":")
    if key != target.key:
        return False
    return target.port is None or target.port.isdigit() or port == target.port


def _port_ok(view: FrontendView | None, target: Target, service_ports: Sequence[int]) -> bool:
    """A numeric :PORT keeps the frontends of that Service port (ClusterIP/external/LB port, or NodePort)."""
    if view is None or target.port is None or not target.port.isdigit():
        return True
    return view.frontend.port in service_ports


def node_conditions(findings: Iterable[Finding], node: str) -> tuple[str, ...]:
    """Node-wide faults of the scan on `node` (error or worse, not silenced), each `CHECK-ID: message`."""
    out = []
    for f in findings:
        if f.scope != node or not f.subject.startswith("Node ") or f.check_id == _STALE_CHECK:
            continue
        if f.not_evaluated or f.silenced_reason or f.severity < Severity.ERROR:
            continue
        out.append(f"{f.check_id}: {f.message}")
    return tuple(out)


def _front(want: FrontendView | None, have: FrontendView | None, diffs: list[FrontendDiff],
           compared: bool) -> FrontendBehaviour:
    view = have or want
    assert view is not None
    statuses = [_DIFF_STATUS.get(d.kind, "wrong-verdict") for d in diffs]
    status = min(statuses, key=_FRONT_ORDER.index) if statuses else ("ok" if compared else "observed")
    verdict = have.verdict if have is not None else "none"
    comment = ""
    if verdict == REJECT:
        comment = f"{view.service} has no endpoints"
    elif verdict == DROP and have is not None and not have.endpoints:
        comment = f"{view.service} has no local endpoints"
    return FrontendBehaviour(
        frontend=str(view.frontend), verdict=verdict,
        endpoints=tuple(sorted(have.endpoints)) if have is not None else (),
        expected_verdict=(want.verdict if want is not None else "none") if compared else None,
        expected_endpoints=tuple(sorted(want.endpoints)) if want is not None else (),
        status=status,
        stale=tuple(sorted({e for d in diffs for e in d.stale})),
        missing=tuple(sorted({e for d in diffs for e in d.missing})),
        comment=comment,
    )


def _summary(fronts: Sequence[FrontendBehaviour], conditions: Sequence[str]) -> str:
    """What the node does, without its name (nodes with the same summary are grouped)."""
    parts: list[str] = []
    for fb in fronts:
        if fb.status == "stale":
            total = len(fb.endpoints) or 1
            parts.append(f"{fb.frontend} still sends {len(fb.stale)}/{total} of connections to "
                         f"{', '.join(fb.stale)}" + (f" and none to {', '.join(fb.missing)}" if fb.missing else ""))
        elif fb.status == "missing-endpoints":
            parts.append(f"{fb.frontend} sends nothing to ready endpoint(s) {', '.join(fb.missing)}")
        elif fb.status in ("no-rule", "wrong-verdict", "extra"):
            want = fb.expected_verdict or "none"
            parts.append(f"{fb.describe()} (expected {want.upper() if want != 'none' else 'no rule'})")
    if not parts:
        by_what: dict[str, list[str]] = {}
        for fb in fronts:
            if fb.verdict == DNAT and fb.status == "observed":  # nothing to compare with: the targets themselves
                what = f"DNAT to {', '.join(fb.endpoints)}"
            elif fb.verdict == DNAT:
                what = f"DNAT to {len(fb.endpoints)} endpoint{'s' if len(fb.endpoints) != 1 else ''}"
            else:
                what = fb.describe().split(": ", 1)[1]
            by_what.setdefault(what, []).append(fb.frontend.split(" ", 1)[0])
        parts = [f"{', '.join(dict.fromkeys(kinds))}: {what}" for what, kinds in by_what.items()]
    if conditions:
        parts.append("node-wide fault " + ", ".join(sorted({c.split(":", 1)[0] for c in conditions}))
                     + (" (rules frozen: kube-proxy not syncing)" if all(c.split(":", 1)[0] in FREEZING_CHECKS
                                                                        for c in conditions) else ""))
    return "; ".join(parts)


def _worst(statuses: Iterable[str]) -> str:
    return min(statuses, key=NODE_STATUS_ORDER.index, default="ok")


def _with_conditions(nb: NodeBehaviour) -> NodeBehaviour:
    if nb.conditions and nb.status in ("ok", "observed", "extra", "at-risk"):
        breaking = any(c.split(":", 1)[0] not in FREEZING_CHECKS for c in nb.conditions)
        return NodeBehaviour(nb.node, "broken" if breaking else "at-risk", nb.summary, nb.mode, nb.rules_source, nb.frontends, nb.conditions,
                             nb.commands)
    return nb


def behaviour_of(node: NodeState, cluster: ClusterState, target: Target, *, has_api: bool,
                 findings: Sequence[Finding] = (), service_ports: Sequence[int] = ()) -> NodeBehaviour:
    """One node's behaviour for the target Service; "not-evaluated" with the reason when it cannot be said."""
    if not node.reachable:
        return NodeBehaviour(node.name, "not-evaluated", f"not reached: {node.error}")
    ctx = CheckContext(cluster, node=node, nodes=MappingProxyType({node.name: node}))
    conditions = node_conditions(findings, node.name)
    try:
        if has_api:
            return _with_conditions(_compared(ctx, node, target, conditions, service_ports))
        return _with_conditions(_observed(ctx, node, target, conditions, service_ports))
    except ViewUnavailable as exc:
        return NodeBehaviour(node.name, "not-evaluated", f"rules could not be read: {exc}", conditions=conditions)


def _compared(ctx: CheckContext, node: NodeState, target: Target, conditions: tuple[str, ...],
              service_ports: Sequence[int]) -> NodeBehaviour:
    if not kube_proxy_expected(ctx):
        return NodeBehaviour(node.name, "not-evaluated", "no kube-proxy is meant to run here (another Service proxy, "
                             "e.g. Cilium, may serve it)", conditions=conditions)
    found = configured_mode(ctx)
    if found is None:
        return NodeBehaviour(node.name, "not-evaluated", "kube-proxy's configuration for this node was not found",
                             conditions=conditions)
    p = parsed(ctx)
    mode = p.proxy_mode if p.proxy_mode in MODES else found[0]
    cmp = compare(ctx, known_mode(mode))
    if cmp is None or (not cmp.actual.frontends and cmp.expected.frontends):
        where = cmp.rules_key if cmp is not None else mode
        return NodeBehaviour(node.name, "no-rules", f"no {mode} Service rules at all ({where}): nothing is "
                             "load-balanced", mode=mode, rules_source=where, conditions=conditions)
    want = {f: v for f, v in cmp.expected.frontends.items() if belongs(v.service, target)}
    have = {f: v for f, v in cmp.actual.frontends.items() if belongs(v.service, target)}
    by_front: dict[Any, list[FrontendDiff]] = {}
    for d in cmp.diffs:
        if belongs(d.service, target):
            by_front.setdefault(d.frontend, []).append(d)
    fronts = tuple(_front(want.get(f), have.get(f), by_front.get(f, []), True) for f in sorted(set(want) | set(have))
                   if _port_ok(want.get(f) or have.get(f), target, service_ports))
    status = _worst(_NODE_OF_FRONT[fb.status] for fb in fronts) if fronts else "ok"
    return NodeBehaviour(node.name, status, _summary(fronts, conditions), mode=mode, rules_source=cmp.rules_key,
                         frontends=fronts, conditions=conditions)


def _observed(ctx: CheckContext, node: NodeState, target: Target, conditions: tuple[str, ...],
              service_ports: Sequence[int]) -> NodeBehaviour:
    p = parsed(ctx)
    modes = [p.proxy_mode] if p.proxy_mode in MODES else presence(p).modes()
    if not modes:
        return NodeBehaviour(node.name, "no-rules", "no kube-proxy Service rules on this node", conditions=conditions)
    mode = modes[0]
    rules_key = (iptables_rules_key(p) or "") if mode == "iptables" else \
        ("nft-ruleset.json" if mode == "nftables" else "ipvsadm-save.txt")
    view = actual_view(node, known_mode(mode), parsed_node=p)
    if view is None:
        return NodeBehaviour(node.name, "not-evaluated", f"no {mode} dump collected", mode=mode, conditions=conditions)
    have = {f: v for f, v in view.frontends.items() if belongs(v.service, target)}
    if not have:
        named = mode != "ipvs"
        why = ("no rule names this Service (kube-proxy does not program it here)" if named else
               "IPVS stores no Service names: without the API the Service's virtual servers cannot be told apart")
        return NodeBehaviour(node.name, "not-evaluated" if not named else "observed", why, mode=mode,
                             conditions=conditions)
    fronts = tuple(_front(None, v, [], False) for f, v in sorted(have.items()) if _port_ok(v, target, service_ports))
    return NodeBehaviour(node.name, "observed", _summary(fronts, conditions), mode=mode, rules_source=rules_key,
                         frontends=fronts, conditions=conditions)


def group(behaviours: Iterable[NodeBehaviour]) -> list[NodeGroup]:
    """Nodes with the same status and summary together, worst first."""
    grouped: dict[tuple[str, str], list[str]] = {}
    for nb in behaviours:
        grouped.setdefault((nb.status, nb.summary), []).append(nb.node)
    out = [NodeGroup(status, summary, tuple(sorted(nodes))) for (status, summary), nodes in grouped.items()]
    out.sort(key=lambda g: (NODE_STATUS_ORDER.index(g.status), g.nodes))
    return out
