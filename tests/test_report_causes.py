"""Issue 10 item 3: one root cause, one headline, on the real bundles B2 and B4 (kpdoctor/report/causes.py)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
from report_helpers import bundle_report

from kpdoctor.report import render

SCHEMA = json.loads((Path(__file__).parents[1] / "docs" / "report-schema.json").read_text())


def _groups(report: dict) -> dict[str, dict]:
    return {g["id"]: g for c in report["checks"] for g in c["groups"]}


def test_b2_kube_proxy_down_is_one_cause_with_its_consequences() -> None:
    report = bundle_report("B2-stale-endpoint")
    [cause] = report["causes"]
    assert cause["id"] == "KP-PROXY-HEALTH/Pod kube-system/kube-proxy-76gg5" and cause["nodes"] == ["edge-1"]
    assert cause["headline"].startswith("edge-1: kube-proxy on node edge-1 is not running → 1 Service with stale")
    assert {c["group"] for c in cause["consequences"]} == {
        "KP-PROXY-HEALTH/DaemonSet kube-system/kube-proxy", "KP-PROXY-NODE-HEALTH/Node edge-1",
        "KP-STALE-ENDPOINTS/Service payments/ledger:http/TCP",
        "KP-NODEPORT-FIREWALL/Service payments/pay-gateway:http/TCP"}
    groups = _groups(report)
    # JSON keeps every finding, each consequence pointing at its cause
    assert groups["KP-STALE-ENDPOINTS/Service payments/ledger:http/TCP"]["cause"] == cause["id"]
    assert groups["KP-PROXY-HEALTH/Pod kube-system/kube-proxy-76gg5"]["cause"] == ""
    # no "nothing to fix" for pay-gateway: eTP=Local, its only ready endpoint is on edge-1 where kube-proxy (and
    # the health check node port it answers) is down, and edge-2 drops by design: no node serves it
    etp = groups["KP-NODEPORT-FIREWALL/Service payments/pay-gateway:http/TCP"]
    assert etp["cause"] == cause["id"] and etp["severity"] == "info"
    [dead] = [c for c in cause["consequences"] if c["check"] == "KP-NODEPORT-FIREWALL"]
    assert dead["severity"] == "error" and "no node can serve it" in dead["message"]
    assert "1 Service no node can serve (payments/pay-gateway)" in cause["headline"]
    assert sum(len(c["groups"]) for c in report["checks"]) == 5
    # commands deduplicated: `describe pod` was in three findings, it is in the cause once
    assert cause["commands"].count("kubectl -n kube-system describe pod kube-proxy-76gg5") == 1
    jsonschema.validate(json.loads(render("json", report)), SCHEMA)


def test_b4_ipvs_mode_on_a_kernel_without_ipvs_is_one_cause() -> None:
    report = bundle_report("B4-ipvs-unavailable")
    [cause] = report["causes"]
    assert cause["check"] == "KP-PROXIER-MODE" and cause["severity"] == "critical"
    assert "configured for IPVS but the node's kernel has no usable IPVS" in cause["headline"]
    # kernel modules, DaemonSet, pod, node health, no Service rules, and media-gateway (eTP=Local, its only
    # endpoint on edge-1): no node can serve it
    assert len(cause["consequences"]) == 6
    assert "1 Service no node can serve (media/media-gateway)" in cause["headline"]
    jsonschema.validate(json.loads(render("json", report)), SCHEMA)


def test_healthy_and_single_fault_bundles_have_no_grouping_to_do() -> None:
    assert bundle_report("B1-healthy")["causes"] == []
    assert bundle_report("B3-backend-split")["causes"] == []  # one finding: its own headline


def test_console_prints_each_command_once_and_the_cause_first() -> None:
    report = bundle_report("B2-stale-endpoint")
    text = render("console", report, width=250)
    lines = text.splitlines()
    commands = [ln.strip() for ln in lines if ln.strip().startswith("$ ")]
    assert commands and len(commands) == len(set(commands))
    assert lines.index(next(ln for ln in lines if ln.startswith("Root causes"))) < lines.index(
        next(ln for ln in lines if ln.startswith("KP-PROXY-HEALTH")))
    assert text.count("listed under its root cause above") == 4
    assert "fix Once the root cause is fixed: Nothing to fix" in text
    md = render("markdown", report)
    assert md.count("kubectl -n kube-system describe pod kube-proxy-76gg5\n") == 1
