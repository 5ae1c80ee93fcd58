"""A trace reads a few dozen chains of a dump that may hold 450,000 rules: `read_dump` finds a chain's rules
with `str.find` when the walk first asks for them, instead of indexing every line up front (the shared
parser's ~0.4 s on the 10,000-Service dump; a trace there reads about 30 chains).

Only a dump in iptables-save's own layout is read lazily: per table a `*name` line, its `:CHAIN` lines, its
`-A` lines, then `COMMIT`; comments and blank lines only between tables; no `\\r`, no saved counters (`-c`).
That layout is checked on the whole text before anything is read. Anything else goes to the shared parser
(`kpdoctor.dataplane.iptables_save`), which accepts or rejects it (file:line) exactly as it always has.
Every chain the walk reads is checked as the shared parser checks it (declared once, a valid chain line,
balanced quotes), and any doubt there also hands the whole dump to the shared parser. Not checked: the
lines of chains the trace never reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import overload

from kpdoctor.dataplane.iptables_save import (
    _POLICIES,
    IptablesDump,
    _valid_chain_name,
    _valid_counters,
    parse_iptables_save,
    tokenize,
)
from kpdoctor.trace.ipt_match import NON_TERMINATING

CHUNK = 1 << 16  # line numbers: newline counts per 64 KiB chunk, computed on demand
# iptables' own targets: never a chain unless the table declares one by that name (checked first)
KNOWN_TARGETS = NON_TERMINATING | {"ACCEPT", "DROP", "REJECT", "RETURN", "QUEUE", "NFQUEUE", "MARK", "CONNMARK",
                                   "DNAT", "SNAT", "MASQUERADE", "REDIRECT"}


class LayoutError(Exception):
    """Not iptables-save's plain layout: the shared parser decides."""


class LineNumbers(Sequence[int]):
    """A chain's rule line numbers, each counted when first asked for (a trace cites a few dozen rules of the
    thousands it reads)."""

    def __init__(self, dump: LazyDump, positions: list[int]) -> None:
        self.dump = dump
        self.positions = positions
        self._known: dict[int, int] = {}

    @overload
    def __getitem__(self, i: int) -> int: ...

    @overload
    def __getitem__(self, i: slice) -> list[int]: ...

    def __getitem__(self, i: int | slice) -> int | list[int]:
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        found = self._known.get(i)
        if found is None:
            found = self._known[i] = self.dump.line_of(self.positions[i])
        return found

    def __len__(self) -> int:
        return len(self.positions)


@dataclass
class LazyChain:
    name: str
    policy: str
    counters: str
    line: int
    specs: list[str] = field(default_factory=list)
    lines: Sequence[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.specs)


class LazyChains:
    """`table.chains` of a lazily read dump: `.get(name)` finds the chain on first use."""

    def __init__(self, dump: LazyDump, table: str, body: tuple[int, int], rules_at: int) -> None:
        self.dump = dump
        self.table = table
        self.body_start, self.body_end = body  # the table's :CHAIN and -A lines
        self.rules_at = rules_at  # where its first -A line starts (body_end when none)
        self._found: dict[str, LazyChain | None] = {}

    def get(self, name: str) -> LazyChain | None:
        if name in self._found:
            return self._found[name]
        try:
            self._read(name)
        except LayoutError:
            full = self.dump.full()
            table = full.tables.get(self.table)
            for key in [name, *self._found]:  # everything read so far, again from the shared parser's reading
                chain = table.chains.get(key) if table is not None else None
                self._found[key] = None if chain is None else LazyChain(chain.name, chain.policy, chain.counters,
                                                                        chain.line, chain.specs, chain.lines)
        return self._found[name]

    def _read(self, name: str) -> None:
        """Reads chain `name` (its declaration, then every `-A name` line of the table) into `_found`. One
        `str.find` pass over the table's rules per chain: a regex alternation over several chains scans no
        faster (measured), so chains are read one at a time, as the walk asks for them."""
        text = self.dump.text
        decl = self._declaration(name)
        found: list[tuple[str, int]] = []
        if decl is not None or name not in KNOWN_TARGETS:  # an undeclared name with rules: the parser reports it
            needle = f"\n-A {name}"
            hi = self.body_end
            k = text.find(needle, self.rules_at - 1, hi)
            while k >= 0:
                after = k + len(needle)
                if text[after] in " \n":
                    end = text.find("\n", after)
                    line = text[k + 1:end]
                    if '"' in line and line.count('"') & 1:
                        try:
                            tokenize(line)
                        except ValueError:
                            raise LayoutError from None  # the shared parser reports the unterminated quote
                    found.append((line[len(name) + 4:], k + 1))
                k = text.find(needle, after, hi)
        if decl is None:
            if found:
                raise LayoutError  # a rule for an undeclared chain: the shared parser says which line
            self._found[name] = None
            return
        policy, counters, pos = decl
        self._found[name] = LazyChain(name, policy, counters, self.dump.line_of(pos), [s for s, _ in found],
                                      LineNumbers(self.dump, [at for _, at in found]))

    def _declaration(self, name: str) -> tuple[str, str, int] | None:
        """(policy, counters, position) of `:name POLICY [p:b]`, None when the table does not declare it."""
        text = self.dump.text
        start, end = self.body_start, self.rules_at
        needle = f"\n:{name} "
        k = start if text.startswith(needle[1:], start) else text.find(needle, start - 1, end)
        if k < 0:
            return None
        pos = k if k == start and text[k] == ":" else k + 1
        if text.find(needle, pos, end) >= 0:
            raise LayoutError  # declared twice
        line = text[pos:text.find("\n", pos)]
        parts = line[1:].split(" ")
        if len(parts) != 3 or parts[0] != name or parts[1] not in _POLICIES or not _valid_counters(parts[2]) \
                or not _valid_chain_name(name):
            raise LayoutError
        return parts[1], parts[2], pos


@dataclass
class LazyTable:
    name: str
    line: int
    chains: LazyChains


class LazyDump:
    """Same surface as `IptablesDump` for the trace's `IptablesRules`: `source`, `tables[name].chains.get()`."""

    def __init__(self, text: str, source: str) -> None:
        self.text = text
        self.source = source
        self.tables: dict[str, LazyTable] = {}
        self._full: IptablesDump | None = None
        self._chunks: list[int] = [0]  # newlines before chunk k

    def full(self) -> IptablesDump:
        """The shared parser's reading of the whole dump (raises its InputError on a bad line)."""
        if self._full is None:
            self._full = parse_iptables_save(self.text, self.source)
        return self._full

    def line_of(self, pos: int) -> int:
        k = pos // CHUNK
        chunks = self._chunks
        while len(chunks) <= k:
            n = len(chunks)
            chunks.append(chunks[-1] + self.text.count("\n", (n - 1) * CHUNK, n * CHUNK))
        return chunks[k] + self.text.count("\n", k * CHUNK, pos) + 1


def _outside_ok(text: str, start: int, end: int) -> bool:
    """Lines between tables: blank or comments only."""
    return all(not line.strip() or line.startswith("#") for line in text[start:end].split("\n"))


def _lines_starting(text: str, prefix: str, start: int, end: int) -> int:
    """How many lines in [start, end) (start at a line start) begin with `prefix`."""
    if start >= end:
        return 0
    return (1 if text.startswith(prefix, start) else 0) + text.count("\n" + prefix, start, end)


def _layout(text: str, source: str) -> LazyDump:
    if "\r" in text:
        raise LayoutError
    dump = LazyDump(text, source)
    pos = 0
    while True:
        if pos == 0 and text.startswith("*"):
            head = 0
        else:
            k = text.find("\n*", max(pos - 1, 0))
            if k < 0:
                if not _outside_ok(text, pos, len(text)):
                    raise LayoutError
                return dump
            head = k + 1
        if not _outside_ok(text, pos, head):
            raise LayoutError
        eol = text.find("\n", head)
        if eol < 0:
            raise LayoutError
        name = text[head + 1:eol].strip()
        if not name or not name.isidentifier() or name in dump.tables:
            raise LayoutError
        commit = text.find("\nCOMMIT\n", eol)
        if commit < 0:
            commit = len(text) - 7 if text.endswith("\nCOMMIT") else -1
        if commit < 0:
            raise LayoutError
        body, body_end = eol + 1, commit + 1
        k = text.find("\n-A ", eol, body_end)
        rules_at = body_end if k < 0 else k + 1
        if _lines_starting(text, ":", body, rules_at) != text.count("\n", body, rules_at) \
                or _lines_starting(text, "-A ", rules_at, body_end) != text.count("\n", rules_at, body_end):
            raise LayoutError  # blank lines, comments, saved counters, a second *table or anything else inside
        dump.tables[name] = LazyTable(name, dump.line_of(head), LazyChains(dump, name, (body, body_end), rules_at))
        pos = body_end + len("COMMIT\n")


def read_dump(text: str, source: str) -> IptablesDump | LazyDump:
    """A dump for the trace: read lazily when it has iptables-save's plain layout, else by the shared parser
    (which raises InputError naming file:line for a bad one)."""
    try:
        return _layout(text, source)
    except LayoutError:
        return parse_iptables_save(text, source)
