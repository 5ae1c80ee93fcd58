"""Markdown renderer: a report to paste into a ticket (GitHub/GitLab flavoured)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from kpdoctor.report.layout import affected, group_view, ordered_checks, passed_checks, visible_groups, where

# Untrusted text (names, rule text, node output) is either inside a code fence it cannot close or escaped:
# the punctuation that starts emphasis, code, links, images, headings or table cells gets a backslash, `<` `>` `&` become entities
# (no raw HTML), and line breaks become spaces (no new block: heading, fence, list, quote).
_MD_SPECIAL = re.compile(r"([\\`*_\[\]#|!~])")  # links need `[`, emphasis `*` `_` `~`, code `` ` ``
_TICKS = re.compile("`+")


def _md(text: str) -> str:
    text = _MD_SPECIAL.sub(r"\\\1", str(text)).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return " ".join(text.splitlines())


def _cell(text: str) -> str:
    return _md(text)


def _longest_tick_run(text: str) -> int:
    return max((len(m.group()) for m in _TICKS.finditer(text)), default=0)


def _code(text: str) -> str:
    """Inline code that the text cannot close: a backtick run longer than any inside it."""
    text = " ".join(str(text).splitlines())
    ticks = "`" * (_longest_tick_run(text) + 1)
    return f"{ticks} {text} {ticks}"


def _fence(lines: list[str]) -> list[str]:
    """A fenced block whose fence is longer than any backtick run in the body (so the body cannot close it)."""
    body = "\n".join(lines)
    ticks = "`" * max(3, _longest_tick_run(body) + 1)
    return [ticks, body, ticks]


def render_markdown(report: Mapping[str, Any], *, min_severity: str | None = None) -> str:
    s = report["summary"]
    src = report["source"]
    out = [
        f"# kpdoctor report: {_md(src['kind'])} {_code(src['location'])}",
        "",
        f"kpdoctor {report['kpdoctor_version']}, {report['generated_at']}; {s['checks_run']} checks; "
        f"nodes reachable {s['nodes_reachable']}/{s['nodes_total']} (transport {_md(src['transport'])}); "
        f"exit code {report['exit_code']} (fail-on {report['fail_on'] or 'not set'}).",
        "",
        "| severity | count |",
        "|---|---|",
    ]
    out += [f"| {k} | {v} |" for k, v in s["findings"].items()]
    out += [f"| silenced | {s['silenced']} |", f"| not evaluated | {s['not_evaluated']} |", ""]
    for gap in report["gaps"]:
        out.append(f"> cannot read **{_md(gap['kind'])}**: {_md(gap['reason'])}")
    if affected(report):
        out += [f"**Affected:** {_md(affected(report))}", ""]
    if report.get("causes"):
        out += ["## Root causes", ""]
        for cause in report["causes"]:
            out += [f"- **\\[{cause['severity'].upper()}\\] {_cell(cause['headline'])}**"]
            out += [f"  - {_md(c['check'])} {_cell(c['subject'])}" for c in cause["consequences"]]
            out += [""]
            if cause["commands"]:
                out += [*_fence(cause["commands"]), ""]
    for check in ordered_checks(report):
        if not visible_groups(check, min_severity):
            continue
        out += [f"## {_md(check['id'])}: {_md(check['title'])}", ""]
        if check["docs"]:
            out += [f"Docs: {_md(check['docs'])}", ""]
        for g in visible_groups(check, min_severity):
            out += [f"### \\[{g['severity'].upper()}\\] {_cell(g['subject'])}{_cell(where(g))}", "", _md(g["message"]), ""]
            view = group_view(report, g)
            if view.cause:
                out += [f"*Cause:* {_md(view.cause)}", ""]
            if g["silenced"]:
                out += [f"*Silenced:* {_md(g['silenced_reason'])}", ""]
            evidence = view.evidence_lines()
            if evidence:
                out += ["Evidence:", "", *_fence(evidence), ""]
            if view.remedy is not None:
                out += [f"**Fix:** {_md(view.fix)}", ""]
                if view.covered:
                    out += [f"*{view.covered} command(s) listed under its root cause above.*", ""]
                if view.commands:
                    out += [*_fence(view.commands), ""]
    passed = passed_checks(report)
    if passed:
        out += ["## Passed", "", ", ".join(_code(p) for p in passed), ""]
    return "\n".join(out).rstrip() + "\n"
