"""Parse `nft -j list ruleset` (JSON) and `nft list ruleset` (text) into one model.

Both parsers produce the same `NftRuleset`: rules are kept as the *text* nft
itself prints (`nft list`), and the JSON parser re-creates that text from the
expression tree for the statements kube-proxy writes. One representation means
the nftables semantic extractor and the checks are written once, and a rule
cited as evidence reads the same whichever dump a node gave us.

Only `kpdoctor.errors.InputError` escapes on bad input: JSON errors carry
`line:column`, text errors the line number.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from kpdoctor.dataplane.nft_json import load_nft_items
from kpdoctor.dataplane.nft_printer import NftPrinter, printer_for
from kpdoctor.errors import InputError
from kpdoctor.gcpause import gc_paused

# ---------------------------------------------------------------------------------------------
# model


@dataclass(frozen=True, slots=True)
class NftElement:
    key: tuple[str, ...]  # concatenation components as nft prints them ("10.96.0.1", "tcp", "80")
    value: str | None = None  # map data / verdict ("goto service-…", "drop"); None for sets
    comment: str | None = None


@dataclass(slots=True)
class NftSet:
    family: str
    table: str
    name: str
    kind: str = "set"  # "set" | "map"
    key_type: tuple[str, ...] = ()
    data_type: str | None = None
    flags: tuple[str, ...] = ()
    timeout: int | None = None  # seconds
    size: int | None = None
    comment: str | None = None
    elements: list[NftElement] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class NftRule:
    text: str  # as `nft list ruleset` prints it, without the trailing comment
    comment: str | None = None
    handle: int | None = None


@dataclass(slots=True)
class NftChain:
    family: str
    table: str
    name: str
    type: str | None = None
    hook: str | None = None
    priority: int | None = None
    policy: str | None = None
    comment: str | None = None
    rules: list[NftRule] = field(default_factory=list)


@dataclass(slots=True)
class NftTable:
    family: str
    name: str
    comment: str | None = None
    sets: dict[str, NftSet] = field(default_factory=dict)
    chains: dict[str, NftChain] = field(default_factory=dict)


@dataclass(slots=True)
class NftRuleset:
    tables: dict[tuple[str, str], NftTable] = field(default_factory=dict)
    source: str = ""

    def table(self, family: str, name: str) -> NftTable | None:
        return self.tables.get((family, name))


_PRIORITY_NAMES = {"raw": -300, "mangle": -150, "dstnat": -100, "filter": 0, "security": 50, "srcnat": 100}
_DURATION = re.compile(r"(\d+)(ms|d|h|m|s)")
_DURATION_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1, "ms": 0}


def parse_duration(text: str) -> int:
    """nft durations (`10m`, `3h`, `1h30m`, `600s`) in whole seconds."""
    text = text.strip()
    if text.isdecimal():
        return int(text)
    pos, total = 0, 0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            raise ValueError(f"bad duration {text!r}")
        total += int(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise ValueError(f"bad duration {text!r}")
    return total


def parse_priority(text: str) -> int:
    """`dstnat - 10`, `-110`, `filter`, `srcnat + 5` -> a number."""
    m = re.fullmatch(r"\s*([a-z]+|-?\d+)\s*(?:([+-])\s*(\d+))?\s*", text)
    if not m:
        raise ValueError(f"bad priority {text!r}")
    base = m.group(1)
    if base in _PRIORITY_NAMES:
        value = _PRIORITY_NAMES[base]
    elif base.lstrip("-").isdecimal():
        value = int(base)
    else:
        raise ValueError(f"unknown priority name {base!r}")
    if m.group(2):
        value += int(m.group(3)) * (1 if m.group(2) == "+" else -1)
    return value


# ---------------------------------------------------------------------------------------------
# JSON


def _json_elements(raw: Any, is_map: bool, printer: NftPrinter) -> list[NftElement]:
    out: list[NftElement] = []
    if not isinstance(raw, list):
        raise TypeError("elem is not a list")
    for item in raw:
        value: str | None = None
        if is_map:
            if not (isinstance(item, list) and len(item) == 2):
                raise TypeError(f"map element is not a [key, value] pair: {item!r}")
            item, data = item
            value = printer.verdict_or_expr(data)
        comment = None
        if isinstance(item, dict) and "elem" in item:
            comment = item["elem"].get("comment")
            item = item["elem"]["val"]
        if type(item) is dict and "concat" in item:
            key = tuple(x if type(x) is str else str(x) if type(x) is int else printer.expr(x) for x in item["concat"])
        else:
            key = (item if type(item) is str else printer.expr(item),)
        out.append(NftElement(key, value, comment))
    return out


def _type_tuple(t: Any) -> tuple[str, ...]:
    if isinstance(t, list):
        return tuple(str(x) for x in t)
    return (str(t),) if t is not None else ()


@gc_paused()
def parse_nft_json(text: str, *, source: str = "nft-ruleset.json") -> NftRuleset:
    """`nft -j list ruleset` -> NftRuleset. Errors name `source:line:column` or the object index."""
    items = load_nft_items(text, source)
    rs = NftRuleset(source=source)
    for i, obj in enumerate(items):
        try:
            _json_object(rs, obj)
        except InputError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, IndexError, RecursionError) as exc:
            what = next(iter(obj), "?") if isinstance(obj, dict) and obj else "?"
            raise InputError(f"bad {what} object: {type(exc).__name__}: {exc}", where=f"{source}: nftables[{i}]") from None
    return rs


def _table_of(rs: NftRuleset, family: str, name: str) -> NftTable:
    t = rs.tables.get((family, name))
    if t is None:
        t = rs.tables[(family, name)] = NftTable(family, name)
    return t


def _json_object(rs: NftRuleset, obj: Any) -> None:
    if not isinstance(obj, dict) or len(obj) != 1:
        raise TypeError("each entry must be an object with one key")
    (kind, v), = obj.items()
    if kind == "metainfo":
        return
    if not isinstance(v, dict):
        raise TypeError(f"{kind} body is not an object")
    if kind == "rule":  # the common case first: more than half of a kube-proxy dump
        family, table, chain_name = str(v["family"]), str(v["table"]), str(v["chain"])
        t = rs.tables.get((family, table))
        if t is None:
            t = rs.tables[(family, table)] = NftTable(family, table)
        chain = t.chains.get(chain_name)
        if chain is None:
            chain = t.chains[chain_name] = NftChain(t.family, t.name, chain_name)
        exprs = v["expr"]
        if type(exprs) is not list:
            raise TypeError("rule expr is not a list")
        chain.rules.append(NftRule(printer_for(t.family).rule(exprs), v.get("comment"), v.get("handle")))
    elif kind == "table":
        t = _table_of(rs, str(v["family"]), str(v["name"]))
        t.comment = v.get("comment")
    elif kind in ("set", "map"):
        t = _table_of(rs, str(v["family"]), str(v["table"]))
        printer = printer_for(t.family)
        flags = v.get("flags", [])
        timeout = v.get("timeout")
        s = NftSet(
            family=t.family, table=t.name, name=str(v["name"]), kind=kind,
            key_type=_type_tuple(v.get("type")),
            data_type=str(v["map"]) if kind == "map" and "map" in v else None,
            flags=tuple([flags] if isinstance(flags, str) else flags),
            timeout=int(timeout) if timeout is not None else None,
            size=int(v["size"]) if "size" in v else None,
            comment=v.get("comment"),
            elements=_json_elements(v.get("elem", []), kind == "map", printer),
        )
        t.sets[s.name] = s
    elif kind == "chain":
        t = _table_of(rs, str(v["family"]), str(v["table"]))
        prio = v.get("prio")
        t.chains[str(v["name"])] = NftChain(
            family=t.family, table=t.name, name=str(v["name"]), type=v.get("type"), hook=v.get("hook"),
            priority=int(prio) if prio is not None else None, policy=v.get("policy"), comment=v.get("comment"),
        )
    # element / flowtable / counter / quota / ct helper objects carry nothing kube-proxy diagnosis needs


# ---------------------------------------------------------------------------------------------
# text

_COMMENT_TAIL = re.compile(r'\s+comment\s+"((?:[^"\\]|\\.)*)"\s*$')
_HANDLE_TAIL = re.compile(r"\s+#\s*handle\s+\d+\s*$")
_OTHER_BLOCK = re.compile(
    r"(?:flowtable|counter|quota|limit|secmark|synproxy|tunnel|ct\s+(?:helper|timeout|expectation))\s+\S+\s*\{"
)
_ELEM_ATTR = re.compile(r'\s+(?:timeout|expires)\s+\S+|\s+counter\s+packets\s+\d+\s+bytes\s+\d+')


class _Lines:
    def __init__(self, text: str, source: str) -> None:
        self.lines = text.splitlines()
        self.i = 0
        self.source = source

    def next(self) -> tuple[int, str] | None:
        while self.i < len(self.lines):
            self.i += 1
            line = self.lines[self.i - 1].strip()
            if line and not line.startswith("#"):
                return self.i, line
        return None

    def error(self, msg: str, lineno: int | None = None) -> InputError:
        return InputError(msg, where=f"{self.source}:{lineno if lineno is not None else self.i}")


def _split_top(text: str, sep: str = ",") -> list[str]:
    """Split on `sep` outside quotes and braces."""
    out, depth, quote, start = [], 0, False, 0
    for i, c in enumerate(text):
        if c == '"' and (i == 0 or text[i - 1] != "\\"):
            quote = not quote
        elif quote:
            continue
        elif c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
        elif c == sep and depth == 0:
            out.append(text[start:i])
            start = i + 1
    out.append(text[start:])
    return [p.strip() for p in out if p.strip()]


def _text_element(raw: str, is_map: bool) -> NftElement:
    value = None
    if is_map:
        idx = raw.rfind(" : ")
        if idx < 0:
            raise ValueError(f"map element without ' : ': {raw!r}")
        raw, value = raw[:idx], raw[idx + 3:].strip()
    comment = None
    m = _COMMENT_TAIL.search(raw)
    if m:
        comment = m.group(1).replace('\\"', '"')
        raw = raw[: m.start()]
    raw = _ELEM_ATTR.sub("", raw).strip()
    return NftElement(tuple(p.strip() for p in raw.split(" . ")), value, comment)


def _unquote(s: str) -> str:
    s = s.strip()
    if len(s) >= 2 and s[0] == '"' and s[-1] == '"':
        return s[1:-1].replace('\\"', '"')
    return s


@gc_paused()
def parse_nft_text(text: str, *, source: str = "nft-ruleset.txt") -> NftRuleset:
    """`nft list ruleset` -> NftRuleset; a truncated or garbled dump names the offending line."""
    lines = _Lines(text, source)
    rs = NftRuleset(source=source)
    while (item := lines.next()) is not None:
        lineno, line = item
        m = re.fullmatch(r"table\s+(\S+)\s+(\S+)\s*\{", line)
        if not m:
            raise lines.error(f"expected `table <family> <name> {{`, got {line[:80]!r}", lineno)
        _text_table(lines, _table_of(rs, m.group(1), m.group(2)), lineno)
    return rs


def _text_table(lines: _Lines, table: NftTable, opened: int) -> None:
    while True:
        item = lines.next()
        if item is None:
            raise lines.error(f"unexpected end of input: table {table.family} {table.name} (opened here) not closed",
                              opened)
        lineno, line = item
        if line == "}":
            return
        if line.startswith("comment "):
            table.comment = _unquote(line[len("comment "):])
            continue
        if line.startswith("flags "):
            continue
        m = re.fullmatch(r"(set|map|chain)\s+(\S+)\s*\{", line)
        if m:
            kind, name = m.group(1), m.group(2)
            if kind == "chain":
                table.chains[name] = _text_chain(lines, NftChain(table.family, table.name, name), lineno)
            else:
                table.sets[name] = _text_set(lines, NftSet(table.family, table.name, name, kind), lineno)
            continue
        if _OTHER_BLOCK.fullmatch(line):  # stateful objects kube-proxy never writes
            _skip_block(lines, lineno, line)
            continue
        raise lines.error(f"unexpected line in table {table.family} {table.name}: {line[:80]!r}", lineno)


def _skip_block(lines: _Lines, opened: int, header: str) -> None:
    depth = 1
    while depth:
        item = lines.next()
        if item is None:
            raise lines.error(f"unexpected end of input: block {header[:60]!r} (opened here) not closed", opened)
        line = item[1]
        depth += line.count("{") - line.count("}")


def _text_set(lines: _Lines, s: NftSet, opened: int) -> NftSet:
    while True:
        item = lines.next()
        if item is None:
            raise lines.error(f"unexpected end of input: {s.kind} {s.name} (opened here) not closed", opened)
        lineno, line = item
        try:
            if line == "}":
                return s
            if line.startswith("type ") or line.startswith("typeof "):
                body = line.split(" ", 1)[1]
                if s.kind == "map" and " : " in body:
                    body, data = body.rsplit(" : ", 1)
                    s.data_type = data.strip()
                s.key_type = tuple(p.strip() for p in body.split(" . "))
            elif line.startswith("flags "):
                s.flags = tuple(f.strip() for f in line[6:].split(","))
            elif line.startswith("timeout "):
                s.timeout = parse_duration(line[8:])
            elif line.startswith("size "):
                s.size = int(line[5:])
            elif line.startswith("comment "):
                s.comment = _unquote(line[8:])
            elif line.startswith("elements = {"):
                buf = line[len("elements = {"):]
                while not buf.rstrip().endswith("}") or buf.count('"') % 2:
                    more = lines.next()
                    if more is None:
                        raise lines.error(f"unexpected end of input inside the elements of {s.kind} {s.name}", lineno)
                    buf += " " + more[1]
                body = buf.rstrip()[:-1]
                s.elements.extend(_text_element(e, s.kind == "map") for e in _split_top(body))
            elif re.match(r"(gc-interval|policy|auto-merge|counter|size)\b", line):
                continue
            else:
                raise ValueError(f"unexpected line in {s.kind} {s.name}: {line[:80]!r}")
        except ValueError as exc:
            raise lines.error(str(exc), lineno) from None


def _text_chain(lines: _Lines, c: NftChain, opened: int) -> NftChain:
    while True:
        item = lines.next()
        if item is None:
            raise lines.error(f"unexpected end of input: chain {c.name} (opened here) not closed", opened)
        lineno, line = item
        if line == "}":
            return c
        m = re.fullmatch(r"type\s+(\S+)\s+hook\s+(\S+)(?:\s+device\s+\S+)?\s+priority\s+([^;]+);(?:\s*policy\s+(\w+);)?",
                         line)
        if m and not c.rules:
            try:
                c.type, c.hook, c.priority, c.policy = m.group(1), m.group(2), parse_priority(m.group(3)), m.group(4)
            except ValueError as exc:
                raise lines.error(str(exc), lineno) from None
            continue
        if line.startswith("comment ") and not c.rules and _COMMENT_TAIL.fullmatch(" " + line):
            c.comment = _unquote(line[8:])
            continue
        if line.count("{") != line.count("}"):
            raise lines.error(f"unbalanced braces in rule of chain {c.name}: {line[:80]!r}", lineno)
        line = _HANDLE_TAIL.sub("", line)
        comment = None
        cm = _COMMENT_TAIL.search(line)
        if cm:
            comment = cm.group(1).replace('\\"', '"')
            line = line[: cm.start()]
        c.rules.append(NftRule(line.strip(), comment))


# ---------------------------------------------------------------------------------------------


def parse_nft(text: str, *, source: str = "nft-ruleset") -> NftRuleset:
    """Either form: JSON when the first non-blank character is `{`, else `nft list` text."""
    if text.lstrip().startswith("{"):
        return parse_nft_json(text, source=source)
    return parse_nft_text(text, source=source)


def iter_rules(table: NftTable) -> Iterator[tuple[NftChain, NftRule]]:
    for chain in table.chains.values():
        for rule in chain.rules:
            yield chain, rule


def parse_nft_lenient(text: str, *, source: str = "<paste>", cut: bool = False) -> tuple[NftRuleset, list[str]]:
    """A pasted `nft list ruleset` / `nft -a list table ...` / `nft -j list ruleset` -> NftRuleset, plus
    notes. The text should have gone through `kpdoctor.dataplane.paste.clean_paste`; here the `# handle N`
    that `-a` prints on table, chain and set lines too (the strict text parser takes it on rules only)
    goes. JSON or text is decided by content, not by the file's name."""
    notes: list[str] = []
    body = text.lstrip()
    if body.startswith("{") or body.startswith("["):
        return parse_nft_json(body, source=source), notes
    lines = text.split("\n")
    first = next((i for i, line in enumerate(lines) if re.match(r"\s*table \S+ \S+ \{", line)), 0)
    if first:  # prose the author wrote above the output
        notes.append(f"ignored {first} line(s) before the first table")
        lines = lines[first:]
    handles = 0
    for i, line in enumerate(lines):
        if "# handle" in line:
            new = _HANDLE_TAIL.sub("", line)
            if new != line:
                handles += 1
                lines[i] = new
    if handles:
        notes.append(f"removed {handles} `# handle N` annotation(s) (`nft -a`)")
    body = "\n".join(lines)
    unclosed = body.count("{") - body.count("}")
    if cut and unclosed > 0:  # the author cut the paste ('...'): close what it left open, the caller says it is cut
        notes.append(f"closed {unclosed} block(s) the cut paste left open")
        body += "\n" + "}\n" * unclosed
    return parse_nft_text(body, source=source), notes
