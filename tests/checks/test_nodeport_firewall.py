"""KP-NODEPORT-FIREWALL (checks/nodeport_firewall.py): B1 passes (edge-2's eTP=Local drop is explained at info
level only); the demo bundle (real kube-proxy captures with a planted host firewall) fails on edge-2."""

from __future__ import annotations

from kpdoctor.checks.nodeport_firewall import CHECK
from kpdoctor.findings import Severity
from tests.support.checks import load_bundle, load_demo, verdicts


def test_passes_on_b1_healthy() -> None:
    cluster, nodes = load_bundle("B1-healthy")
    assert verdicts(CHECK, cluster, nodes, at=Severity.WARNING) == []
    assert verdicts(CHECK, cluster, nodes) == [("edge-2", "Service storefront/gateway:http/TCP", Severity.INFO)]


def test_fails_on_the_demo_host_firewall() -> None:
    assert verdicts(CHECK, *load_demo(), at=Severity.WARNING) == [("edge-2", "Node edge-2", Severity.ERROR)]
