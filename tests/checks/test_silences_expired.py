"""Expired silences are reported (a warning naming file:line and the date), never dropped silently; the
finding they used to silence comes back counted. Real bundle B2 (a stale endpoint on a real capture)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from kpdoctor.silences import parse_silences

ROOT = Path(__file__).resolve().parents[2]
B2 = ROOT / "tests" / "fixtures" / "bundles" / "B2-stale-endpoint" / "bundle"
FILE = """version: 1
silences:
  - check: KP-STALE-ENDPOINTS
    service: payments/ledger
    reason: ledger is being migrated (OPS-7)
    expires: 2001-01-01
  - check: KP-SYNC-LAG
    reason: still valid
    expires: 2999-12-31
"""


def test_expired_warnings_name_the_entry_and_the_date() -> None:
    warnings = parse_silences(FILE, "k.yaml").expired_warnings()
    assert warnings == ["k.yaml:3: silence (check KP-STALE-ENDPOINTS, service payments/ledger) expired on "
                        "2001-01-01 and no longer applies; renew or remove it (reason was: ledger is being "
                        "migrated (OPS-7))"]  # fmt: skip


def test_scan_and_node_warn_and_count_the_finding_again(tmp_path: Path) -> None:
    config = tmp_path / "silences.yaml"
    config.write_text(FILE)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for args in (("scan", "--bundle", str(B2)), ("node", "edge-1", "--bundle", str(B2))):
        proc = subprocess.run([sys.executable, "-m", "kpdoctor", *args, "--config-file", str(config), "-o", "json"],
                              capture_output=True, text=True, timeout=120, env=env)  # fmt: skip
        assert f"kpdoctor: warning: {config}:3: silence (check KP-STALE-ENDPOINTS" in proc.stderr, proc.stderr
        report = json.loads(proc.stdout)
        stale = next(c for c in report["checks"] if c["id"] == "KP-STALE-ENDPOINTS")
        assert stale["groups"] and all(g["silenced"] is False for g in stale["groups"]), args
        assert proc.returncode == 1, (args, proc.stderr)
