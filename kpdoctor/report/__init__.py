"""Report model and renderers. Every renderer takes the JSON report dict (the source of truth)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kpdoctor.printable import printable

FORMATS = ("console", "json", "junit", "markdown", "html")


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
