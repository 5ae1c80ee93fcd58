"""KP-SYNC-LAG (checks/sync_lag.py): B1 passes. No real bundle is slow, so the failing case is B1's real nodes
and API objects plus 5,000 generated Services: iptables mode (edge-1) at that size is flagged, nftables mode
(edge-2) is not."""

from __future__ import annotations

from kpdoctor.checks.sync_lag import CHECK
from kpdoctor.findings import Severity
from tests.support.checks import load_bundle, verdicts, with_many_services


def test_passes_on_b1_healthy() -> None:
    assert verdicts(CHECK, *load_bundle("B1-healthy")) == []


def test_fails_on_iptables_mode_at_5000_services() -> None:
    cluster, nodes = load_bundle("B1-healthy")
    assert verdicts(CHECK, with_many_services(cluster, 5000), nodes) == [("edge-1", "Node edge-1", Severity.ERROR)]
