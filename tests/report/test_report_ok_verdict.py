"""The console's last line says "ok" only when every check saw what it needed (issue 12's reduced-RBAC run
printed "exit 0: ok" while ConfigMaps could not be read): a gap or a not-evaluated group makes it
"nothing found in what was seen; ...", naming what was not seen."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

from kpdoctor.report import render

B1 = Path(__file__).resolve().parents[1] / "fixtures" / "bundles" / "B1-healthy" / "bundle"


def _b1_report() -> dict:
    proc = subprocess.run([sys.executable, "-m", "kpdoctor", "scan", "--bundle", str(B1), "-o", "json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_ok_only_when_everything_was_seen() -> None:
    report = _b1_report()
    assert not report["gaps"]
    assert report["exit_code"] == 0
    last = render("console", report).splitlines()[-1]
    assert last.startswith("exit 0: ok"), last

    gapped = copy.deepcopy(report)  # the same report after the API refused ConfigMaps (as a 403 gives it)
    gapped["gaps"] = [{"kind": "ConfigMap", "reason": "forbidden (403): cannot list ConfigMaps in kube-system"}]
    last = render("console", gapped).splitlines()[-1]
    assert "exit 0: ok" not in last and "nothing found in what was seen" in last and "cannot read: ConfigMap" in last

    partial = copy.deepcopy(report)  # one check not evaluated on one node, findings elsewhere
    check = partial["checks"][0]
    check["groups"] = [*check["groups"], {**_info_group(), "not_evaluated": True}]
    last = render("console", partial).splitlines()[-1]
    assert "exit 0: ok" not in last and f"not evaluated: {check['id']}" in last


def _info_group() -> dict:
    return {"severity": "info", "subject": "Node edge-1", "message": "not evaluated: facts not collected",
            "scope": "node", "nodes": ["edge-1"], "count": 1, "silenced": False, "silenced_reason": "",
            "evidence": [], "remediation": None, "docs": "", "occurrences": []}
