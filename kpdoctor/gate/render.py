"""The gate's outputs: JSON (the source of truth), JUnit XML (for CI UIs) and a rich console view.

JUnit: one testcase per condition, plus one per Service under the coverage
condition (and per node where a condition is per node), so a CI UI shows *which*
Service blocks the removal. A definite blocking reason is a <failure>; missing
evidence ("cannot prove") is an <error> — both fail the job.
"""

from __future__ import annotations

import io
import json
import xml.etree.ElementTree as ET
from typing import Any

from kpdoctor import __version__
from kpdoctor.destructive import comment_out
from kpdoctor.gate.model import CleanupPlan, GateCase, GateCondition, GateReason, GateResult
from kpdoctor.gate.safety import (
    NOT_SAFE_HEADER,
    destructive_allowed,
    plan_summary,
    shown_commands,
    verdict_headline,
)

SCHEMA = "kpdoctor-gate/v1"
FORMATS = ("console", "json", "junit")


def _reason(r: GateReason, result: GateResult) -> dict[str, Any]:
    return {
        "kind": r.kind,
        "severity": r.severity.label,
        "subject": r.subject,
        "message": r.message,
        "evidence": list(r.evidence),
        "commands": shown_commands(result, r.commands),
    }


def _case(c: GateCase, result: GateResult) -> dict[str, Any]:
    return {"name": c.name, "status": c.status, "reasons": [_reason(r, result) for r in c.reasons]}


def _cleanup(result: GateResult) -> dict[str, Any] | None:
    """The plan, runnable only when the gate passed; otherwise every command commented out under the warning."""
    plan = result.cleanup
    if plan is None:
        return None
    safe = destructive_allowed(result)

    def cmds(commands: tuple[str, ...]) -> list[str]:
        return list(commands) if safe else [comment_out(c) for c in commands]

    return {
        "kind": plan.kind,
        "safe_to_run": safe,
        "warning": "" if safe else NOT_SAFE_HEADER,
        "would_contain": plan_summary(plan),
        "cluster_commands": cmds(plan.cluster_commands),
        "notes": list(plan.cluster_notes),
        "nodes": [
            {"node": n.node, "inspected": n.inspected, "note": n.note,
             "items": [{"what": i.what, "commands": cmds(i.commands)} for i in n.items]}
            for n in plan.nodes
        ],
    }


def to_dict(result: GateResult) -> dict[str, Any]:
    return {
        "verdict": result.verdict,
        "headline": verdict_headline(result),
        "exit_code": result.exit_code,
        "schema": SCHEMA,
        "kpdoctor_version": __version__,
        "gate": result.gate,
        "phase": result.phase,
        "source": result.source,
        "summary": {
            "conditions": {s: sum(1 for c in result.conditions if c.status == s) for s in ("pass", "fail", "unknown")},
            "blocking_reasons": len(result.blocking_reasons),
            "unknown_reasons": len(result.unknown_reasons),
        },
        "conditions": [
            {"id": c.id, "title": c.title, "status": c.status, "evidence": list(c.evidence),
             "reasons": [_reason(r, result) for r in c.reasons], "cases": [_case(x, result) for x in c.cases]}
            for c in result.conditions
        ],
        "cleanup": _cleanup(result),
        "notes": list(result.notes),
    }


def render_json(result: GateResult) -> str:
    return json.dumps(to_dict(result), indent=2) + "\n"


def _reason_text(result: GateResult, reasons: tuple[GateReason, ...]) -> str:
    lines = []
    for r in reasons:
        lines.append(f"[{r.kind}/{r.severity.label}] {r.subject}: {r.message}")
        lines.extend(f"    evidence: {e}" for e in r.evidence)
        lines.extend(f"    fix: {c}" for c in shown_commands(result, r.commands))
    return "\n".join(lines)


def _add_case(suite: ET.Element, result: GateResult, classname: str, name: str, status: str,
              reasons: tuple[GateReason, ...]) -> None:
    case = ET.SubElement(suite, "testcase", classname=classname, name=name, time="0")
    blocking = tuple(r for r in reasons if r.kind == "blocking")
    unknowns = tuple(r for r in reasons if r.kind == "unknown")
    if status == "fail":
        el = ET.SubElement(case, "failure", message=blocking[0].message if blocking else "failed",
                           type="blocking")
        el.text = _reason_text(result, blocking + unknowns)
    elif status == "unknown":
        el = ET.SubElement(case, "error", message="cannot prove: " + (unknowns[0].message if unknowns else ""),
                           type="cannot-prove")
        el.text = _reason_text(result, unknowns)
    warnings = tuple(r for r in reasons if r.kind == "warning")
    if warnings:
        out = ET.SubElement(case, "system-out")
        out.text = _reason_text(result, warnings)


def _add_verdict_case(suite: ET.Element, result: GateResult, classname: str) -> None:
    """The first testcase is the verdict itself, its message the headline: what a CI UI shows first."""
    case = ET.SubElement(suite, "testcase", classname=classname, name="verdict", time="0")
    headline = verdict_headline(result)
    reasons = result.blocking_reasons + result.unknown_reasons
    body = "\n".join([headline, *(f"- {r.subject}: {r.message}" for r in reasons)])
    plan = result.cleanup
    if plan is not None and not destructive_allowed(result):
        body += (f"\n\n{plan.kind.capitalize()} plan withheld ({NOT_SAFE_HEADER}); it would {plan_summary(plan)}. "
                 "Run the gate with --show-plan to see it commented out.")
    if result.verdict == "fail":
        ET.SubElement(case, "failure", message=headline, type="verdict").text = body
    elif result.verdict == "cannot-prove":
        ET.SubElement(case, "error", message=headline, type="verdict").text = body
    else:
        ET.SubElement(case, "system-out").text = body


def render_junit(result: GateResult) -> str:
    root = ET.Element("testsuites", name=f"kpdoctor gate {result.gate}: {verdict_headline(result)}")
    suite = ET.SubElement(root, "testsuite", name=f"kpdoctor gate {result.gate} ({result.phase})")
    props = ET.SubElement(suite, "properties")
    for key, value in (("verdict", result.verdict), ("exit_code", str(result.exit_code)), ("source", result.source)):
        ET.SubElement(props, "property", name=key, value=value)
    base = f"kpdoctor.gate.{result.gate}.{result.phase}"
    _add_verdict_case(suite, result, base)
    for cond in result.conditions:
        _add_case(suite, result, base, cond.id, cond.status, cond.all_reasons if cond.cases else cond.reasons)
        for case in cond.cases:
            _add_case(suite, result, f"{base}.{cond.id}", case.name, case.status, case.reasons)
    cases = suite.findall("testcase")
    suite.set("tests", str(len(cases)))
    suite.set("failures", str(sum(1 for c in cases if c.find("failure") is not None)))
    suite.set("errors", str(sum(1 for c in cases if c.find("error") is not None)))
    suite.set("skipped", "0")
    for attr in ("tests", "failures", "errors"):
        root.set(attr, suite.get(attr, "0"))
    buf = io.BytesIO()
    ET.ElementTree(root).write(buf, encoding="utf-8", xml_declaration=True)
    return buf.getvalue().decode("utf-8") + "\n"


_STYLE = {"pass": "green", "fail": "bold red", "unknown": "yellow"}
_MARK = {"pass": "PASS", "fail": "FAIL", "unknown": "CANNOT PROVE"}
_VERDICT_STYLE = {"pass": "bold green", "fail": "bold white on red", "cannot-prove": "bold black on yellow"}


def _print_condition(console: Any, result: GateResult, cond: GateCondition) -> None:
    from rich.markup import escape

    console.print(f"[{_STYLE[cond.status]}]{_MARK[cond.status]:>12}[/] {escape(cond.title)} [dim]({cond.id})[/]")
    for r in cond.reasons:
        _print_reason(console, result, r)
    failing = [c for c in cond.cases if c.status != "pass" or any(r.kind == "warning" for r in c.reasons)]
    for case in failing:
        for r in case.reasons:
            _print_reason(console, result, r)
    if cond.cases and not failing:
        console.print(f"             [dim]{len(cond.cases)} checked: {', '.join(c.name for c in cond.cases[:6])}"
                      f"{' ...' if len(cond.cases) > 6 else ''}[/]")


def _command(console: Any, indent: str, command: str) -> None:
    """A command on one line, never wrapped (a wrapped command pasted into a shell is a different command)."""
    from rich.markup import escape

    prompt = "" if command.startswith("#") else "$ "  # a commented-out command is shown as it would be pasted
    console.print(f"{indent}[cyan]{prompt}{escape(command)}[/]", soft_wrap=True)


def _print_reason(console: Any, result: GateResult, r: GateReason) -> None:
    from rich.markup import escape

    style = {"blocking": "red", "unknown": "yellow", "warning": "magenta"}[r.kind]
    label = "CRITICAL" if r.severity.label == "critical" else r.kind
    console.print(f"             [{style}]- {label}[/] {escape(r.subject)}: {escape(r.message)}")
    for e in r.evidence:
        console.print(f"                 [dim]evidence: {escape(e)}[/]")
    for c in shown_commands(result, r.commands):
        _command(console, "                 ", c)


def _print_plan(console: Any, result: GateResult, plan: CleanupPlan, *, safe: bool) -> None:
    from rich.markup import escape

    def cmd(indent: str, command: str) -> None:
        _command(console, indent, command if safe else comment_out(command))

    rollout = plan.kind == "rollout"
    if safe:
        console.print("\n[bold]Rollout plan[/] (the gate passed; in this order)" if rollout else
                      "\n[bold]Cleanup plan[/] (the gate passed; run after the kube-proxy DaemonSet is gone)")
    else:
        console.print(f"\n[bold white on red]{NOT_SAFE_HEADER}[/]")
        console.print("[bold]Rollout plan, every command commented out[/] (for review only: switching now is not "
                      "proven safe)" if rollout else "[bold]Cleanup plan, every command commented out[/] (for review "
                      "only: removing kube-proxy now takes Services down)")
    for note in plan.cluster_notes:  # prose that quotes commands: a comment too when the plan is not safe
        console.print(f"  [dim]{escape(note if safe else comment_out(note))}[/]")
    for c in plan.cluster_commands:
        cmd("  ", c)
    for node in plan.nodes:
        head = f"  node {escape(node.node)}" + ("" if node.inspected else " (not inspected)")
        console.print(head + (f" [dim]{escape(node.note)}[/]" if node.note else ""))
        if node.inspected and not node.items:
            console.print("    [green]no kube-proxy state found[/]")
        for item in node.items:
            console.print(f"    - {escape(item.what)}")
            for c in item.commands:
                cmd("      ", c)


def render_console(result: GateResult, *, color: bool = False, width: int | None = None,
                   show_plan: bool = False) -> str:
    from rich.console import Console
    from rich.markup import escape

    from kpdoctor.report.layout import PIPED_WIDTH

    buf = io.StringIO()
    console = Console(file=buf, force_terminal=color, no_color=not color, width=width or PIPED_WIDTH, highlight=False)
    headline = f"[{_VERDICT_STYLE[result.verdict]}]{escape(verdict_headline(result))}[/]"
    console.print(headline)
    console.print(f"[bold]kpdoctor gate {result.gate}[/] — phase {result.phase} — {escape(result.source)}")
    console.print()
    for cond in result.conditions:
        _print_condition(console, result, cond)
    plan = result.cleanup
    safe = destructive_allowed(result)
    if plan is not None and (safe or show_plan):
        _print_plan(console, result, plan, safe=safe)
    elif plan is not None:
        console.print(f"\n[bold]{plan.kind.capitalize()} plan withheld[/]: the gate did not pass. It would {escape(plan_summary(plan))}. "
                      "See it, every command commented out, with --show-plan.")
    for note in result.notes:
        console.print(f"[dim]note: {escape(note)}[/]")
    console.print()
    console.print(headline)
    return buf.getvalue()


def render(fmt: str, result: GateResult, *, color: bool = False, width: int | None = None,
           show_plan: bool = False) -> str:
    if fmt == "json":
        return render_json(result)
    if fmt == "junit":
        from kpdoctor.report import printable

        # agents' and nodes' output reaches the reasons verbatim; XML 1.0 forbids control characters
        return str(printable(render_junit(result)))
    return render_console(result, color=color, width=width, show_plan=show_plan)
