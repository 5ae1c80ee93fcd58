"""Run the kpdoctor CLI of this checkout in a subprocess, as a user would (`python -m kpdoctor ...`)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# no kubeconfig and no home directory: a test never reaches a cluster the machine happens to know
NO_CLUSTER = {"KUBECONFIG": "", "HOME": "/nonexistent-kpd-home"}


def kpd(*args: str, env: Mapping[str, str] | None = None, drop: Iterable[str] = (), cwd: str | Path | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`python -m kpdoctor ARGS` with PYTHONPATH=this checkout: the environment is os.environ without the
    variables in `drop`, plus `env`."""
    dropped = set(drop)
    full = {k: v for k, v in os.environ.items() if k not in dropped}
    full["PYTHONPATH"] = str(REPO)
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "kpdoctor", *args], capture_output=True, text=True, timeout=timeout,
                          cwd=cwd, env=full)  # fmt: skip


def kpd_interrupted(*args: str, ready: Callable[[subprocess.Popen[str]], None], env: Mapping[str, str] | None = None,
                    timeout: float = 60) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """`python -m kpdoctor ARGS` as a child process (PYTHONPATH=this checkout, os.environ plus `env`), sent SIGINT
    (Ctrl-C) once `ready(child)` returns (it waits until the run is where the test wants it); its exit code and
    output once it exits (at most `timeout` s, killed otherwise)."""
    child = subprocess.Popen([sys.executable, "-m", "kpdoctor", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})}, cwd=REPO)  # fmt: skip
    try:
        ready(child)
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=timeout)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    return subprocess.CompletedProcess(child.args, child.returncode, out, err)
