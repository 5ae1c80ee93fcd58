"""A long-running monitor in a network namespace (`nft monitor trace`, `xtables-monitor --trace`) whose output
lines a test reads as they come: started by the test, stopped by its own PID when the `with` block ends."""

from __future__ import annotations

import queue
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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


@dataclass
class TracedNode:
    """A node namespace under a trace monitor (tests/lab/test_trace_*_monitor.py): the namespace, the client
    namespace that sends to it, its ruleset dump and `ip -j addr` taken before tracing began, and the monitor."""

    node: str
    client: str
    dump: str
    ip_addr: str
    monitor: LineMonitor

    def __repr__(self) -> str:  # test ids and failure output name the node, not its whole dump
        return f"{type(self).__name__}({self.node!r})"

    def drain(self) -> list[str]:
        return self.monitor.drain()


def await_subscribed(mon: LineMonitor, probe: Callable[[int], None], is_event: Callable[[str], bool],
                     attempts: int = 25) -> tuple[bool, list[str]]:  # fmt: skip
    """Until the monitor is subscribed: `probe(attempt)` sends a packet, and within 0.2 s a line `is_event` comes
    back (at most `attempts` tries). Then the probes' late lines are drained (0.3 s). Returns whether it is
    subscribed and the lines the last try saw (for the caller's skip or failure message)."""
    seen: list[str] = []
    for attempt in range(attempts):
        probe(attempt)
        time.sleep(0.2)
        seen = mon.drain()
        if any(is_event(line) for line in seen):
            time.sleep(0.3)
            mon.drain()
            return True, seen
    return False, seen
