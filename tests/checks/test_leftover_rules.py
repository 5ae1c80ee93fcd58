"""KP-LEFTOVER-RULES (checks/leftover_rules.py): B1 passes. No real bundle has leftovers, so the failing case
combines two real dumps: B1's nftables-mode node edge-2 given B1 edge-1's real iptables-mode rules (the state
a hand-made iptables -> nftables switch leaves). The netns version is in tests/lab/test_check_lab.py (root)."""

from __future__ import annotations

from kpdoctor.checks.leftover_rules import CHECK
from kpdoctor.findings import Severity
from tests.support.checks import load_bundle, replace_fact, run_check, verdicts
from tests.support.kube_router import k3s_kube_router_save


def test_passes_on_b1_healthy() -> None:
    assert verdicts(CHECK, *load_bundle("B1-healthy")) == []


def test_warns_on_iptables_rules_left_on_an_nftables_node() -> None:
    cluster, nodes = load_bundle("B1-healthy")
    edge2 = replace_fact(nodes["edge-2"], "iptables-save.txt", nodes["edge-1"].text("iptables-save.txt"))
    switched = {**nodes, "edge-2": edge2}
    assert verdicts(CHECK, cluster, switched) == [("edge-2", "Node edge-2", Severity.WARNING)]
    assert "leftover kube-proxy iptables state" in run_check(CHECK, cluster, switched, node="edge-2")[0].message


def test_kube_routers_chains_are_no_kube_proxy_leftover() -> None:
    """B1's nftables-mode edge-2 given a real k3s filter table (issue #5611) with kube-router's KUBE-ROUTER-*,
    KUBE-NWPLCY-* and KUBE-POD-FW-* chains: without kube-proxy's chains in it, nothing is left over; with them,
    only kube-proxy's 5 are counted."""
    cluster, nodes = load_bundle("B1-healthy")
    router_only = replace_fact(nodes["edge-2"], "iptables-save.txt", k3s_kube_router_save(without_kube_proxy=True))
    assert "KUBE-ROUTER-INPUT" in (router_only.text("iptables-save.txt") or "")
    assert verdicts(CHECK, cluster, {**nodes, "edge-2": router_only}) == []
    both = replace_fact(nodes["edge-2"], "iptables-save.txt", k3s_kube_router_save())
    (finding,) = run_check(CHECK, cluster, {**nodes, "edge-2": both}, node="edge-2")
    assert finding.severity == Severity.WARNING
    # kube-proxy's 5 chains (it said 12 when every KUBE-* chain was kube-proxy's)
    assert finding.evidence[1] == ("iptables-save.txt: 5 kube-proxy chains (e.g. KUBE-NODEPORTS, KUBE-PROXY-CANARY, "
                                   "KUBE-SERVICES)")
    # `iptables-save | grep -v KUBE | iptables-restore` would delete kube-router's chains too: not offered
    assert finding.remediation is not None
    assert not any("grep -v KUBE |" in c and not c.startswith("#") for c in finding.remediation.commands)
    assert finding.remediation.commands[-1].startswith("# not `iptables-save | grep -v KUBE | iptables-restore`: "
                                                       "it would also delete kube-router's 7 chains")
