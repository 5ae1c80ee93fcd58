"""When the gate may print commands that remove kube-proxy, and what it says instead when it may not.

The cleanup plan deletes kube-proxy's DaemonSet, ConfigMap and rules. Printed
next to a FAIL it is the outage the gate exists to prevent, so it is shown only
when the gate passed; otherwise the report says what the plan *would* contain,
and `--show-plan` prints it under NOT_SAFE_HEADER with every command commented
out. Post-removal, kube-proxy's leftovers are the gate's own subject: their
removal commands are shown when everything else (the replacement, its coverage)
passed, because then the replacement, not those leftovers, serves Services.
"""

from __future__ import annotations

from kpdoctor.destructive import NOT_SAFE_HEADER, comment_out, is_destructive
from kpdoctor.gate.model import CleanupPlan, GateResult

# Post-removal conditions whose reasons are kube-proxy's leftovers themselves.
_REMOVAL_CONDITIONS = frozenset({"kube-proxy-removed", "no-leftover-state"})

__all__ = ["NOT_SAFE_HEADER", "destructive_allowed", "plan_summary", "shown_commands", "verdict_headline"]


def destructive_allowed(result: GateResult) -> bool:
    """Whether commands that remove kube-proxy's objects or rules may be printed runnable."""
    if result.verdict == "pass":
        return True
    if result.phase != "post-removal":
        return False
    others = [c for c in result.conditions if c.id not in _REMOVAL_CONDITIONS]
    return bool(others) and all(c.status == "pass" for c in others)


def shown_commands(result: GateResult, commands: tuple[str, ...] | list[str]) -> list[str]:
    """`commands` as they may be printed: destructive ones commented out unless `destructive_allowed`."""
    if destructive_allowed(result):
        return list(commands)
    return [comment_out(c) if is_destructive(c) else c for c in commands]


def plan_commands(plan: CleanupPlan) -> list[str]:
    return [*plan.cluster_commands, *(c for n in plan.nodes for i in n.items for c in i.commands)]


def plan_summary(plan: CleanupPlan) -> str:
    """What the cleanup plan would do, in words (no command): shown in place of the plan when it is withheld."""
    if plan.kind == "rollout":
        from kpdoctor.gate.mode_plan import rollout_summary

        return rollout_summary(plan)
    ds = sum(1 for c in plan.cluster_commands if " delete daemonset " in c)
    cm = sum(1 for c in plan.cluster_commands if " delete configmap " in c)
    items = sum(len(n.items) for n in plan.nodes)
    nodes = sum(1 for n in plan.nodes if n.items)
    parts = []
    if ds:
        parts.append(f"delete {ds} kube-proxy DaemonSet{'s' if ds != 1 else ''}")
    if cm:
        parts.append(f"delete {cm} kube-proxy ConfigMap{'s' if cm != 1 else ''}")
    if items:
        kinds = sorted({i.what.split(":", 1)[0] for n in plan.nodes for i in n.items})
        parts.append(f"remove kube-proxy's state on {nodes} node{'s' if nodes != 1 else ''} "
                     f"({items} item{'s' if items != 1 else ''}: {', '.join(kinds)})")
    return "; ".join(parts) or "nothing to remove"


_WORDS = {
    "pass": "PASS: safe to remove kube-proxy",
    "fail": "FAIL: do NOT remove kube-proxy",
    "cannot-prove": "CANNOT PROVE it is safe: do NOT remove kube-proxy",
}
_WORDS_POST = {
    "pass": "PASS: kube-proxy was removed cleanly",
    "fail": "FAIL: kube-proxy's removal is not complete or not safe",
    "cannot-prove": "CANNOT PROVE kube-proxy was removed cleanly",
}


def verdict_headline(result: GateResult) -> str:
    """One line a hurried reader cannot misread: the verdict, what it means, the counts and the exit code."""
    words = (_WORDS if result.phase == "pre-removal" else _WORDS_POST)[result.verdict]
    if result.subject:  # another gate (mode-switch): the same three verdicts about its subject
        words = {"pass": f"PASS: safe to {result.subject}", "fail": f"FAIL: do NOT {result.subject}",
                 "cannot-prove": f"CANNOT PROVE it is safe: do NOT {result.subject}"}[result.verdict]
    if result.subject and result.phase == "post-switch":  # the subject is a claim about what happened
        words = {"pass": f"PASS: {result.subject}", "fail": f"FAIL: NOT {result.subject}: the switch is not complete",
                 "cannot-prove": f"CANNOT PROVE {result.subject}"}[result.verdict]
    blocking = len(result.blocking_reasons)
    unknowns = len(result.unknown_reasons)
    return (f"VERDICT: {words} ({blocking} blocking reason{'s' if blocking != 1 else ''}, "
            f"{unknowns} cannot-prove; exit {result.exit_code})")
