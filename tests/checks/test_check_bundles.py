"""Every check on the four real bundles (captured from real kube-apiserver + kube-proxy v1.36.2).

The bundles' READMEs carry the expert diagnosis; these tests assert that the
checks say the same thing - with the right subject and the evidence the README
cites - and that the healthy bundle gets nothing at warning or above.
"""

from __future__ import annotations

import pytest

import kpdoctor.checks.backend_split as backend_split
import kpdoctor.checks.kernel_modules as kernel_modules
import kpdoctor.checks.kube_proxy_health as health
import kpdoctor.checks.kube_proxy_node_health as node_health
import kpdoctor.checks.leftover_rules as leftover
import kpdoctor.checks.nodeport_firewall as firewall
import kpdoctor.checks.proxier_mode as proxier_mode
import kpdoctor.checks.stale_endpoints as stale
from kpdoctor.findings import Severity
from tests.support.checks import at_least, describe, load_bundle, run_check, scan

SCENARIOS = ("B1-healthy", "B2-stale-endpoint", "B3-backend-split", "B4-ipvs-unavailable")


@pytest.fixture(scope="module", params=SCENARIOS)
def bundle(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    return request.param, *load_bundle(request.param)


def test_b1_healthy_has_nothing_at_warning_or_above() -> None:
    cluster, nodes = load_bundle("B1-healthy")
    findings = scan(cluster, nodes)
    assert at_least(findings, Severity.WARNING) == [], describe(findings)
    # the eTP=Local drop on edge-2 is explained, at info level only
    infos = [f for f in findings if f.check_id == firewall.CHECK.id]
    assert [(f.scope, f.subject) for f in infos] == [("edge-2", "Service storefront/gateway:http/TCP")]
    assert infos[0].severity == Severity.INFO


def test_b2_stale_endpoint_on_edge1_matches_the_expert_diagnosis() -> None:
    cluster, nodes = load_bundle("B2-stale-endpoint")
    found = run_check(stale.CHECK, cluster, nodes)
    assert [(f.scope, f.subject, f.severity) for f in found] == [
        ("edge-1", "Service payments/ledger:http/TCP", Severity.ERROR)
    ], describe(found)
    f = found[0]
    assert "10.244.53.12:8080" in f.message and "10.244.53.19:8080" in f.message
    assert any("--to-destination 10.244.53.12:8080" in e and "KUBE-SEP-PMO4BS6QT3NO7CKP" in e for e in f.evidence)
    assert any("EndpointSlice payments/ledger-kktbv" in e and "10.244.53.19" in e for e in f.evidence)
    assert f.remediation is not None
    cmds = f.remediation.commands
    assert "kubectl -n kube-system logs kube-proxy-76gg5 --previous" in cmds
    assert any(c.startswith("conntrack -D -p tcp --orig-dst 10.96.150.30 --orig-port-dst 80 --dst-nat 10.244.53.12")
               for c in cmds)
    assert "kubectl cordon edge-1" in cmds
    # edge-2 (nftables) applied the change: silent
    assert run_check(stale.CHECK, cluster, nodes, node="edge-2") == []


def test_b2_kube_proxy_crashloop_reported_cluster_and_node_side() -> None:
    cluster, nodes = load_bundle("B2-stale-endpoint")
    found = run_check(health.CHECK, cluster, nodes)
    subjects = {f.subject: f for f in found}
    assert set(subjects) == {"DaemonSet kube-system/kube-proxy", "Pod kube-system/kube-proxy-76gg5"}
    pod = subjects["Pod kube-system/kube-proxy-76gg5"]
    assert "CrashLoopBackOff" in pod.message and "exit 137" in pod.message and "SIGKILL" in pod.message
    assert "0 of 1" in subjects["DaemonSet kube-system/kube-proxy"].message
    node = run_check(node_health.CHECK, cluster, nodes)
    assert [(f.scope, f.severity) for f in node] == [("edge-1", Severity.ERROR)]
    assert "kube-proxy/healthz.json: not available" in node[0].evidence[0]


def test_b3_backend_split_on_edge1_only() -> None:
    cluster, nodes = load_bundle("B3-backend-split")
    found = run_check(backend_split.CHECK, cluster, nodes)
    assert [(f.scope, f.subject, f.severity) for f in found] == [("edge-1", "Node edge-1", Severity.ERROR)]
    f = found[0]
    assert "nft copy is the maintained one" in f.message and "legacy copy" in f.message
    assert any(e.startswith("iptables-legacy-save.txt: kube-proxy chains") and "KUBE-SERVICES" in e
               for e in f.evidence)
    assert "ip_tables_names.txt: legacy tables loaded: filter, mangle, nat" in f.evidence
    assert f.remediation is not None
    assert any("iptables-legacy-save > " in c for c in f.remediation.commands)
    assert any("iptables-legacy -t $t -F" in c for c in f.remediation.commands)
    # the rest of B3 is healthy: no other check at warning or above
    others = [x for x in at_least(scan(cluster, nodes), Severity.WARNING) if x.check_id != backend_split.CHECK.id]
    assert others == [], describe(others)


def test_b4_ipvs_unusable_diagnosed_with_the_mode_fix() -> None:
    cluster, nodes = load_bundle("B4-ipvs-unavailable")
    found = run_check(proxier_mode.CHECK, cluster, nodes)
    assert [(f.scope, f.severity) for f in found] == [("edge-1", Severity.CRITICAL)], describe(found)
    f = found[0]
    assert "does not fall back" in f.message
    assert any("can't use the IPVS proxier: ipvs not supported" in e for e in f.evidence)
    assert any("ConfigMap kube-proxy[config.conf]" in e and 'mode: "ipvs"' in e for e in f.evidence)
    assert f.remediation is not None
    assert "kubectl -n kube-system edit configmap kube-proxy   # set mode: nftables" in f.remediation.commands
    assert "kubectl -n kube-system rollout restart daemonset kube-proxy" in f.remediation.commands
    kernel = run_check(kernel_modules.CHECK, cluster, nodes)
    assert [(k.scope, k.severity) for k in kernel] == [("edge-1", Severity.ERROR)]
    assert "IPVS (ip_vs)" in kernel[0].message
    impact = run_check(stale.CHECK, cluster, nodes)
    assert [(i.scope, i.subject, i.severity) for i in impact] == [("edge-1", "Node edge-1", Severity.CRITICAL)]
    assert "no ipvs Service rules at all" in impact[0].message
    assert run_check(leftover.CHECK, cluster, nodes) == []


def test_every_check_runs_on_every_bundle_without_error(bundle) -> None:  # type: ignore[no-untyped-def]
    name, cluster, nodes = bundle
    findings = scan(cluster, nodes)
    for f in findings:
        assert f.subject and f.message and f.check_id.startswith("KP-")
        if f.severity >= Severity.WARNING:
            assert f.evidence, f
            assert f.remediation is not None and (f.remediation.text or f.remediation.commands), f
            for cmd in f.remediation.commands:
                assert "<" not in cmd.split("#")[0] or "<version>" in cmd or "<API_SERVER_IP>" in cmd, cmd


def test_every_builtin_check_validates_and_has_a_docs_page() -> None:
    from pathlib import Path

    from kpdoctor.registry import validate_check
    from tests.support.checks import all_checks

    docs = Path(__file__).resolve().parents[2] / "docs" / "checks"
    checks = all_checks()
    assert len(checks) >= 11
    for check in checks:
        assert validate_check(check, docs_dir=docs) == [], check.id
        page = (docs / f"{check.id}.md").read_text()
        for heading in ("## What it means", "## How it is detected", "## How to fix", "## References"):
            assert heading in page, (check.id, heading)
