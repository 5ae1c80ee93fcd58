"""KP-LEFTOVER-RULES (checks/leftover_rules.py): B1 passes. No real bundle has leftovers, so the failing case
combines two real dumps: B1's nftables-mode node edge-2 given B1 edge-1's real iptables-mode rules (the state
a hand-made iptables -> nftables switch leaves). The netns version is in tests/lab/test_check_lab.py (root)."""

from __future__ import annotations

from kpdoctor.checks.leftover_rules import CHECK
from kpdoctor.findings import Severity
from tests.support.checks import load_bundle, replace_fact, run_check, verdicts


def test_passes_on_b1_healthy() -> None:
    assert verdicts(CHECK, *load_bundle("B1-healthy")) == []


def test_warns_on_iptables_rules_left_on_an_nftables_node() -> None:
    cluster, nodes = load_bundle("B1-healthy")
    edge2 = replace_fact(nodes["edge-2"], "iptables-save.txt", nodes["edge-1"].text("iptables-save.txt"))
    switched = {**nodes, "edge-2": edge2}
    assert verdicts(CHECK, cluster, switched) == [("edge-2", "Node edge-2", Severity.WARNING)]
    assert "leftover kube-proxy iptables state" in run_check(CHECK, cluster, switched, node="edge-2")[0].message
