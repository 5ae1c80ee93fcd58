"""One reader per format, nft JSON: the full parser (`parse_nft_json`), the light structure reader
(`parse_nft_structure`) and the gate's kube-proxy table list decode through one loader (`nft_json.load_nft_items`)
and agree on which documents they read, their tables and rule counts. Odd inputs are hand-made (the last resort,
said here): each is one thing a hostile or broken node can print; the expected values are counted by hand.
"""

from __future__ import annotations

import json

import pytest

from kpdoctor.dataplane.nft import parse_nft_json
from kpdoctor.dataplane.nft_json import load_nft_items
from kpdoctor.dataplane.nft_structure import parse_nft_structure
from kpdoctor.errors import InputError
from kpdoctor.gate.cleanup import kube_proxy_nft_tables


def _doc(comment: str) -> str:
    return json.dumps({"nftables": [
        {"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
        {"table": {"family": "ip", "name": "kube-proxy", "handle": 1, "comment": comment}},
        {"chain": {"family": "ip", "table": "kube-proxy", "name": "services", "handle": 2}},
        {"rule": {"family": "ip", "table": "kube-proxy", "chain": "services", "handle": 3,
                  "expr": [{"counter": {"packets": 0, "bytes": 0}}], "comment": comment}},
        {"table": {"family": "inet", "name": "filter", "handle": 4}},
    ]})


# name -> (text, tables or None when unreadable, rules)
CASES: dict[str, tuple[str, list[tuple[str, str]] | None, int]] = {
    "plain": (_doc("rules for kube-proxy"), [("ip", "kube-proxy"), ("inet", "filter")], 1),
    "quotes, spaces, NUL in strings": (_doc('a "b" c\x00d'), [("ip", "kube-proxy"), ("inet", "filter")], 1),
    "4 MiB comment": (_doc("x" * (4 * 1024 * 1024)), [("ip", "kube-proxy"), ("inet", "filter")], 1),
    "CRLF between tokens": (_doc("c").replace(", ", ",\r\n"), [("ip", "kube-proxy"), ("inet", "filter")], 1),
    "malformed (cut)": (_doc("c")[:-7], None, 0),
    "nested 100,000 deep": ("[" * 100_000 + "]" * 100_000, None, 0),
    "no nftables list": ('{"nftables": {"table": {}}}', None, 0),
    "a bare list": ("[1, 2]", None, 0),
}


@pytest.mark.parametrize("name", list(CASES))
def test_nft_readers_agree(name: str) -> None:
    text, tables, rules = CASES[name]
    light = parse_nft_structure(text)
    assert light is not None
    if tables is None:
        with pytest.raises(InputError) as exc:
            parse_nft_json(text, source="ruleset.json")
        with pytest.raises(InputError) as again:
            load_nft_items(text, "ruleset.json")
        assert (exc.value.where, str(exc.value)) == (again.value.where, str(again.value))
        assert exc.value.where.startswith("ruleset.json")
        assert not light.valid and light.tables == ()
        assert kube_proxy_nft_tables(text) == []
        return
    full = parse_nft_json(text, source="ruleset.json")
    assert list(full.tables) == tables == list(light.tables)
    assert sum(len(c.rules) for t in full.tables.values() for c in t.chains.values()) == rules
    assert sum(light.rule_counts.values()) == rules
    assert light.valid and light.version == "1.0.6"
    assert kube_proxy_nft_tables(text) == ["ip kube-proxy"]
