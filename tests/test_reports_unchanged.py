"""Issue 11's guard: a restructuring changes no report.

Every case of tests/golden/capture.py (scan in five formats on the demo and B1-B4, both gates, real-world
shapes, every real dump through `analyze`, trace and why on the demo) is run as a subprocess and compared
byte for byte (after removing timestamps and durations) with tests/fixtures/golden-reports/, captured at
main 6ecaa7e before the restructuring. A deliberate change of output regenerates them with
`python3 -m tests.golden.capture tests/fixtures/golden-reports` and says why in the commit.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.golden.capture import cases, run

GOLDEN = Path(__file__).parent / "fixtures" / "golden-reports"
CASES = cases()


def test_every_golden_file_has_a_case() -> None:
    assert sorted(p.name for p in GOLDEN.iterdir()) == sorted(name for name, _ in CASES)


@pytest.mark.parametrize(("name", "argv"), CASES, ids=[c[0] for c in CASES])
def test_report_unchanged(name: str, argv: list[str]) -> None:
    assert run(argv) == (GOLDEN / name).read_text()
