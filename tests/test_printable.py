"""kpdoctor.printable: outside text shown with control and bidi characters escaped, for every text output."""

from __future__ import annotations

from kpdoctor import report
from kpdoctor.printable import printable
from kpdoctor.why import render


def test_escapes_controls_and_bidi_keeps_tab_and_newline() -> None:
    assert printable("a\x1b[31mred\tb\nc") == "a\\x1b[31mred\tb\nc"
    assert printable("evil\u202ename") == "evil\\u202ename"  # Trojan Source
    assert printable({"k": ["x\x00", ("y\x7f",)], "n": 3}) == {"k": ["x\\x00", ["y\\x7f"]], "n": 3}
    plain = "nothing to escape"
    assert printable(plain) is plain


def test_report_and_why_share_it() -> None:
    assert report.printable is printable and render.printable is printable
