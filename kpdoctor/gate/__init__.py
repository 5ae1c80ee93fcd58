"""`kpdoctor gate kube-proxy-removal`: a profile of conditions with a strict verdict.

`run_gate` is pure: cluster state + node facts in, GateResult out. Sources
(bundle, snapshot, live) and renderers (console, JSON, JUnit) live next to it
and never influence the verdict.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from kpdoctor.cluster.state import ClusterState
from kpdoctor.findings import Finding, Remediation, Severity
from kpdoctor.gate.cleanup import cleanup_plan, no_leftover_state
from kpdoctor.gate.conditions import (
    ConditionFn,
    agents_kpr_mode,
    agents_ready,
    apiserver_direct,
    kube_proxy_removed,
    nodes_ready,
    replacement_configured,
    services_served_now,
)
from kpdoctor.gate.context import GateContext
from kpdoctor.gate.coverage import service_coverage
from kpdoctor.gate.model import GateResult, Phase
from kpdoctor.gate.safety import shown_commands
from kpdoctor.node.state import NodeState

GATE_NAME = "kube-proxy-removal"

# What proves the replacement serves Services, asked before and after the removal.
REPLACEMENT: tuple[ConditionFn, ...] = (
    replacement_configured,
    agents_ready,
    agents_kpr_mode,
    apiserver_direct,
    service_coverage,
    services_served_now,
)
PRE_REMOVAL: tuple[ConditionFn, ...] = (*REPLACEMENT, nodes_ready)
POST_REMOVAL: tuple[ConditionFn, ...] = (kube_proxy_removed, no_leftover_state, *REPLACEMENT)


def run_gate(
    cluster: ClusterState,
    nodes: Mapping[str, NodeState] | None = None,
    *,
    phase: Phase = "pre-removal",
) -> GateResult:
    ctx = GateContext(cluster, MappingProxyType(dict(nodes or {})), phase)
    conditions = tuple(fn(ctx) for fn in (PRE_REMOVAL if phase == "pre-removal" else POST_REMOVAL))
    return GateResult(
        gate=GATE_NAME,
        phase=phase,
        source=cluster.source,
        conditions=conditions,
        cleanup=cleanup_plan(ctx),
    )


def to_findings(result: GateResult) -> list[Finding]:
    """The gate's reasons as findings, for the shared report (`kpdoctor.findings` contract)."""
    out = []
    for cond in result.conditions:
        for reason in cond.all_reasons:
            severity = reason.severity if reason.kind != "warning" else Severity.WARNING
            out.append(Finding(
                check_id=f"GATE-{cond.id.upper()}",
                severity=severity,
                scope="cluster",
                subject=reason.subject,
                message=reason.message,
                evidence=reason.evidence,
                remediation=Remediation("", tuple(shown_commands(result, reason.commands)))
                if reason.commands else None,
                not_evaluated=reason.kind == "unknown",
            ))
    return out


__all__ = ["GATE_NAME", "GateResult", "run_gate", "to_findings"]
