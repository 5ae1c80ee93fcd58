"""Run the kpdoctor CLI of this checkout in a subprocess, as a user would (`python -m kpdoctor ...`)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable, Mapping
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
