"""KP-CILIUM-KPR (checks/cilium_kpr.py): B1 (kube-proxy serves Services) passes; the real-world k3s shape with
kube-proxy disabled and no Cilium kube-proxy replacement (tests/fixtures/realworld/shapes, see its SOURCE.md)
fails critical: nothing serves Services."""

from __future__ import annotations

from kpdoctor.checks.cilium_kpr import CHECK
from kpdoctor.findings import Severity
from tests.support.checks import load_bundle, load_shape, verdicts


def test_passes_on_b1_healthy() -> None:
    assert verdicts(CHECK, *load_bundle("B1-healthy")) == []


def test_fails_critical_when_kube_proxy_is_disabled_without_kpr() -> None:
    assert verdicts(CHECK, load_shape("k3s-kube-proxy-disabled-no-kpr"), {}) == [
        ("cluster", "Cluster", Severity.CRITICAL)]


def test_warns_on_cilium_kpr_beside_kube_proxy() -> None:
    found = verdicts(CHECK, load_shape("k3s-cilium-kpr-agent-kube-proxy"), {}, at=Severity.WARNING)
    assert found and {severity for _, _, severity in found} == {Severity.WARNING}
