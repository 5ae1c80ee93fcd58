"""kpdoctor.comparison: the node's dataplane against the reference proxier's expectation.

B2 (real kube-proxy v1.36 on a kind-style cluster): edge-1's kube-proxy was killed before an endpoint
of payments/ledger changed, so its dump still DNATs to 10.244.53.12 and lacks 10.244.53.19; edge-2 is
current. B3: KUBE-* rules in both iptables backends of edge-1."""

from __future__ import annotations

import pytest

from kpdoctor.checks_api import CheckContext
from kpdoctor.comparison import ViewUnavailable, actual_view, compare, iptables_rules_key, known_mode
from kpdoctor.node.dumps import NodeDumps, SharedParsedNode
from tests.support.checks import load_bundle, with_facts


def _ctx(bundle: str, node: str) -> CheckContext:
    cluster, nodes = load_bundle(bundle)
    return CheckContext(cluster=cluster, node=nodes[node], nodes=nodes)


def test_stale_node_differs_current_node_does_not() -> None:
    stale = compare(_ctx("B2-stale-endpoint", "edge-1"), "iptables")
    assert stale is not None and stale.rules_key == "iptables-save.txt"
    text = repr(stale.diffs)
    assert "10.244.53.12" in text and "10.244.53.19" in text
    current = compare(_ctx("B2-stale-endpoint", "edge-2"), "nftables")
    assert current is not None and current.rules_key == "nft-ruleset.json"
    assert not [d for d in current.diffs if "ledger" in repr(d)]


def test_compare_is_computed_once_per_node() -> None:
    ctx = _ctx("B2-stale-endpoint", "edge-1")
    assert compare(ctx, "iptables") is compare(ctx, "iptables")


def test_node_without_the_dump_has_no_view() -> None:
    ctx = _ctx("B2-stale-endpoint", "edge-1")
    assert ctx.node is not None
    bare = with_facts(ctx.node, **{"ipvsadm-save.txt": None})
    assert actual_view(bare, "ipvs") is None


def test_unreadable_dump_and_unknown_mode_say_why() -> None:
    ctx = _ctx("B2-stale-endpoint", "edge-1")
    assert ctx.node is not None
    broken = with_facts(ctx.node, **{"iptables-save.txt": "*nat\n-A KUBE-SERVICES -j KUBE-NODEPORTS\n"})
    with pytest.raises(ViewUnavailable):
        actual_view(broken, "iptables", rules_key="iptables-save.txt")
    with pytest.raises(ViewUnavailable, match="unknown proxy mode"):
        actual_view(ctx.node, "userspace")


def test_rules_key_prefers_the_backend_holding_kube_proxys_rules() -> None:
    _, nodes = load_bundle("B3-backend-split")
    edge1 = nodes["edge-1"]
    assert "KUBE-SERVICES" in (edge1.text("iptables-legacy-save.txt") or "")
    assert iptables_rules_key(SharedParsedNode(edge1, dumps=NodeDumps(edge1))) == "iptables-save.txt"  # the default
    legacy_only = with_facts(edge1, **{"iptables-save.txt": "", "iptables-nft-save.txt": ""})
    assert iptables_rules_key(SharedParsedNode(legacy_only, dumps=NodeDumps(legacy_only))) == "iptables-legacy-save.txt"
    edge2 = nodes["edge-2"]  # nftables node: empty iptables dumps, the default one is the answer
    assert iptables_rules_key(SharedParsedNode(edge2, dumps=NodeDumps(edge2))) == "iptables-save.txt"
    empty = with_facts(nodes["edge-1"], **{k: None for k in (
        "iptables-save.txt", "iptables-legacy-save.txt", "iptables-nft-save.txt")})
    assert iptables_rules_key(SharedParsedNode(empty, dumps=NodeDumps(empty))) is None


def test_known_mode_narrows_or_says_unknown() -> None:
    assert known_mode("nftables") == "nftables"
    with pytest.raises(ViewUnavailable, match="unknown proxy mode 'userspace'"):
        known_mode("userspace")
