"""kpdoctor.report.json_report.write_json writes render_json's text byte for byte, in pieces (the central
merge of 1,000 nodes writes a 700 MB report without holding it): on the demo scan's report, with a chunk size
that makes it flush after nearly every piece, and with characters render_json escapes split across pieces."""

from __future__ import annotations

import datetime as dt
import io
from typing import Any

import pytest

from kpdoctor.engine import run_checks
from kpdoctor.registry import discover
from kpdoctor.report import json_report
from kpdoctor.report.json_report import render_json, write_json
from kpdoctor.report.model import SourceInfo, build_report
from kpdoctor.scanner import DEMO_BUNDLE, open_bundle


def _demo_report() -> dict[str, Any]:
    cluster, source = open_bundle(DEMO_BUNDLE)
    result = run_checks(discover().select(), cluster, node_source=source)
    return build_report(result, source=SourceInfo("demo", str(DEMO_BUNDLE), "bundle"), fail_on=None, exit_code=0,
                        generated_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))


class _Counting(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, s: str) -> int:
        self.writes += 1
        return super().write(s)


@pytest.mark.parametrize("chunk", [1, 7, 1 << 16])
def test_write_json_equals_render_json(monkeypatch: pytest.MonkeyPatch, chunk: int) -> None:
    report = _demo_report()
    report["hostile"] = [{"name": "evil\u202eexe", "lone": "\ud800x", "sep": "a\u2028b"}] * 3 + ["\u200b"] * 5
    monkeypatch.setattr(json_report, "_CHUNK", chunk)
    out = _Counting()
    write_json(report, out)
    want = render_json(report)
    assert "\\u202e" in want and "\\ud800" in want, "the escapes this test is about are not in the report"
    assert out.getvalue() == want
    if chunk == 1:
        assert out.writes > 10, "write_json did not stream: it wrote the report in one piece"


def test_write_json_of_a_non_dict_is_render_json() -> None:
    out = io.StringIO()
    write_json([1, "\u202e"], out)  # type: ignore[arg-type]
    assert out.getvalue() == render_json([1, "\u202e"])  # type: ignore[arg-type]
