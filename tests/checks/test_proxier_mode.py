"""KP-PROXIER-MODE (checks/proxier_mode.py) on the real bundles: B1 passes; B4 (IPVS configured, unusable:
kube-proxy exits) fails critical on edge-1."""

from __future__ import annotations

from kpdoctor.checks.proxier_mode import CHECK
from kpdoctor.findings import Severity
from tests.support.checks import load_bundle, verdicts


def test_passes_on_b1_healthy() -> None:
    assert verdicts(CHECK, *load_bundle("B1-healthy")) == []


def test_fails_on_b4_ipvs_configured_but_unavailable() -> None:
    assert verdicts(CHECK, *load_bundle("B4-ipvs-unavailable")) == [("edge-1", "Node edge-1", Severity.CRITICAL)]
