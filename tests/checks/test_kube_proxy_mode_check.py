"""checks/_common.KubeProxyModeCheck: the one place that decides what a mode check says without a kube-proxy mode.

Real data: bundle B1 (recorded from real kube-proxy v1.36.2 nodes, see its README). Its node-only variant is
B1's node facts with an empty node-only cluster, as `collect --offline` sees a node; "kube-proxy deleted" is
`tests.support.checks.without_kube_proxy` (B1 with kube-proxy's objects removed, one hand-made CoreDNS pod).
The checks are run directly (`run_check`), not through the engine, which skips the checks that do not
declare `node_facts_suffice` in a node-only scan before they run.
"""

from __future__ import annotations

from kpdoctor.checks._common import KubeProxyModeCheck
from kpdoctor.findings import Severity
from kpdoctor.node_only import node_only_cluster
from tests.support.checks import all_checks, load_bundle, not_answering, run_check, without_kube_proxy

MODE_CHECKS = ("KP-KERNEL-MODULES", "KP-PROXIER-MODE", "KP-STALE-ENDPOINTS", "KP-SYNC-LAG")


def _mode_checks() -> list[KubeProxyModeCheck]:
    return [c for c in all_checks() if isinstance(c, KubeProxyModeCheck)]


def test_the_mode_checks_share_the_base() -> None:
    assert sorted(c.id for c in _mode_checks()) == list(MODE_CHECKS)


def test_node_only_and_kube_proxy_silent_is_not_evaluated_never_a_pass() -> None:
    _cluster, nodes = load_bundle("B1-healthy")
    silent = not_answering(nodes)
    for check in _mode_checks():
        findings = run_check(check, node_only_cluster("bundle B1 nodes"), silent, node="edge-1")
        assert len(findings) == 1, (check.id, findings)
        (finding,) = findings
        assert finding.not_evaluated and finding.severity == Severity.INFO, (check.id, finding)
        assert finding.subject == "Node edge-1"
        assert "kube-proxy did not answer on the node" in finding.message
        assert any("kube-proxy/configz.json" in e for e in finding.evidence)


def test_no_kube_proxy_meant_to_run_is_nothing_to_judge() -> None:
    cluster, nodes = load_bundle("B1-healthy")
    for check in _mode_checks():
        assert run_check(check, without_kube_proxy(cluster), not_answering(nodes), node="edge-1") == [], check.id


def test_with_a_mode_the_check_judges_it() -> None:
    """B1 is healthy: with its kube-proxy mode known, no mode check reports an error (the judging itself is in
    each check's own test module)."""
    cluster, nodes = load_bundle("B1-healthy")
    for check in _mode_checks():
        findings = run_check(check, cluster, nodes, node="edge-1")
        assert not [f for f in findings if f.not_evaluated or f.severity >= Severity.ERROR], (check.id, findings)
