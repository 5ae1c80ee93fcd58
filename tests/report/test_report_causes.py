"""Issue 10 item 3: one root cause, one headline, on the real bundles B2 and B4 (kpdoctor/report/causes.py)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path

import jsonschema

from kpdoctor.checks_api import Check, CheckContext
from kpdoctor.engine import run_checks
from kpdoctor.findings import Finding, Severity
from kpdoctor.report import render
from kpdoctor.report.model import SourceInfo, build_report
from kpdoctor.scanner import load_bundle
from tests.support.checks import hand_made_check
from tests.support.report import BUNDLES, bundle_report

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "docs" / "report-schema.json").read_text())


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


def _on_edge_1(message: str) -> Callable[[Check, CheckContext], Iterable[Finding]]:
    def run(check: Check, ctx: CheckContext) -> Iterable[Finding]:
        if ctx.node is not None and ctx.node.name == "edge-1":
            yield check.finding(ctx, "Node edge-1", message)
    return run


# Hand-made findings (said so): a kernel-modules fault and a host firewall on edge-1, beside the real
# KP-PROXY-HEALTH findings of B2, to pin which is cause and which is not a consequence at all.
_Modules = hand_made_check("KP-KERNEL-MODULES", _on_edge_1("node edge-1 lacks what iptables mode needs"),
                           scope="node", severity=Severity.ERROR, title="t")
_Firewall = hand_made_check("KP-NODEPORT-FIREWALL", _on_edge_1("a host firewall drops the NodePort range on edge-1"),
                            scope="node", severity=Severity.ERROR, title="t")


def test_the_most_fundamental_cause_wins_and_unrelated_faults_stay_apart() -> None:
    import kpdoctor.checks.kube_proxy_health as health

    cluster, nodes = load_bundle(BUNDLES / "B2-stale-endpoint" / "bundle")
    result = run_checks([health.CHECK, _Modules(), _Firewall()], cluster, nodes)
    report = build_report(result, source=SourceInfo("bundle", "B2", "bundle"), fail_on=Severity.ERROR, exit_code=1)
    [cause] = report["causes"]
    assert cause["id"] == "KP-KERNEL-MODULES/Node edge-1"
    assert {c["group"] for c in cause["consequences"]} == {
        "KP-PROXY-HEALTH/Pod kube-system/kube-proxy-76gg5", "KP-PROXY-HEALTH/DaemonSet kube-system/kube-proxy"}
    groups = _groups(report)
    assert groups["KP-NODEPORT-FIREWALL/Node edge-1"]["cause"] == ""  # a firewall is not caused by kube-proxy


def test_b2_one_etp_local_note_listing_many_services_links_each_unservable_one() -> None:
    """B2 plus generated copies of pay-gateway (eTP=Local, its one endpoint on edge-1 where kube-proxy is
    down): edge-2's one KP-NODEPORT-FIREWALL note lists them all, and each is a Service no node can serve."""
    import kpdoctor.checks.kube_proxy_health as health
    import kpdoctor.checks.nodeport_firewall as firewall
    from tests.support.checks import with_service_copies

    cluster, nodes = load_bundle(BUNDLES / "B2-stale-endpoint" / "bundle")
    cluster = with_service_copies(cluster, "payments/pay-gateway", 3)
    result = run_checks([health.CHECK, firewall.CHECK], cluster, nodes)
    report = build_report(result, source=SourceInfo("bundle", "B2", "bundle"), fail_on=Severity.ERROR, exit_code=1)
    [cause] = report["causes"]
    note = _groups(report)["KP-NODEPORT-FIREWALL/Node edge-2"]
    assert note["count"] == 1 and note["message"].startswith("4 NodePorts of Services with externalTrafficPolicy")
    assert note["cause"] == cause["id"] == "KP-PROXY-HEALTH/Pod kube-system/kube-proxy-76gg5"
    dead = sorted(c["subject"] for c in cause["consequences"] if c["check"] == "KP-NODEPORT-FIREWALL")
    assert dead == ["Service payments/pay-gateway"] + [f"Service payments/pay-gateway-copy-{i}" for i in range(3)]
    assert ("4 Services no node can serve (payments/pay-gateway, payments/pay-gateway-copy-0, "
            "payments/pay-gateway-copy-1, ...)") in cause["headline"]
    jsonschema.validate(json.loads(render("json", report)), SCHEMA)
