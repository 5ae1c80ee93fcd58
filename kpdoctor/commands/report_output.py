"""What `kpdoctor scan` and `kpdoctor node` share after the scan: writing the report (the --probe-* flags are
kpdoctor.commands.optgroups.ProbeFlags).

A leaf of `kpdoctor.commands` (standard library and lazy imports only) so that `scan` and `node` both
depend on it instead of on each other.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any


def emit_report(outcome: Any, fmt: str, output: str | None, *, min_severity: str | None = None) -> None:
    """Render a ScanOutcome to stdout or --output FILE (shared by `scan` and `node`), plus the probe summary."""
    from kpdoctor.errors import InputError
    from kpdoctor.report import render

    if outcome.probe is not None:
        print(f"kpdoctor: probe: {outcome.probe.summary()}", file=sys.stderr)
    if output:
        text = render(fmt, outcome.report, min_severity=min_severity)
        try:
            Path(output).write_text(text, encoding="utf-8")
        except OSError as exc:
            raise InputError(f"cannot write report: {exc}", where=output) from None
        s = outcome.report["summary"]["findings"]
        print(f"kpdoctor: {fmt} report written to {output} ({', '.join(f'{v} {k}' for k, v in s.items())}; "
              f"exit {outcome.exit_code})", file=sys.stderr)
    else:
        from kpdoctor.report.layout import console_width

        width = console_width(sys.stdout)
        from kpdoctor.commands.terminal import use_color

        sys.stdout.write(render(fmt, outcome.report, color=use_color(sys.stdout) and fmt == "console", width=width,
                                min_severity=min_severity))
        sys.stdout.flush()
