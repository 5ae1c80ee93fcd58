"""The one reader of `nft -j list ruleset` text: decode it (bounded nesting) and check its top-level shape.

Both nft readers start here: the full parser (`kpdoctor.dataplane.nft.parse_nft_json`, which raises) and the
light structure reader (`kpdoctor.dataplane.nft_structure.parse_nft_structure`, which marks the document
invalid instead), so they accept and reject the same documents with the same message.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from kpdoctor.errors import InputError

# The JSON decoder. orjson is an optional accelerator, not a dependency: with the collector paused
# (`gc_paused`) it decodes a 20 MB dump in ~0.2 s against the stdlib's ~0.3 s. Its JSONDecodeError
# subclasses json's (lineno/colno), so error reporting is the same either way. Nesting is bounded by
# both decoders (orjson: 1024 levels; json: the recursion limit, caught below).
_loads: Callable[[str], Any] = json.loads
try:
    import orjson

    _loads = orjson.loads
except ImportError:  # pragma: no cover - depends on the environment
    pass


def load_nft_items(text: str, source: str = "nft-ruleset.json") -> list[Any]:
    """The `nftables` list of an `nft -j list ruleset` document.

    Raises InputError naming `source:line:column` for malformed JSON, `source` for absurd nesting or a
    document without a top-level "nftables" list."""
    try:
        doc = _loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"malformed nft JSON: {exc.msg}", where=f"{source}:{exc.lineno}:{exc.colno}") from None
    except RecursionError:
        raise InputError("malformed nft JSON: nested too deeply", where=source) from None
    items = doc.get("nftables") if isinstance(doc, dict) else None
    if not isinstance(items, list):
        raise InputError('not an `nft -j list ruleset` document (no top-level "nftables" list)', where=source)
    return items
