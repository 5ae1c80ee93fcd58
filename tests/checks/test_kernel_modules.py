"""KP-KERNEL-MODULES (checks/kernel_modules.py) on the real bundles: B1 passes; B4 (IPVS mode configured, the
kernel has no ip_vs) fails on edge-1."""

from __future__ import annotations

import pytest

from kpdoctor.checks.kernel_modules import CHECK
from kpdoctor.findings import Severity
from tests.support.checks import load_bundle, run_check, verdicts


@pytest.mark.parametrize("scenario", ["B1-healthy", "B2-stale-endpoint", "B3-backend-split"])
def test_passes_where_the_kernel_has_what_the_mode_needs(scenario: str) -> None:
    assert verdicts(CHECK, *load_bundle(scenario)) == []


def test_fails_on_b4_where_ipvs_is_unavailable() -> None:
    cluster, nodes = load_bundle("B4-ipvs-unavailable")
    assert verdicts(CHECK, cluster, nodes) == [("edge-1", "Node edge-1", Severity.ERROR)]
    (finding,) = run_check(CHECK, cluster, nodes, node="edge-1")
    assert "IPVS (ip_vs)" in finding.message and "not built in" in finding.message
    assert finding.remediation is not None
    assert finding.remediation.commands[0] == "modprobe -a ip_vs ip_vs_rr   # on edge-1"
