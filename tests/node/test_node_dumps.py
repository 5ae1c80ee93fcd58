"""kpdoctor.node.dumps: a node's iptables dumps parsed once, and the structure views derived from that parse.

Real dumps of the B1-B3 bundles (kind clusters): the view derived from the full parse answers exactly
as the light parser (`kpdoctor.node.parsed.parse_iptables_view`) does on the same text, byte-identical
facts share one parse, and the fact search helpers agree with a plain search of the text."""

from __future__ import annotations

import pytest

from kpdoctor.errors import InputError
from kpdoctor.node.dumps import NodeDumps, SharedParsedNode, fact_contains, grep_fact
from kpdoctor.node.parsed import parse_iptables_view
from kpdoctor.node.state import NodeState
from tests.support.checks import load_bundle, with_facts

KEYS = ("iptables-save.txt", "iptables-legacy-save.txt", "iptables-nft-save.txt", "ip6tables-save.txt")


def _nodes() -> list[tuple[str, NodeState]]:
    out = []
    for bundle in ("B1-healthy", "B2-stale-endpoint", "B3-backend-split"):
        out += [(f"{bundle}/{name}", node) for name, node in load_bundle(bundle)[1].items()]
    return out


@pytest.mark.parametrize(("name", "node"), _nodes(), ids=lambda v: v if isinstance(v, str) else "")
def test_views_equal_the_light_parser(name: str, node: NodeState) -> None:
    dumps = NodeDumps(node)
    seen = 0
    for key in KEYS:
        text = node.text(key)
        if text is None:
            assert dumps.light(key) is None and dumps.full(key) is None
            continue
        got, want = dumps.light(key), parse_iptables_view(text)
        assert got is not None
        assert {t: dict(p) for t, p in got.policies.items()} == {t: dict(p) for t, p in want.policies.items()}
        assert got.kube_chains() == want.kube_chains()
        assert got.chains() == want.chains()
        for table in want.rules:
            assert list(got.rules[table]) == list(want.rules[table])
            for chain in want.rules[table]:
                assert got.chain_rules(table, chain) == want.chain_rules(table, chain), (name, key, chain)
        seen += 1
    assert seen >= 2


def test_identical_dumps_share_one_parse() -> None:
    node = load_bundle("B1-healthy")[1]["edge-2"]
    assert node.text("iptables-save.txt") == node.text("iptables-nft-save.txt")
    dumps = NodeDumps(node)
    assert dumps.full("iptables-save.txt") is dumps.full("iptables-nft-save.txt")
    assert dumps.light("iptables-save.txt") is dumps.light("iptables-nft-save.txt")
    parsed = SharedParsedNode(node, dumps=dumps)
    assert parsed.iptables("iptables-save.txt") is dumps.light("iptables-save.txt")


def test_a_dump_the_full_parser_rejects_gets_the_light_parser() -> None:
    node = load_bundle("B1-healthy")[1]["edge-1"]
    broken = with_facts(node, **{"iptables-save.txt": "*nat\n-A KUBE-SERVICES -j KUBE-NODEPORTS\n"})  # no COMMIT
    dumps = NodeDumps(broken)
    with pytest.raises(InputError):
        dumps.full("iptables-save.txt")
    view = dumps.light("iptables-save.txt")  # the same parser's lenient mode: the rule of the undeclared chain kept
    assert view is not None and [r.chain for r in view.chain_rules("nat", "KUBE-SERVICES")] == ["KUBE-SERVICES"]
    assert view.policies == {"nat": {"KUBE-SERVICES": "-"}}


def test_fact_search() -> None:
    node = load_bundle("B2-stale-endpoint")[1]["edge-1"]
    parsed = SharedParsedNode(node, dumps=NodeDumps(node))
    text = node.text("iptables-save.txt") or ""
    for token in ("-j DNAT", "KUBE-MARK-MASQ", "no such token"):
        assert fact_contains(parsed, "iptables-save.txt", token) == (token in text)
    assert not fact_contains(parsed, "absent.txt", "x")
    hits = grep_fact(node, "iptables-save.txt", "-j DNAT", limit=2)
    lines = text.split("\n")
    want = [f"iptables-save.txt:{i + 1}: {line.strip()}" for i, line in enumerate(lines) if "-j DNAT" in line][:2]
    assert hits == want and len(hits) == 2
