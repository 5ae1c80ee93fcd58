"""The gate's result types: conditions with blocking reasons, a verdict, and the cleanup plan.

A CI gate is only useful if "pass" means something, so every condition has
three outcomes, not two: `pass`, `fail` (a definite blocking reason) and
`unknown` (the evidence needed to prove it is missing or unrecognised). The
verdict is `pass` only when every condition passed; an unknown is never a pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from kpdoctor.findings import Severity

Status = Literal["pass", "fail", "unknown"]
Kind = Literal["blocking", "unknown", "warning"]
Phase = Literal["pre-removal", "post-removal", "pre-switch", "post-switch"]
PHASES: tuple[Phase, ...] = ("pre-removal", "post-removal")

EXIT_PASS = 0
EXIT_FAIL = 1
EXIT_CANNOT_PROVE = 3


@dataclass(frozen=True, slots=True)
class GateReason:
    """One reason a condition did not pass (or a warning that does not block)."""

    kind: Kind
    subject: str  # e.g. "Node edge-1", "Service storefront/catalog", "ConfigMap kube-system/cilium-config"
    message: str
    severity: Severity = Severity.ERROR
    evidence: tuple[str, ...] = ()
    commands: tuple[str, ...] = ()

    @property
    def blocking(self) -> bool:
        return self.kind == "blocking"


def blocking(subject: str, message: str, *, critical: bool = False, evidence: tuple[str, ...] = (),
             commands: tuple[str, ...] = ()) -> GateReason:
    return GateReason("blocking", subject, message, Severity.CRITICAL if critical else Severity.ERROR,
                      evidence, commands)


def unknown(subject: str, message: str, *, evidence: tuple[str, ...] = ()) -> GateReason:
    return GateReason("unknown", subject, message, Severity.ERROR, evidence)


def warning(subject: str, message: str, *, evidence: tuple[str, ...] = ()) -> GateReason:
    return GateReason("warning", subject, message, Severity.WARNING, evidence)


def status_of(reasons: tuple[GateReason, ...] | list[GateReason]) -> Status:
    if any(r.kind == "blocking" for r in reasons):
        return "fail"
    if any(r.kind == "unknown" for r in reasons):
        return "unknown"
    return "pass"


@dataclass(frozen=True, slots=True)
class GateCase:
    """A sub-result of a condition (one per Service in the coverage condition, one per node elsewhere)."""

    name: str
    reasons: tuple[GateReason, ...] = ()

    @property
    def status(self) -> Status:
        return status_of(self.reasons)


@dataclass(frozen=True, slots=True)
class GateCondition:
    id: str  # stable, e.g. "replacement-configured"
    title: str
    reasons: tuple[GateReason, ...] = ()
    cases: tuple[GateCase, ...] = ()
    evidence: tuple[str, ...] = ()

    @property
    def status(self) -> Status:
        return status_of(list(self.reasons) + [r for c in self.cases for r in c.reasons])

    @property
    def all_reasons(self) -> tuple[GateReason, ...]:
        return self.reasons + tuple(r for c in self.cases for r in c.reasons)


@dataclass(frozen=True, slots=True)
class CleanupItem:
    what: str  # e.g. "iptables-nft: 42 KUBE-* chains (KUBE-SERVICES, KUBE-SVC-...)"
    commands: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class NodeCleanup:
    node: str
    inspected: bool  # False when no node facts were available: the plan is generic
    items: tuple[CleanupItem, ...] = ()
    note: str = ""


@dataclass(frozen=True, slots=True)
class CleanupPlan:
    """What to do once kube-proxy's DaemonSet is gone, in order: cluster objects, then each node."""

    cluster_commands: tuple[str, ...]
    cluster_notes: tuple[str, ...]
    nodes: tuple[NodeCleanup, ...]
    kind: str = "cleanup"  # "cleanup" (removal gate) | "rollout" (mode-switch gate: `kpdoctor.gate.mode_plan`)


@dataclass(frozen=True)
class GateResult:
    gate: str
    phase: Phase
    source: str
    conditions: tuple[GateCondition, ...]
    cleanup: CleanupPlan | None = None
    notes: tuple[str, ...] = field(default=())
    subject: str = ""  # what the gate's verdict is about, e.g. "switch kube-proxy to nftables mode" ("" = removal)

    @property
    def verdict(self) -> Literal["pass", "fail", "cannot-prove"]:
        statuses = {c.status for c in self.conditions}
        if "fail" in statuses:
            return "fail"
        if "unknown" in statuses or not self.conditions:
            return "cannot-prove"
        return "pass"

    @property
    def exit_code(self) -> int:
        return {"pass": EXIT_PASS, "fail": EXIT_FAIL, "cannot-prove": EXIT_CANNOT_PROVE}[self.verdict]

    def condition(self, cid: str) -> GateCondition:
        for cond in self.conditions:
            if cond.id == cid:
                return cond
        raise KeyError(cid)

    @property
    def blocking_reasons(self) -> tuple[GateReason, ...]:
        return tuple(r for c in self.conditions for r in c.all_reasons if r.kind == "blocking")

    @property
    def unknown_reasons(self) -> tuple[GateReason, ...]:
        return tuple(r for c in self.conditions for r in c.all_reasons if r.kind == "unknown")
