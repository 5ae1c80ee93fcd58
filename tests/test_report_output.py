"""kpdoctor.commands.report_output: what `scan` and `node` share after the scan (the report output), and the gates."""

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


def test_both_gates_use_the_leaf_to_write_their_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from kpdoctor.commands import gate, gate_mode_switch
    from kpdoctor.demo import __file__ as demo_init
    from kpdoctor.gate.mode_switch import run_mode_switch
    from kpdoctor.gate.sources import from_bundle

    assert gate.write_gate_report is gate_mode_switch.write_gate_report is report_output.write_gate_report
    source = from_bundle(str(Path(demo_init).parent / "bundle"))
    result = run_mode_switch(source.cluster, source.nodes, target="nftables")
    target = tmp_path / "gate.txt"
    report_output.write_gate_report(result, "console", str(target), "the text\n", detail="2 blocking; ")
    assert target.read_text() == "the text\n"
    assert capsys.readouterr().err == (f"kpdoctor: gate mode-switch (pre-switch): {result.verdict} — console report "
                                       f"written to {target} (2 blocking; exit {result.exit_code})\n")
    with pytest.raises(InputError, match="cannot write report: No such file or directory"):
        report_output.write_gate_report(result, "json", str(tmp_path / "missing" / "g.json"), "x")
