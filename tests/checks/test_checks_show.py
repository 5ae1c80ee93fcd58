"""`kpdoctor checks show`: the docs page rendered for a terminal, the Markdown itself for a pipe; no internal
jargon (the `common` tag, "built in" origin) — run as the real command, on a real pseudo-terminal."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.pty import run_on_terminal

ROOT = Path(__file__).resolve().parents[2]


def env(**extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR")}
    return {**base, "PYTHONPATH": str(ROOT), "TERM": "xterm", "COLUMNS": "100", **extra}


def on_terminal(*args: str, **extra: str) -> str:
    code, out = run_on_terminal([sys.executable, "-m", "kpdoctor", *args], env(**extra))
    assert code == 0
    return out


def test_pipe_gets_markdown_terminal_gets_it_rendered() -> None:
    piped = subprocess.run([sys.executable, "-m", "kpdoctor", "checks", "show", "KP-STALE-ENDPOINTS"],
                           capture_output=True, text=True, timeout=120, env=env())  # fmt: skip
    assert piped.returncode == 0 and "\n## How to fix" in piped.stdout and "\x1b[" not in piped.stdout
    shown = on_terminal("checks", "show", "KP-STALE-ENDPOINTS")
    assert "How to fix" in shown and "## How to fix" not in shown  # a heading, not its Markdown source
    assert "\x1b[" in shown
    assert "\x1b[" not in on_terminal("checks", "show", "KP-STALE-ENDPOINTS", NO_COLOR="1")


def test_no_internal_jargon() -> None:
    out = subprocess.run([sys.executable, "-m", "kpdoctor", "checks", "show", "KP-CILIUM-KPR"], capture_output=True,
                         text=True, timeout=120, env=env()).stdout  # fmt: skip
    assert "seed" not in out and "builtin:" not in out
    assert "origin:    built in" in out and "common" in out
    listed = subprocess.run([sys.executable, "-m", "kpdoctor", "checks", "list", "--checks", "tag:common", "-o",
                             "json"], capture_output=True, text=True, timeout=120, env=env())  # fmt: skip
    assert listed.returncode == 0 and listed.stdout.count('"id"') == 7, listed.stdout
