"""kpdoctor/node/cut_dump.py: an iptables dump that stops inside a table although its command exited 0 (how an
exec stream loses the end of an output, kubernetes/kubernetes#124571) is read once more.

The dump is the lab's real kube-proxy capture (tests/fixtures/trace/edge-1-iptables-nft-save.txt), cut at every
line of its last table the way the collector pod's stream cut a 5.5 MB dump once; the second read is given by a
recorded run function (the transports themselves are exercised by the lab tests), which the test says here.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from kpdoctor.node import collectors as C
from kpdoctor.node.cut_dump import ends_mid_table, read_again
from kpdoctor.node.run_fact import to_fact
from kpdoctor.node.transport import RunResult

DUMP = (Path(__file__).resolve().parents[1] / "fixtures" / "trace" / "edge-1-iptables-nft-save.txt").read_text()
HALF = len(DUMP) // 2
SPEC = next(s for s in C.PHASE2 if s.key == "iptables-nft-save.txt")


def test_a_whole_dump_and_an_empty_one_do_not_end_mid_table() -> None:
    assert not ends_mid_table(DUMP)
    assert not ends_mid_table(DUMP + "\n\n# trailing comment\n")
    assert not ends_mid_table("")
    assert not ends_mid_table("# Warning: iptables-legacy tables present, use iptables-legacy-save to see them\n")


def test_every_cut_inside_a_table_is_seen() -> None:
    lines = DUMP.splitlines(keepends=True)
    last_table = max(i for i, line in enumerate(lines) if line.startswith("*"))
    for n in range(last_table + 1, len(lines)):
        cut = "".join(lines[:n])
        if cut.rstrip().endswith("COMMIT"):
            continue
        assert ends_mid_table(cut), n
    assert ends_mid_table(DUMP[:HALF])  # mid-line too


def _runs(*outputs: bytes) -> tuple[list[Sequence[str]], object]:
    calls: list[Sequence[str]] = []
    queue = list(outputs)

    def run(argv: Sequence[str], timeout: float, max_bytes: int) -> RunResult | None:
        calls.append(argv)
        return RunResult(stdout=queue.pop(0), exit_code=0, duration=0.5) if queue else None

    return calls, run


def _cut_fact() -> object:
    return to_fact(SPEC.key, SPEC.source, RunResult(stdout=DUMP[:HALF].encode(), exit_code=0, duration=1.0))


def test_a_cut_dump_is_read_again_and_the_note_says_why() -> None:
    calls, run = _runs(DUMP.encode())
    fact = read_again(SPEC, _cut_fact(), run)  # type: ignore[arg-type]
    assert calls == [SPEC.argv]
    assert fact.content == DUMP and fact.duration == 1.5
    assert f"first read ended inside a table ({HALF:,} bytes" in fact.error


@pytest.mark.parametrize("second", [DUMP[: len(DUMP) * 3 // 4].encode(), None])
def test_a_second_cut_or_failed_read_keeps_the_first(second: bytes | None) -> None:
    cut = _cut_fact()
    _, run = _runs(*([second] if second is not None else []))
    assert read_again(SPEC, cut, run) is cut  # type: ignore[arg-type]
