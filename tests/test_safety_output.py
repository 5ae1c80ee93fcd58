"""Safety of what kpdoctor prints and where its lab commands run.

- Node output reaches findings verbatim (a corrupt or hostile node's /proxyMode, rule dumps, logs). Control
  characters in it must not reach the reader's terminal as escape sequences, and must not make the JUnit
  XML that CI parses invalid (XML 1.0 forbids them). The test corrupts every file of one node of the real
  B1 bundle with bytes 0x00-0xff and renders every format through the CLI.
- The lab runs iptables-restore / nft -f / sysctl -w under `ip netns exec NAME`; an empty NAME would run
  them on the host. The guard is checked with a harmless command (`true`), so a broken guard cannot touch
  the host's ruleset.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from kpdoctor.lab import netns
from kpdoctor.lab.netns import LabError
from kpdoctor.report import printable
from tests.conftest import BUNDLES

B1 = BUNDLES / "B1-healthy" / "bundle"
REPO = Path(__file__).resolve().parents[1]
NOISE = bytes(range(256)) * 4 + b"\x1b]0;owned\x07\x1b[2J\x1b[31mRED\n"


@pytest.fixture(scope="module")
def noisy_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("noisy") / "bundle"
    shutil.copytree(B1, root)
    for path in (root / "nodes" / "edge-1").rglob("*"):
        if path.is_file():
            path.write_bytes(NOISE)
    return root


def _kpd(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "kpdoctor", *args], capture_output=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"})  # fmt: skip


@pytest.mark.parametrize("fmt", ["console", "markdown", "html", "junit", "json"])
def test_reports_of_a_node_printing_control_bytes(noisy_bundle: Path, fmt: str) -> None:
    proc = _kpd("scan", "--bundle", str(noisy_bundle), "-o", fmt)
    assert proc.returncode in (0, 1), proc.stderr.decode(errors="replace")
    out = proc.stdout
    assert b"owned" in out or fmt != "console"  # the node's text is shown (escaped), not dropped
    forbidden = [b for b in set(out) if b < 0x20 and b not in (0x09, 0x0A)]
    assert forbidden == [], f"raw control bytes in {fmt} output: {sorted(forbidden)}"
    if fmt == "junit":
        ET.fromstring(out)  # parses: CI can read it
    if fmt == "json":
        json.loads(out)


def test_gate_junit_stays_valid_xml(noisy_bundle: Path) -> None:
    proc = _kpd("gate", "kube-proxy-removal", "--bundle", str(noisy_bundle), "-o", "junit")
    assert proc.returncode in (0, 1, 3), proc.stderr.decode(errors="replace")
    ET.fromstring(proc.stdout)


def test_printable_escapes_only_control_characters() -> None:
    report = {"a": ["ok\ttab\nline", "esc\x1b[31m", "nul\x00", "c1\x85", "ünï €"], "n": 3, "t": (1, "\x07")}
    assert printable(report) == {"a": ["ok\ttab\nline", "esc\\x1b[31m", "nul\\x00", "c1\\x85", "ünï €"], "n": 3,
                                 "t": [1, "\\x07"]}  # fmt: skip


@pytest.mark.parametrize("name", ["", " ", "\t"])
def test_lab_refuses_an_empty_namespace_name(name: str) -> None:
    with pytest.raises(LabError, match="refusing to run on the host"):
        netns.run(["true"], netns=name)
    assert netns.ns_argv("kpd-x", ["true"]) == ["ip", "netns", "exec", "kpd-x", "true"]
    assert netns.ns_argv(None, ["ip", "netns", "list"]) == ["ip", "netns", "list"]
