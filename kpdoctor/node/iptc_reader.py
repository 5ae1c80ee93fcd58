"""Read legacy (x_tables) iptables in-process with python-iptables, for hosts without iptables-legacy-save.

Used only by the local transport, only when `iptables-legacy-save` is not
installed, and only for tables listed in /proc/net/ip_tables_names: opening a
table that is not loaded would make the kernel create it, which a read-only
tool must not do. What it cannot see: anything in nf_tables (iptables-nft rules,
kube-proxy's nftables mode), IPv6 legacy tables, and exact iptables-save text
(rules come back as python-iptables dicts, so they are stored under their own
key `iptables-legacy-iptc.json`, never as `iptables-legacy-save.txt`).

Importing python-iptables as-is runs `modprobe ip_tables` and `modprobe ip6_tables`
(iptc/ip4tc.py and ip6tc.py call util.load_kernel at import time) on any host
with /proc/modules: a read-only collector must not load kernel modules, so the
package is imported with that hook disabled, and only when a dump is needed
(`available()` only looks the package up).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any


def available() -> bool:
    """Whether python-iptables is installed; does not import it (importing it used to load modules)."""
    try:
        return importlib.util.find_spec("iptc") is not None
    except (ImportError, ValueError):
        return False


def _no_module_loading(name: str, exc_if_failed: bool = False) -> None:
    """Stands in for iptc.util.load_kernel: kpdoctor reads only tables that are already loaded."""
    return None


def import_iptc() -> ModuleType:
    """python-iptables with its import-time `modprobe` disabled (see the module docstring)."""
    if "iptc" in sys.modules:
        return sys.modules["iptc"]
    spec = importlib.util.find_spec("iptc")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("python-iptables is not installed")
    util_path = Path(next(iter(spec.submodule_search_locations))) / "util.py"
    util_spec = importlib.util.spec_from_file_location("iptc.util", util_path)
    if util_spec is None or util_spec.loader is None:
        raise ImportError(f"cannot load {util_path}")
    util = importlib.util.module_from_spec(util_spec)
    util_spec.loader.exec_module(util)
    util.load_kernel = _no_module_loading  # type: ignore[attr-defined]
    # ip4tc/ip6tc do `from .util import load_kernel`: they now get the stand-in from sys.modules
    sys.modules["iptc.util"] = util
    try:
        import iptc
    except BaseException:
        sys.modules.pop("iptc.util", None)
        raise
    return iptc


def dump_legacy_tables(tables: Sequence[str]) -> str:
    """JSON {table: {chain: {"policy": P|None, "rules": [...]}}} for the given loaded tables."""
    iptc = import_iptc()

    out: dict[str, Any] = {}
    for name in tables:
        # autocommit off: closing the handle must never write the table back (libiptc skips an unchanged
        # commit, but a reader should not depend on that)
        table = iptc.Table(name, autocommit=False)
        table.refresh()
        chains: dict[str, Any] = {}
        for chain in table.chains:
            policy = chain.get_policy().name if chain.is_builtin() else None
            chains[chain.name] = {"policy": policy, "rules": [iptc.easy.decode_iptc_rule(r) for r in chain.rules]}
        out[name] = chains
    return json.dumps(out, indent=1, sort_keys=True) + "\n"
