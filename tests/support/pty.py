"""Run a command on a real pseudo-terminal (for what kpdoctor prints to a terminal, not to a pipe)."""

from __future__ import annotations

import os
import pty
import subprocess


def run_on_terminal(argv: list[str], env: dict[str, str], timeout: float = 120) -> tuple[int, str]:
    """(exit code, everything written to the terminal); stderr is discarded."""
    leader, follower = pty.openpty()
    try:
        proc = subprocess.run(argv, stdout=follower, stderr=subprocess.DEVNULL, timeout=timeout, env=env)
        os.close(follower)
        follower = -1
        chunks = []
        for _ in range(100000):  # bounded: one read per chunk of output
            try:
                data = os.read(leader, 65536)
            except OSError:  # EIO: the writer side is closed and the buffer drained
                break
            if not data:
                break
            chunks.append(data)
        return proc.returncode, b"".join(chunks).decode(errors="replace")
    finally:
        os.close(leader)
        if follower >= 0:
            os.close(follower)
