"""Report model and renderers. Every renderer takes the JSON report dict (the source of truth)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

FORMATS = ("console", "json", "junit", "markdown", "html")
# Node output (rule dumps, kube-proxy's HTTP answers, logs) reaches findings verbatim. Control characters in it
# would drive the reader's terminal (ESC sequences) and make JUnit XML unparsable (XML 1.0 forbids them), so
# every text renderer gets them as visible escapes; JSON escapes them itself.
# Bidi controls and invisible format characters (U+202E "Trojan Source") are shown escaped too (issue 9).
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff"
                      "\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff\u2028\u2029]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(value: Any) -> Any:
    """A copy of a report value with control characters (except tab and newline) shown as \\xNN escapes."""
    if isinstance(value, str):
        return _CONTROL.sub(_escape, value) if _CONTROL.search(value) else value
    if isinstance(value, Mapping):
        return {k: printable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [printable(v) for v in value]
    return value


def render(fmt: str, report: Mapping[str, Any], *, color: bool = False, width: int | None = None,
           min_severity: str | None = None) -> str:
    """Render `report` as text in `fmt` (renderer modules are imported on demand: --help stays fast)."""
    if fmt == "json":
        from kpdoctor.report.json_report import render_json

        return render_json(report)
    report = printable(report)
    if fmt == "junit":
        from kpdoctor.report.junit import render_junit

        return render_junit(report)
    if fmt == "markdown":
        from kpdoctor.report.markdown import render_markdown

        return render_markdown(report, min_severity=min_severity)
    if fmt == "html":
        from kpdoctor.report.html import render_html

        return render_html(report, min_severity=min_severity)
    if fmt == "console":
        from kpdoctor.report.console import render_console

        return render_console(report, color=color, width=width, min_severity=min_severity)
    raise ValueError(f"unknown report format {fmt!r} (choose from {', '.join(FORMATS)})")
