"""What `kpdoctor scan` and `kpdoctor node` share after the scan: writing the report (the --probe-* flags are
kpdoctor.commands.optgroups.ProbeFlags); and what the two gates share: writing their report to --output-file.

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


def write_gate_report(result: Any, fmt: str, output: str, text: str, *, detail: str = "") -> None:
    """A gate's rendered report to --output-file FILE (an unwritable FILE: one-line InputError naming it), then
    the verdict line on stderr; `detail` goes before the exit code in its parentheses."""
    from kpdoctor.errors import InputError

    try:
        Path(output).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot write report: {exc.strerror}", where=output) from None
    print(f"kpdoctor: gate {result.gate} ({result.phase}): {result.verdict} — {fmt} report written to "
          f"{output} ({detail}exit {result.exit_code})", file=sys.stderr)
