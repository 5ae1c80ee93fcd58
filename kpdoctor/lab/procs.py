"""Background processes of the lab cluster, recorded by PID *and* start time.

`cluster up` returns while etcd, kube-apiserver, the relay and the kube-proxies keep
running; `cluster down` (possibly another process, later) stops exactly those. A PID alone
could have been reused by then, so each record carries the process start time from
/proc/PID/stat and a process is signalled only when both still match.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Proc:
    role: str
    pid: int
    start: int  # /proc/PID/stat field 22 (clock ticks since boot)
    log: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Proc:
        return cls(str(data["role"]), int(data["pid"]), int(data["start"]), str(data["log"]))


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, start time) of a process, or None when it does not exist."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    return fields[0], int(fields[19])


def alive(proc: Proc) -> bool:
    st = _stat(proc.pid)
    return st is not None and st[1] == proc.start and st[0] not in ("Z", "X")


def spawn(role: str, argv: Sequence[str], log: Path, *, env: dict[str, str] | None = None,
          netns: str | None = None) -> Proc:  # fmt: skip
    """Start argv detached (own session, stdin closed, output to `log`); inside `netns` when given."""
    full = ["ip", "netns", "exec", netns, *argv] if netns else list(argv)
    with open(log, "ab") as out:
        child = subprocess.Popen(full, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                 env=env, start_new_session=True)  # fmt: skip
    _CHILDREN[child.pid] = child
    st = _stat(child.pid)
    return Proc(role, child.pid, st[1] if st else 0, str(log))


# Popen objects of processes this Python process started, so stopped children are reaped.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def _reap(pid: int) -> None:
    child = _CHILDREN.get(pid)
    if child is not None and child.poll() is not None:
        _CHILDREN.pop(pid, None)


def signal_proc(proc: Proc, sig: int) -> bool:
    """Send `sig` only if the recorded process is still the same process."""
    if not alive(proc):
        return False
    try:
        os.kill(proc.pid, sig)
    except ProcessLookupError:
        return False
    return True


def stop(proc: Proc, grace: float = 5.0) -> None:
    """SIGTERM (after SIGCONT, in case a test stopped it), then SIGKILL after `grace` seconds."""
    signal_proc(proc, signal.SIGCONT)
    if not signal_proc(proc, signal.SIGTERM):
        _reap(proc.pid)
        return
    end = time.monotonic() + grace
    while time.monotonic() < end:
        _reap(proc.pid)
        if not alive(proc):
            return
        time.sleep(0.05)
    signal_proc(proc, signal.SIGKILL)
    for _ in range(100):
        _reap(proc.pid)
        if not alive(proc):
            return
        time.sleep(0.05)
