"""One child process measured by wait4: wall clock, the child's own CPU time and its peak RSS.

The benchmarks compare kpdoctor with other tools and with itself as separate processes; this is the one
place that starts such a process and reads its rusage (CPU time is what load on a shared machine does not
inflate, wall time is what a user waits).
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO


@dataclass(frozen=True)
class ChildRun:
    wall: float  # seconds
    cpu: float  # seconds, the child's user + sys
    max_rss_kib: int  # the child's peak resident set (wait4's ru_maxrss on Linux)
    returncode: int
    stdout: str  # only with stdout=subprocess.PIPE
    stderr: str  # only with stderr=subprocess.PIPE

    @property
    def max_rss_mib(self) -> float:
        return self.max_rss_kib / 1024


def run_child(argv: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None,
              stdout: int | IO[str] = subprocess.DEVNULL, stderr: int = subprocess.PIPE) -> ChildRun:
    """Run argv to its end; its output is read after it exits (keep what it prints to a pipe small)."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=stdout, stderr=stderr, env=env, cwd=cwd)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    out = proc.stdout.read().decode() if proc.stdout else ""
    err = proc.stderr.read().decode() if proc.stderr else ""
    return ChildRun(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss,
                    os.waitstatus_to_exitcode(status), out, err)
