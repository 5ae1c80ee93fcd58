"""The light nftables reader: tables, base chains, rule counts and iptables-nft tables of `nft -j list ruleset`.

Read by kpdoctor.node.parsed (ParsedNode.nft), kpdoctor.node.summary and the gate's cleanup plan; the document is
decoded by the one nft JSON reader (`kpdoctor.dataplane.nft_json`, shared with the full parser); a leaf module
otherwise, so the node summary does not import the parsed-facts module that imports it back.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

from kpdoctor.dataplane.nft_json import load_nft_items
from kpdoctor.errors import InputError


@dataclass(frozen=True, slots=True)
class NftChainHead:
    family: str
    table: str
    name: str
    hook: str = ""
    prio: int | None = None
    policy: str = ""
    type: str = ""


@dataclass(frozen=True)
class NftTables:
    """Tables and base chains of `nft -j list ruleset`, plus which tables iptables-nft owns."""

    tables: tuple[tuple[str, str], ...]  # (family, name)
    chains: tuple[NftChainHead, ...]
    rule_counts: Mapping[tuple[str, str], int]  # (family, table) -> number of rules
    xt_tables: frozenset[tuple[str, str]]  # tables whose rules use xt (iptables-nft compat) expressions
    version: str = ""
    valid: bool = True

    def has_table(self, family: str, name: str) -> bool:
        return (family, name) in self.tables

    def base_chains(self) -> list[NftChainHead]:
        return [c for c in self.chains if c.hook]


_IPTABLES_NFT_TABLES = {"filter", "nat", "mangle", "raw", "security"}


def parse_nft_structure(text: str | None) -> NftTables | None:
    """None when absent; `valid=False` when the JSON is unreadable."""
    if text is None:
        return None
    if not text.strip():
        return NftTables((), (), {}, frozenset())
    try:
        items = load_nft_items(text)
    except InputError:  # a hostile node: malformed, absurdly deep, or not a ruleset (the full parser says which)
        return NftTables((), (), {}, frozenset(), valid=False)
    tables: list[tuple[str, str]] = []
    chains: list[NftChainHead] = []
    counts: dict[tuple[str, str], int] = defaultdict(int)
    xt: set[tuple[str, str]] = set()
    version = ""
    for item in items:
        if not isinstance(item, dict):
            continue
        if "metainfo" in item and isinstance(item["metainfo"], dict):
            version = str(item["metainfo"].get("version", ""))
        elif "table" in item and isinstance(item["table"], dict):
            tables.append((str(item["table"].get("family")), str(item["table"].get("name"))))
        elif "chain" in item and isinstance(item["chain"], dict):
            c = item["chain"]
            prio = c.get("prio")
            chains.append(
                NftChainHead(
                    family=str(c.get("family")),
                    table=str(c.get("table")),
                    name=str(c.get("name")),
                    hook=str(c.get("hook") or ""),
                    prio=prio if isinstance(prio, int) else None,
                    policy=str(c.get("policy") or ""),
                    type=str(c.get("type") or ""),
                )
            )
        elif "rule" in item and isinstance(item["rule"], dict):
            r = item["rule"]
            key = (str(r.get("family")), str(r.get("table")))
            counts[key] += 1
            if '"xt"' in json.dumps(r.get("expr") or []):
                xt.add(key)
    # iptables-nft tables without any rule carry no xt expression; recognise them by name and family.
    for fam, name in tables:
        if name in _IPTABLES_NFT_TABLES and fam in ("ip", "ip6"):
            xt.add((fam, name))
    return NftTables(tuple(tables), tuple(chains), dict(counts), frozenset(xt), version)
