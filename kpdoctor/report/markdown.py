"""Markdown renderer: a report to paste into a ticket (GitHub/GitLab flavoured)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kpdoctor.report.layout import (
    AFTER_CAUSE,
    affected,
    cause_line,
    commands_to_show,
    ordered_checks,
    visible_groups,
    where,
)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _fence(lines: list[str]) -> list[str]:
    body = "\n".join(lines)
    ticks = "````" if "```" in body else "```"
    return [ticks, body, ticks]


def render_markdown(report: Mapping[str, Any], *, min_severity: str | None = None) -> str:
    s = report["summary"]
    src = report["source"]
    out = [
        f"# kpdoctor report: {src['kind']} `{src['location']}`",
        "",
        f"kpdoctor {report['kpdoctor_version']}, {report['generated_at']}; {s['checks_run']} checks; "
        f"nodes reachable {s['nodes_reachable']}/{s['nodes_total']} (transport {src['transport']}); "
        f"exit code {report['exit_code']} (fail-on {report['fail_on'] or 'not set'}).",
        "",
        "| severity | count |",
        "|---|---|",
    ]
    out += [f"| {k} | {v} |" for k, v in s["findings"].items()]
    out += [f"| silenced | {s['silenced']} |", f"| not evaluated | {s['not_evaluated']} |", ""]
    for gap in report["gaps"]:
        out.append(f"> cannot read **{gap['kind']}**: {gap['reason']}")
    if affected(report):
        out += [f"**Affected:** {affected(report)}", ""]
    if report.get("causes"):
        out += ["## Root causes", ""]
        for cause in report["causes"]:
            out += [f"- **[{cause['severity'].upper()}] {_cell(cause['headline'])}**"]
            out += [f"  - {c['check']} {_cell(c['subject'])}" for c in cause["consequences"]]
            out += [""]
            if cause["commands"]:
                out += [*_fence(cause["commands"]), ""]
    for check in ordered_checks(report):
        if not visible_groups(check, min_severity):
            continue
        out += [f"## {check['id']}: {check['title']}", ""]
        if check["docs"]:
            out += [f"Docs: {check['docs']}", ""]
        for g in visible_groups(check, min_severity):
            out += [f"### [{g['severity'].upper()}] {_cell(g['subject'])}{_cell(where(g))}", "", g["message"], ""]
            cause, outranks = cause_line(report, g)
            if cause:
                out += [f"*Cause:* {cause}", ""]
            if g["silenced"]:
                out += [f"*Silenced:* {g['silenced_reason']}", ""]
            evidence = [f"{o['scope']}: {e}" if len(g["occurrences"]) > 1 else e
                        for o in g["occurrences"] for e in o["evidence"]]
            if evidence:
                out += ["Evidence:", "", *_fence(evidence), ""]
            rem = g.get("remediation")
            if rem:
                commands, covered = commands_to_show(report, g)
                out += [f"**Fix:** {AFTER_CAUSE if outranks else ''}{rem['text']}", ""]
                if covered:
                    out += [f"*{covered} command(s) listed under its root cause above.*", ""]
                if commands:
                    out += [*_fence(commands), ""]
    passed = [c["id"] for c in report["checks"] if c["status"] == "passed"]
    if passed:
        out += ["## Passed", "", ", ".join(f"`{p}`" for p in passed), ""]
    return "\n".join(out).rstrip() + "\n"
