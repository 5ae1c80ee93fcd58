"""Issue 18: the removal gate never prints a runnable destructive command unless it passed.

Every failing or cannot-prove gate input we have (the four real kube-proxy captures with no Cilium at all,
Cilium shapes with a blocking gap or missing agent status, a snapshot, the post-removal phase on real
leftovers) is rendered in every format; no line may hold a destructive command that is not commented out.
On a passing input the plan is printed, after the PASS verdict.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest

from kpdoctor.destructive import NOT_SAFE_HEADER, is_destructive
from kpdoctor.gate import run_gate, to_findings
from kpdoctor.gate.model import GateResult
from kpdoctor.gate.render import FORMATS, render
from tests.support.gate import BUNDLES, build_bundle, load

KPDOCTOR = shutil.which("kpdoctor")


def _plain(scenario: str) -> Callable[[Path], tuple[Path, str]]:
    return lambda tmp: (BUNDLES / scenario / "bundle", "pre-removal")


def _blocking(tmp: Path) -> tuple[Path, str]:
    bundle = build_bundle(tmp, version="1.18")
    status = bundle / "nodes" / "edge-1" / "cilium" / "status.json"
    doc = json.loads(status.read_text())
    doc["kube-proxy-replacement"]["features"]["nodePort"] = {}
    status.write_text(json.dumps(doc))
    return bundle, "pre-removal"


NOT_PASSING: dict[str, Callable[[Path], tuple[Path, str]]] = {
    "B1-no-cilium": _plain("B1-healthy"),
    "B2-no-cilium": _plain("B2-stale-endpoint"),
    "B3-no-cilium": _plain("B3-backend-split"),
    "B4-no-cilium": _plain("B4-ipvs-unavailable"),
    "cilium-blocking-gap": _blocking,
    "cilium-no-status": lambda tmp: (build_bundle(tmp, with_status=False), "pre-removal"),
    "cilium-no-configmap": lambda tmp: (build_bundle(tmp, with_config=False), "pre-removal"),
    "post-removal-no-cilium": lambda tmp: (BUNDLES / "B1-healthy" / "bundle", "post-removal"),
    "post-removal-blocking-gap": lambda tmp: (_blocking(tmp)[0], "post-removal"),
}


def _result(bundle: Path, phase: str) -> GateResult:
    cluster, nodes = load(bundle)
    return run_gate(cluster, nodes, phase=phase)  # type: ignore[arg-type]


_HEADS = {"kubectl", "iptables", "ip6tables", "iptables-save", "ip6tables-save", "iptables-nft-save",
          "iptables-legacy-save", "iptables-legacy", "iptables-nft", "nft", "ipvsadm", "ip", "ipset", "kube-proxy",
          "for", "sudo"}


def _runnable_destructive(text: str) -> list[str]:
    """Lines that, pasted into a shell (after a `$ ` prompt or JSON/XML quoting), would destroy something."""
    bad = []
    for line in text.splitlines():
        line = line.strip().strip('",').removeprefix("$ ").removeprefix("fix: ").removeprefix("- ")
        # a line that starts with a command (prose that names one, like the plan's notes, is not pasted)
        if line.split(" ", 1)[0] in _HEADS and is_destructive(line):
            bad.append(line)
    return bad


@pytest.mark.parametrize("name", sorted(NOT_PASSING))
def test_no_runnable_destructive_command_when_the_gate_does_not_pass(tmp_path: Path, name: str) -> None:
    result = _result(*NOT_PASSING[name](tmp_path))
    assert result.verdict != "pass"
    outputs = {fmt: render(fmt, result, width=100) for fmt in FORMATS}
    outputs["console --show-plan"] = render("console", result, width=100, show_plan=True)
    for fmt, text in outputs.items():
        assert _runnable_destructive(text) == [], fmt
    for finding in to_findings(result):
        assert not any(is_destructive(c) for c in (finding.remediation.commands if finding.remediation else ()))
    # the verdict is the first thing in every format
    console = outputs["console"]
    assert console.startswith("VERDICT: FAIL") or console.startswith("VERDICT: CANNOT PROVE")
    doc = json.loads(outputs["json"])
    assert next(iter(doc)) == "verdict" and doc["verdict"] == result.verdict
    suite = ET.fromstring(outputs["junit"]).find("testsuite")
    assert suite is not None
    first = suite.findall("testcase")[0]
    assert first.get("name") == "verdict"
    verdict_el = first.find("failure") if result.verdict == "fail" else first.find("error")
    assert verdict_el is not None and (verdict_el.get("message") or "").startswith("VERDICT: ")


@pytest.mark.parametrize("name", ["B1-no-cilium", "cilium-blocking-gap"])
def test_withheld_plan_says_what_it_would_contain(tmp_path: Path, name: str) -> None:
    result = _result(*NOT_PASSING[name](tmp_path))
    assert result.cleanup is not None
    text = render("console", result, width=100)
    assert "Cleanup plan withheld" in text and "--show-plan" in text
    assert re.search(r"It would delete \d kube-proxy DaemonSets?; delete \d kube-proxy ConfigMaps?; remove "
                     r"kube-proxy's state on \d nodes? \(\d+ items?: ", " ".join(text.split()))
    assert NOT_SAFE_HEADER not in text
    doc = json.loads(render("json", result))
    assert doc["cleanup"]["safe_to_run"] is False and doc["cleanup"]["warning"] == NOT_SAFE_HEADER
    assert all(c.startswith("# ") for c in doc["cleanup"]["cluster_commands"])


def test_show_plan_on_a_failing_gate_prints_it_commented_under_the_warning(tmp_path: Path) -> None:
    bundle, _ = _blocking(tmp_path)
    proc = subprocess.run([KPDOCTOR or "kpdoctor", "gate", "kube-proxy-removal", "--bundle", str(bundle),
                           "--show-plan"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": "100"})
    assert proc.returncode == 1, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("VERDICT: FAIL: do NOT remove kube-proxy")
    header = lines.index(NOT_SAFE_HEADER)
    plan = lines[header + 1:]
    commented = [ln.strip() for ln in plan if ln.strip().startswith("# ")]
    assert "# kubectl -n kube-system delete daemonset kube-proxy" in commented
    assert any("nft delete table" in c or "iptables" in c for c in commented)
    assert _runnable_destructive(proc.stdout) == []
    assert lines[-1].startswith("VERDICT: FAIL")


def test_passing_gate_prints_the_plan_after_the_pass_verdict(tmp_path: Path) -> None:
    result = _result(build_bundle(tmp_path, version="1.14"), "pre-removal")
    assert result.verdict == "pass"
    text = render("console", result, width=100)
    lines = text.splitlines()
    assert lines[0].startswith("VERDICT: PASS")
    plan_at = next(i for i, ln in enumerate(lines) if ln.startswith("Cleanup plan"))
    runnable = [i for i, ln in enumerate(lines) if is_destructive(ln.strip().removeprefix("$ "))]
    assert runnable and min(runnable) > plan_at > 0
    assert NOT_SAFE_HEADER not in text
    doc = json.loads(render("json", result))
    assert doc["cleanup"]["safe_to_run"] is True
    assert "kubectl -n kube-system delete daemonset kube-proxy" in doc["cleanup"]["cluster_commands"]


def test_post_removal_leftovers_are_removable_once_the_replacement_serves_everything(tmp_path: Path) -> None:
    """Post-removal, kube-proxy's leftovers are the gate's subject: their removal is printed (runnable) only
    when every other condition (replacement configured, agents ready, coverage, Services served) passed."""
    result = _result(build_bundle(tmp_path), "post-removal")
    assert result.verdict == "fail"
    assert {c.id for c in result.conditions if c.status != "pass"} <= {"kube-proxy-removed", "no-leftover-state"}
    text = render("console", result, width=100)
    assert text.startswith("VERDICT: FAIL: kube-proxy's removal is not complete")
    assert "$ kubectl -n kube-system delete daemonset kube-proxy" in text
