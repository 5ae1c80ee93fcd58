"""KP-STALE-ENDPOINTS (checks/stale_endpoints.py) on the real bundles: B1 passes; B2 (edge-1's rules still DNAT
to a deleted pod of payments/ledger) fails on edge-1 only."""

from __future__ import annotations

from kpdoctor.checks.stale_endpoints import CHECK
from kpdoctor.findings import Severity
from tests.support.checks import load_bundle, run_check, verdicts


def test_passes_on_b1_healthy() -> None:
    assert verdicts(CHECK, *load_bundle("B1-healthy")) == []


def test_fails_on_b2_stale_dnat_target() -> None:
    cluster, nodes = load_bundle("B2-stale-endpoint")
    assert verdicts(CHECK, cluster, nodes) == [("edge-1", "Service payments/ledger:http/TCP", Severity.ERROR)]
    assert "10.244.53.12:8080" in run_check(CHECK, cluster, nodes, node="edge-1")[0].message
