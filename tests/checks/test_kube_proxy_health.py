"""KP-PROXY-HEALTH (checks/kube_proxy_health.py) on the real bundles: B1 passes; B2 (kube-proxy on edge-1
SIGKILLed, crash-looping) fails on its DaemonSet and its pod."""

from __future__ import annotations

from kpdoctor.checks.kube_proxy_health import CHECK
from kpdoctor.findings import Severity
from tests.support.checks import load_bundle, verdicts


def test_passes_on_b1_healthy() -> None:
    assert verdicts(CHECK, *load_bundle("B1-healthy")) == []


def test_fails_on_b2_crash_looping_kube_proxy() -> None:
    assert verdicts(CHECK, *load_bundle("B2-stale-endpoint")) == [
        ("cluster", "DaemonSet kube-system/kube-proxy", Severity.ERROR),
        ("cluster", "Pod kube-system/kube-proxy-76gg5", Severity.ERROR),
    ]
