"""kpdoctor.scan_options: the typed options of a scan, and exactly what the report shows of them."""

from __future__ import annotations

from dataclasses import replace

from kpdoctor.scan_options import ScanOptions


def test_report_lists_what_was_given_sorted() -> None:
    assert ScanOptions().report() == {}
    opts = ScanOptions(source="bundle", transport="bundle", probe=False)
    assert opts.report() == {"probe": False, "source": "bundle", "transport": "bundle"}
    assert list(opts.report()) == sorted(opts.report())
    merged = replace(opts, node_findings_omitted=7)
    assert merged.report()["node_findings_omitted"] == 7


def test_probe_results_only_when_a_probe_ran_with_results() -> None:
    results = [{"node": "edge-1", "port": 31130, "result": "open"}]
    assert ScanOptions(probe=results).probe_results() == results
    assert "probe" not in ScanOptions(probe=results).report()  # results are read by the check, not listed
    assert ScanOptions(probe=True).probe_results() is None
    assert ScanOptions(probe=False).probe_results() is None and ScanOptions().probe_results() is None


def test_incremental_is_an_engine_setting_not_shown() -> None:
    assert ScanOptions().incremental and "incremental" not in ScanOptions(incremental=False, source="x").report()
