"""KP-BACKEND-SPLIT (checks/backend_split.py) on the real bundles: B1 passes; B3 (rules in both iptables-legacy
and iptables-nft on edge-1) fails."""

from __future__ import annotations

from kpdoctor.checks.backend_split import CHECK
from kpdoctor.findings import Severity
from tests.support.checks import load_bundle, run_check, verdicts


def test_passes_on_b1_healthy() -> None:
    assert verdicts(CHECK, *load_bundle("B1-healthy")) == []


def test_fails_on_b3_where_edge1_has_both_backends() -> None:
    cluster, nodes = load_bundle("B3-backend-split")
    assert verdicts(CHECK, cluster, nodes) == [("edge-1", "Node edge-1", Severity.ERROR)]
    (finding,) = run_check(CHECK, cluster, nodes, node="edge-1")
    both = [e for e in finding.evidence if e.startswith(("iptables-legacy-save.txt:", "iptables-nft-save.txt:"))]
    assert len(both) == 2 and all("KUBE-SERVICES" in e for e in both)
