"""Read legacy (x_tables) iptables in-process with python-iptables, for hosts without iptables-legacy-save.

Used only by the local transport, only when `iptables-legacy-save` is not
installed, and only for tables listed in /proc/net/ip_tables_names: opening a
table that is not loaded would make the kernel create it, which a read-only
tool must not do. What it cannot see: anything in nf_tables (iptables-nft rules,
kube-proxy's nftables mode), IPv6 legacy tables, and exact iptables-save text
(rules come back as python-iptables dicts, so they are stored under their own
key `iptables-legacy-iptc.json`, never as `iptables-legacy-save.txt`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any


def available() -> bool:
    try:
        import iptc  # noqa: F401
    except Exception:  # ImportError, or OSError when libiptc/libxtables cannot be loaded
        return False
    return True


def dump_legacy_tables(tables: Sequence[str]) -> str:
    """JSON {table: {chain: {"policy": P|None, "rules": [...]}}} for the given loaded tables."""
    import iptc
    import iptc.easy

    out: dict[str, Any] = {}
    for name in tables:
        table = iptc.Table(name)
        table.refresh()
        chains: dict[str, Any] = {}
        for chain in table.chains:
            policy = chain.get_policy().name if chain.is_builtin() else None
            chains[chain.name] = {"policy": policy, "rules": [iptc.easy.decode_iptc_rule(r) for r in chain.rules]}
        out[name] = chains
    return json.dumps(out, indent=1, sort_keys=True) + "\n"
