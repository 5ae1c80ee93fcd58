"""Issue 11's guard: a restructuring changes no report.

Every case of tests/golden/capture.py (scan in five formats on the demo and B1-B4, both gates, real-world
shapes, every real dump through `analyze`, trace and why on the demo) is run as a subprocess and compared
byte for byte (after removing timestamps and durations) with tests/fixtures/golden-reports/<case>.golden,
captured at main 6ecaa7e before the restructuring. A deliberate change of output regenerates them with
`python3 -m tests.golden.capture tests/fixtures/golden-reports` and says why in the commit.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.golden.capture import SUFFIX, cases, first_difference, golden_path, run

GOLDEN = Path(__file__).parent / "fixtures" / "golden-reports"
CASES = cases()


def test_every_golden_file_has_a_case() -> None:
    assert sorted(p.name for p in GOLDEN.iterdir()) == sorted(name + SUFFIX for name, _ in CASES)


@pytest.mark.parametrize(("name", "argv"), CASES, ids=[c[0] for c in CASES])
def test_report_unchanged(name: str, argv: list[str]) -> None:
    assert first_difference(golden_path(GOLDEN, name).read_bytes(), run(argv).encode()) is None


@pytest.mark.parametrize("name", ["scan-B2-stale-endpoint.html", "scan-demo.junit", "trace-edge1-ledger.txt"])
def test_one_flipped_byte_is_a_difference(name: str) -> None:
    """The comparison the guard uses sees a single changed byte anywhere in a real golden file, a
    CRLF for LF included (bytes are compared, not text read with universal newlines)."""
    golden = golden_path(GOLDEN, name).read_bytes()
    assert first_difference(golden, golden) is None
    for at in (0, len(golden) // 2, len(golden) - 1):
        flipped = bytearray(golden)
        flipped[at] ^= 0x01
        assert first_difference(golden, bytes(flipped)) is not None
    crlf = golden.replace(b"\n", b"\r\n", 1)
    assert crlf != golden and first_difference(golden, crlf) is not None
