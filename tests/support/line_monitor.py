"""A long-running monitor in a network namespace (`nft monitor trace`, `xtables-monitor --trace`) whose output
lines a test reads as they come: started by the test, stopped by its own PID when the `with` block ends."""

from __future__ import annotations

import queue
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

from kpdoctor.lab import netns


class LineMonitor:
    def __init__(self) -> None:
        self.lines: queue.Queue[str] = queue.Queue()

    def drain(self) -> list[str]:
        """Every line printed since the last drain."""
        out = []
        while True:
            try:
                out.append(self.lines.get_nowait())
            except queue.Empty:
                return out


def _reader(stream: IO[str], lines: queue.Queue[str]) -> None:
    for line in stream:
        lines.put(line.rstrip("\n"))


@contextmanager
def line_monitor(node: str, argv: list[str]) -> Iterator[LineMonitor]:
    """Run `argv` in namespace `node` (stdout and stderr together), its lines queued for `drain()`."""
    proc = subprocess.Popen(netns.ns_argv(node, argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        mon = LineMonitor()
        assert proc.stdout is not None
        threading.Thread(target=_reader, args=(proc.stdout, mon.lines), daemon=True).start()
        yield mon
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
