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
from kpdoctor.gate.model import CleanupPlan, GateCase, GateCondition, GateReason, GateResult

SCHEMA = "kpdoctor-gate/v1"
FORMATS = ("console", "json", "junit")


def _reason(r: GateReason) -> dict[str, Any]:
    return {
        "kind": r.kind,
        "severity": r.severity.label,
        "subject": r.subject,
        "message": r.message,
        "evidence": list(r.evidence),
        "commands": list(r.commands),
    }


def _case(c: GateCase) -> dict[str, Any]:
    return {"name": c.name, "status": c.status, "reasons": [_reason(r) for r in c.reasons]}


def _cleanup(plan: CleanupPlan | None) -> dict[str, Any] | None:
    if plan is None:
        return None
    return {
        "cluster_commands": list(plan.cluster_commands),
        "notes": list(plan.cluster_notes),
        "nodes": [
            {"node": n.node, "inspected": n.inspected, "note": n.note,
             "items": [{"what": i.what, "commands": list(i.commands)} for i in n.items]}
            for n in plan.nodes
        ],
    }


def to_dict(result: GateResult) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "kpdoctor_version": __version__,
        "gate": result.gate,
        "phase": result.phase,
        "source": result.source,
        "verdict": result.verdict,
        "exit_code": result.exit_code,
        "summary": {
            "conditions": {s: sum(1 for c in result.conditions if c.status == s) for s in ("pass", "fail", "unknown")},
            "blocking_reasons": len(result.blocking_reasons),
            "unknown_reasons": len(result.unknown_reasons),
        },
        "conditions": [
            {"id": c.id, "title": c.title, "status": c.status, "evidence": list(c.evidence),
             "reasons": [_reason(r) for r in c.reasons], "cases": [_case(x) for x in c.cases]}
            for c in result.conditions
        ],
        "cleanup": _cleanup(result.cleanup),
        "notes": list(result.notes),
    }


def render_json(result: GateResult) -> str:
    return json.dumps(to_dict(result), indent=2) + "\n"


def _reason_text(reasons: tuple[GateReason, ...]) -> str:
    lines = []
    for r in reasons:
        lines.append(f"[{r.kind}/{r.severity.label}] {r.subject}: {r.message}")
        lines.extend(f"    evidence: {e}" for e in r.evidence)
        lines.extend(f"    fix: {c}" for c in r.commands)
    return "\n".join(lines)


def _add_case(suite: ET.Element, classname: str, name: str, status: str, reasons: tuple[GateReason, ...]) -> None:
    case = ET.SubElement(suite, "testcase", classname=classname, name=name, time="0")
    blocking = tuple(r for r in reasons if r.kind == "blocking")
    unknowns = tuple(r for r in reasons if r.kind == "unknown")
    if status == "fail":
        el = ET.SubElement(case, "failure", message=blocking[0].message if blocking else "failed",
                           type="blocking")
        el.text = _reason_text(blocking + unknowns)
    elif status == "unknown":
        el = ET.SubElement(case, "error", message="cannot prove: " + (unknowns[0].message if unknowns else ""),
                           type="cannot-prove")
        el.text = _reason_text(unknowns)
    warnings = tuple(r for r in reasons if r.kind == "warning")
    if warnings:
        out = ET.SubElement(case, "system-out")
        out.text = _reason_text(warnings)


def render_junit(result: GateResult) -> str:
    root = ET.Element("testsuites", name=f"kpdoctor gate {result.gate}")
    suite = ET.SubElement(root, "testsuite", name=f"kpdoctor gate {result.gate} ({result.phase})")
    props = ET.SubElement(suite, "properties")
    for key, value in (("verdict", result.verdict), ("exit_code", str(result.exit_code)), ("source", result.source)):
        ET.SubElement(props, "property", name=key, value=value)
    base = f"kpdoctor.gate.{result.gate}.{result.phase}"
    for cond in result.conditions:
        _add_case(suite, base, cond.id, cond.status, cond.all_reasons if cond.cases else cond.reasons)
        for case in cond.cases:
            _add_case(suite, f"{base}.{cond.id}", case.name, case.status, case.reasons)
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


def _print_condition(console: Any, cond: GateCondition) -> None:
    from rich.markup import escape

    console.print(f"[{_STYLE[cond.status]}]{_MARK[cond.status]:>12}[/] {escape(cond.title)} [dim]({cond.id})[/]")
    for r in cond.reasons:
        _print_reason(console, r)
    failing = [c for c in cond.cases if c.status != "pass" or any(r.kind == "warning" for r in c.reasons)]
    for case in failing:
        for r in case.reasons:
            _print_reason(console, r)
    if cond.cases and not failing:
        console.print(f"             [dim]{len(cond.cases)} checked: {', '.join(c.name for c in cond.cases[:6])}"
                      f"{' ...' if len(cond.cases) > 6 else ''}[/]")


def _print_reason(console: Any, r: GateReason) -> None:
    from rich.markup import escape

    style = {"blocking": "red", "unknown": "yellow", "warning": "magenta"}[r.kind]
    label = "CRITICAL" if r.severity.label == "critical" else r.kind
    console.print(f"             [{style}]- {label}[/] {escape(r.subject)}: {escape(r.message)}")
    for e in r.evidence:
        console.print(f"                 [dim]evidence: {escape(e)}[/]")
    for c in r.commands:
        console.print(f"                 [cyan]$ {escape(c)}[/]")


def render_console(result: GateResult, *, color: bool = False, width: int | None = None) -> str:
    from rich.console import Console
    from rich.markup import escape

    buf = io.StringIO()
    console = Console(file=buf, force_terminal=color, no_color=not color, width=width or 120, highlight=False)
    verdict_style = {"pass": "bold green", "fail": "bold red", "cannot-prove": "bold yellow"}[result.verdict]
    console.print(f"[bold]kpdoctor gate {result.gate}[/] — phase {result.phase} — {escape(result.source)}")
    for cond in result.conditions:
        _print_condition(console, cond)
    plan = result.cleanup
    if plan is not None:
        console.print("\n[bold]Cleanup plan[/] (after the kube-proxy DaemonSet is gone)")
        for note in plan.cluster_notes:
            console.print(f"  [dim]{escape(note)}[/]")
        for cmd in plan.cluster_commands:
            console.print(f"  [cyan]$ {escape(cmd)}[/]")
        for node in plan.nodes:
            head = f"  node {node.node}" + ("" if node.inspected else " (not inspected)")
            console.print(head + (f" [dim]{escape(node.note)}[/]" if node.note else ""))
            if node.inspected and not node.items:
                console.print("    [green]no kube-proxy state found[/]")
            for item in node.items:
                console.print(f"    - {escape(item.what)}")
                for cmd in item.commands:
                    console.print(f"      [cyan]$ {escape(cmd)}[/]")
    for note in result.notes:
        console.print(f"[dim]note: {escape(note)}[/]")
    blocking = len(result.blocking_reasons)
    unknowns = len(result.unknown_reasons)
    console.print(f"\n[{verdict_style}]verdict: {result.verdict.upper()}[/] "
                  f"({blocking} blocking reason{'s' if blocking != 1 else ''}, {unknowns} cannot-prove; "
                  f"exit {result.exit_code})")
    return buf.getvalue()


def render(fmt: str, result: GateResult, *, color: bool = False, width: int | None = None) -> str:
    if fmt == "json":
        return render_json(result)
    if fmt == "junit":
        from kpdoctor.report import printable

        # agents' and nodes' output reaches the reasons verbatim; XML 1.0 forbids control characters
        return str(printable(render_junit(result)))
    return render_console(result, color=color, width=width)
