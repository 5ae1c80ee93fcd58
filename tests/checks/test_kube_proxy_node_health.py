"""KP-PROXY-NODE-HEALTH (checks/kube_proxy_node_health.py) on the real bundles: B1 passes; B2 (kube-proxy on
edge-1 down: no /healthz) fails on edge-1 only."""

from __future__ import annotations

from kpdoctor.checks.kube_proxy_node_health import CHECK
from kpdoctor.findings import Severity
from tests.support.checks import load_bundle, run_check, verdicts


def test_passes_on_b1_healthy() -> None:
    assert verdicts(CHECK, *load_bundle("B1-healthy")) == []


def test_fails_on_b2_where_edge1_kube_proxy_is_down() -> None:
    cluster, nodes = load_bundle("B2-stale-endpoint")
    assert verdicts(CHECK, cluster, nodes) == [("edge-1", "Node edge-1", Severity.ERROR)]
    assert "healthz" in run_check(CHECK, cluster, nodes, node="edge-1")[0].evidence[0]
