"""kpdoctor.commands.report_output: what `scan` and `node` share after the scan (the report output)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kpdoctor.commands import report_output, scan
from kpdoctor.errors import InputError
from kpdoctor.scanner import ScanRequest
from kpdoctor.scanner import scan as run_scan

DEMO_CHECKS = "KP-LEFTOVER-RULES"


def test_scan_and_node_use_the_leaf() -> None:
    assert scan.emit_report is report_output.emit_report


def test_emit_report_writes_the_file_and_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    outcome = run_scan(ScanRequest(demo=True, checks=DEMO_CHECKS, fail_on=None))
    target = tmp_path / "report.json"
    report_output.emit_report(outcome, "json", str(target))
    assert '"checks"' in target.read_text()
    err = capsys.readouterr().err
    assert f"json report written to {target}" in err and f"exit {outcome.exit_code}" in err
    with pytest.raises(InputError, match="cannot write report"):
        report_output.emit_report(outcome, "json", str(tmp_path / "missing" / "r.json"))
