"""JSON renderer: the report dict as stable, sorted-key JSON (validated by docs/report-schema.json)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any, TextIO

from kpdoctor.gcpause import gc_paused

# json.dumps(indent=2) runs the standard library's generator-based pure-Python encoder (its C encoder is
# used only without indent): ~1.3 s for the 58 MB report of a 10,000-Service / 100-node scan. `_Indented`
# writes the very same text (byte for byte: same separators, same escaping through the C string encoder,
# same int/float/None/bool spellings, same TypeError for what JSON cannot hold) with one list of pieces.
_encode_str: Callable[[str], str] = json.encoder.encode_basestring
# Kept as \uXXXX escapes in the JSON text (same string value): lone surrogates (not encodable as UTF-8) and
# bidi/invisible format characters, which would reorder what a reader sees in a terminal or editor.
_JSON_ESCAPE = re.compile("[\ud800-\udfff\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff\u2028\u2029]")


def _inert(text: str) -> str:
    return _JSON_ESCAPE.sub(lambda m: f"\\u{ord(m.group()):04x}", text) if _JSON_ESCAPE.search(text) else text
_INDENT = "  "
_CHUNK = 1 << 16  # pieces held before write_json writes them out


def _float(o: float) -> str:
    if o != o:
        return "NaN"
    if o == float("inf"):
        return "Infinity"
    if o == -float("inf"):
        return "-Infinity"
    return float.__repr__(o)


def _scalar(o: Any) -> str | None:
    """JSON text of a str, None, bool, int or float; None for anything else."""
    if isinstance(o, str):
        return _encode_str(o)
    if o is None:
        return "null"
    if o is True:
        return "true"
    if o is False:
        return "false"
    if isinstance(o, int):
        return int.__repr__(o)
    if isinstance(o, float):
        return _float(o)
    return None


def _key(key: Any) -> str:
    """A mapping key that is not exactly a str, spelled as json.dumps spells it (same TypeError otherwise)."""
    if isinstance(key, str):
        return key
    text = _scalar(key)
    if text is None:
        raise TypeError(f"keys must be str, int, float, bool or None, not {key.__class__.__name__}")
    return text


class _Indented:
    def __init__(self, sink: TextIO | None = None) -> None:
        self.out: list[str] = []
        self._nl: list[str] = ["\n"]
        self._sink = sink  # write_json: pieces go there every _CHUNK pieces instead of piling up

    def flush(self) -> None:
        if self._sink is not None:
            self._sink.write(_inert("".join(self.out)))  # _inert escapes single characters: any split is fine
            self.out.clear()

    def newline(self, level: int) -> str:
        nl = self._nl
        while len(nl) <= level:
            nl.append("\n" + _INDENT * len(nl))
        return nl[level]

    def value(self, o: Any, level: int) -> None:
        t = type(o)
        if t is str:
            self.out.append(_encode_str(o))
            return
        if t is dict:
            self.mapping(o, level)
            return
        if t is list:
            self.sequence(o, level)
            return
        text = _scalar(o)
        if text is not None:
            self.out.append(text)
        elif isinstance(o, (list, tuple)):
            self.sequence(o, level)
        elif isinstance(o, dict):
            self.mapping(o, level)
        else:
            raise TypeError(f"Object of type {o.__class__.__name__} is not JSON serializable")

    def opened(self, empty: bool, brackets: str, level: int) -> str | None:
        """Write an empty container whole (`[]`, `{}`: None back), else its opening bracket and the first item's
        indent, and return the separator between its items."""
        if empty:
            self.out.append(brackets)
            return None
        inner = self.newline(level + 1)
        self.out.append(brackets[0] + inner)
        return "," + inner

    def sequence(self, o: list[Any] | tuple[Any, ...], level: int) -> None:
        sep = self.opened(not o, "[]", level)
        if sep is None:
            return
        out = self.out
        first = True
        for item in o:
            if not first:
                out.append(sep)
            first = False
            if type(item) is str:
                out.append(_encode_str(item))
            else:
                self.value(item, level + 1)
                if len(out) > _CHUNK and self._sink is not None:
                    self.flush()
        out.append(self.newline(level) + "]")

    def mapping(self, o: dict[Any, Any], level: int) -> None:
        sep = self.opened(not o, "{}", level)
        if sep is None:
            return
        out = self.out
        first = True
        for key, item in o.items():
            if type(key) is not str:
                key = _key(key)
            if not first:
                out.append(sep)
            first = False
            out.append(_encode_str(key) + ": ")
            if type(item) is str:
                out.append(_encode_str(item))
            else:
                self.value(item, level + 1)
        out.append(self.newline(level) + "}")


@gc_paused()
def render_json(report: Mapping[str, Any]) -> str:
    if not isinstance(report, dict):
        return _inert(json.dumps(report, indent=2, sort_keys=False, ensure_ascii=False)) + "\n"
    writer = _Indented()
    writer.value(report, 0)
    return _inert("".join(writer.out)) + "\n"


@gc_paused()
def write_json(report: Mapping[str, Any], out: TextIO) -> None:
    """render_json's text written to `out` as it is produced: a 700 MB report of 1,000 nodes is never held
    whole (nor its pieces, nor its copy) in memory."""
    if not isinstance(report, dict):
        out.write(render_json(report))
        return
    writer = _Indented(out)
    writer.value(report, 0)
    writer.flush()
    out.write("\n")
