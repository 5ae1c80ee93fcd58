"""KP-SYSCTL-CONNTRACK (checks/sysctl_conntrack.py): B1 passes; the demo bundle (real captures with a planted
sysctl fault on edge-2) fails critical on edge-2."""

from __future__ import annotations

from kpdoctor.checks.sysctl_conntrack import CHECK
from kpdoctor.findings import Severity
from tests.support.checks import load_bundle, load_demo, verdicts


def test_passes_on_b1_healthy() -> None:
    assert verdicts(CHECK, *load_bundle("B1-healthy")) == []


def test_fails_critical_on_the_demo() -> None:
    assert verdicts(CHECK, *load_demo()) == [("edge-2", "Node edge-2", Severity.CRITICAL)]
