"""iptables-save dumps as the delta of a reference dump of the same scan (incremental node analysis).

A big dump that differs from one already parsed in this scan in only a few lines is not parsed at
all: it is described as that reference (`IptablesRef`, kept by the scan's `IptablesRefs`) plus the
chains whose lines differ (`DeltaDump`). The lines are aligned on the raw text (`align_text`); the
changed chains go through the real parser (`kpdoctor.dataplane.iptables_save`).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# Line breaks other than \n that str.splitlines() honours: the parser splits on \n only (after \r\n -> \n) while
# the alignment works on the raw lines, so a dump holding one is parsed in full (rare; kept from when a second,
# splitlines()-based light parser numbered such lines differently).
ODD_BREAKS = ("\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029")


# Dumps shorter than this are parsed in full (the bookkeeping would cost more than the parse).
DELTA_MIN_LINES = 2000
# At most this share of a dump's lines may differ from the reference (beyond it: a full parse).
DELTA_MAX_SHARE = 0.05
MAX_REFS = 2  # dumps kept as references per scan (each holds its parse: memory)


class IptablesRef:
    """A fully parsed dump of this scan that later nodes' dumps are compared against, line by line.

    Holds the parse, its lines, where each line is (for aligning another dump with it), the
    structure view, and - once the node it came from has been compared - how its semantic view
    was derived and the comparison's result (`recorded`).
    """

    def __init__(self, text: str, full: Any, node: str) -> None:
        self.text = text
        self.full = full
        self.node = node
        src = next((ch.src for t in full.tables.values() for ch in t.chains.values()), None)
        self.lines: list[str] = src if src is not None else text.split("\n")
        self.light: Any = None  # its structure view (kpdoctor.node.dumps.LightDump), made once
        self.recorded: list[Any] = []  # kpdoctor.comparison.RecordedComparison of its node
        self.token_counts: dict[str, int] = {}
        self._pos: dict[str, int] | None = None
        self._dups: dict[str, list[int]] = {}
        self._offsets: list[int] | None = None
        order = sorted((t.line - 1, name) for name, t in full.tables.items())
        self.table_starts = [i for i, _ in order]
        self.table_names = [name for _, name in order]

    def positions(self) -> tuple[dict[str, int], dict[str, list[int]]]:
        """line -> index for lines that occur once; line -> sorted indexes for repeated lines."""
        if self._pos is None:
            lines = self.lines
            pos = dict(zip(lines, range(len(lines)), strict=False))
            dups: dict[str, list[int]] = {}
            if len(pos) != len(lines):
                from collections import Counter

                repeated = {line for line, n in Counter(lines).items() if n > 1}
                for i, line in enumerate(lines):
                    if line in repeated:
                        dups.setdefault(line, []).append(i)
                for line in repeated:
                    del pos[line]
            self._pos, self._dups = pos, dups
        return self._pos, self._dups

    def offsets(self) -> list[int]:
        """Where each line starts in `text` (one more entry: the end of the text plus one)."""
        if self._offsets is None:
            from itertools import accumulate

            self._offsets = list(accumulate((len(line) + 1 for line in self.lines), initial=0))
        return self._offsets

    def table_at(self, index: int) -> str:
        from bisect import bisect_right

        k = bisect_right(self.table_starts, index) - 1
        return self.table_names[k] if k >= 0 else ""




class IptablesRefs:
    """The reference dumps of one scan (`ctx.shared`): the first big dumps parsed in full."""

    def __init__(self, min_lines: int = DELTA_MIN_LINES) -> None:
        self.refs: list[IptablesRef] = []
        self.min_lines = min_lines  # dumps shorter than this are parsed in full

    def offer(self, text: str, full: Any, node: str) -> None:
        """Keep a freshly parsed dump as a reference when there is room and it is an ordinary one.

        A reference whose node recorded no comparison (its rules were not compared: kube-proxy not
        expected there, another mode) makes room for a new one: it can serve structure views only."""
        if text.count("\n") < self.min_lines or any(c in text for c in ODD_BREAKS):
            return
        if any(ch.overrides for t in full.tables.values() for ch in t.chains.values()):
            return  # per-rule counters: their lines differ on every dump
        if len(self.refs) >= MAX_REFS:
            idle = next((r for r in self.refs if not r.recorded and r.node != node), None)
            if idle is None:
                return
            self.refs.remove(idle)
        self.refs.append(IptablesRef(text, full, node))

    def of_dump(self, full: Any) -> IptablesRef | None:
        return next((r for r in self.refs if r.full is full), None)

    def delta(self, text: str, source: str) -> DeltaDump | None:
        """`text` as the delta of a reference; prefers one whose delta leaves the entry chains alone."""
        from kpdoctor.dataplane.iptables_semantic import NAT_ENTRY_CHAINS

        if not self.refs or "\r" in text:
            return None
        if not _has_lines(text, self.min_lines):
            return None
        first: DeltaDump | None = None
        for ref in sorted(self.refs, key=lambda r: not r.recorded):  # those with a comparison to reuse first
            found = make_delta(ref, text, source)
            if found is None:
                continue
            if not NAT_ENTRY_CHAINS & found.changed.keys():
                return found
            first = first or found
        return first


def _has_lines(text: str, n: int) -> bool:
    """`len(text.split("\n")) >= n` without counting a 35 MB text's line breaks (~15 ms)."""
    end = 1 << 16
    while True:
        if text.count("\n", 0, end) >= n - 1:
            return True
        if end >= len(text):
            return False
        end *= 4


def _anchor(line: str, q: int, pos: Mapping[str, int], dups: Mapping[str, list[int]]) -> int:
    """The first index >= q of the reference line equal to `line`, -1 when there is none (an unmatched line)."""
    x = pos.get(line)
    if x is None:
        seen = dups.get(line)
        if seen is not None:
            y = bisect_left(seen, q)
            if y < len(seen):
                return seen[y]
        return -1
    return x if x >= q else -1


def align(new: list[str], old: list[str], pos: Mapping[str, int], dups: Mapping[str, list[int]],
           limit: int) -> tuple[list[int], list[int]] | None:
    """Indexes of `new`'s lines and `old`'s lines left out of a common subsequence of the two lists.

    Greedy, at C speed along matching runs (`map(ne, ...)` over list iterators positioned in O(1));
    at a mismatch, the next line of `new` that occurs in `old` further on is the anchor to resume
    from. The result is always a valid alignment (equal lines, in order), maybe not a minimal one:
    what it leaves out is re-derived from the new dump's own lines. None past `limit` lines.
    Scans use `align_text`, which gives the same result on the raw text without splitting it; this
    list form is its definition, and the tests hold the two equal.
    """
    from itertools import compress, count
    from operator import ne

    un: list[int] = []
    ur: list[int] = []
    nn, nr = len(new), len(old)
    i = j = 0
    while True:
        a = iter(new)
        a.__setstate__(i)  # type: ignore[attr-defined]
        b = iter(old)
        b.__setstate__(j)  # type: ignore[attr-defined]
        off = j - i
        resume = i
        moved = False
        for p in compress(count(i), map(ne, a, b)):
            if p < resume:
                continue
            q = p + off
            k, t = p, -1
            while k < nn:
                t = _anchor(new[k], q, pos, dups)
                if t >= 0:
                    break
                k += 1
                if k - p > limit:
                    return None
            if t < 0:
                un.extend(range(p, nn))
                ur.extend(range(q, nr))
                return (un, ur) if len(un) + len(ur) <= limit else None
            un.extend(range(p, k))
            ur.extend(range(q, t))
            if len(un) + len(ur) > limit:
                return None
            if t - k == off:
                resume = k
                continue
            i, j, moved = k, t, True
            break
        if moved:
            continue
        m = min(nn - i, nr - j)
        un.extend(range(i + m, nn))
        ur.extend(range(j + m, nr))
        return (un, ur) if len(un) + len(ur) <= limit else None


_BLOCK_MIN = 1 << 15
_BLOCK_MAX = 1 << 22


def _common_prefix(a: str, pa: int, b: str, pb: int) -> int:
    """How many characters `a[pa:]` and `b[pb:]` have in common at their start.

    Compares blocks (memcmp of a slice copy), doubling while they agree, then bisects the first block
    that differs: ~2 copies of each text instead of one Python object per line."""
    n = min(len(a) - pa, len(b) - pb)
    d = 0
    step = _BLOCK_MIN
    while d < n:
        size = min(step, n - d)
        if a.startswith(b[pb + d:pb + d + size], pa + d):
            d += size
            step = min(step * 2, _BLOCK_MAX)
            continue
        lo, hi = d, d + size  # a[pa:pa+lo] == b[pb:pb+lo]; they differ before hi
        while hi - lo > 64:
            mid = (lo + hi) // 2
            if a.startswith(b[pb + lo:pb + mid], pa + lo):
                lo = mid
            else:
                hi = mid
        while a[pa + lo] == b[pb + lo]:
            lo += 1
        return lo
    return n


class _NodeLines(Sequence[str]):
    """A delta dump's lines without splitting its text: unmatched lines are its own (cut out while
    aligning), every matched line is the reference's equal line."""

    __slots__ = ("_own", "_ref", "_un", "_gaps", "_n")

    def __init__(self, own: dict[int, str], ref: list[str], un: list[int], ur: list[int], n: int) -> None:
        self._own = own
        self._ref = ref
        self._un = un
        self._gaps = [j - t for t, j in enumerate(ur)]  # matched reference lines before each unmatched one
        self._n = n

    def __len__(self) -> int:
        return self._n

    def pick(self, indexes: list[int]) -> list[str]:
        """`[self[i] for i in indexes]` for sorted indexes, walking the unmatched lists once."""
        own, un, gaps, ref = self._own, self._un, self._gaps, self._ref
        nu, ng = len(un), len(gaps)
        out: list[str] = []
        u = g = 0
        for i in indexes:
            line = own.get(i)
            if line is None:
                while u < nu and un[u] < i:
                    u += 1
                k = i - u
                while g < ng and gaps[g] <= k:
                    g += 1
                line = ref[k + g]
            out.append(line)
        return out

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(self._n))]
        if i < 0:
            i += self._n
        if not 0 <= i < self._n:
            raise IndexError(i)
        own = self._own.get(i)
        if own is not None:
            return own
        from bisect import bisect_left, bisect_right

        k = i - bisect_left(self._un, i)  # matched lines before line i
        return self._ref[k + bisect_right(self._gaps, k)]


def align_text(text: str, ref: IptablesRef, pos: Mapping[str, int], dups: Mapping[str, list[int]],
                limit: int) -> tuple[list[int], list[int], Any] | None:
    """`align(text.split("\n"), ref.lines, ...)` - the same result - on the raw text.

    Equal stretches are skipped by comparing large blocks of text (`_common_prefix`); only at a
    difference are the node's lines cut out (`str.find`) and looked up in the reference, exactly as
    `align` does. Returns the unmatched indexes of both sides and the node's lines (`_NodeLines`)."""
    from bisect import bisect_right

    old = ref.lines
    rtext = ref.text
    starts = ref.offsets()
    nr = len(old)
    nt, rt = len(text), len(rtext)
    own: dict[int, str] = {}
    un: list[int] = []
    ur: list[int] = []

    def line_at(start: int) -> tuple[str, int]:
        end = text.find("\n", start)
        if end < 0:
            end = nt
        return text[start:end], end + 1

    i = j = 0
    at = 0  # where node line i starts in text; ref line j starts at starts[j]
    while True:
        q0 = starts[j]
        d = _common_prefix(text, at, rtext, q0)
        pa, pb = at + d, q0 + d
        if pa == nt and pb == rt:
            break  # equal to the end
        # the first line that differs (a line that ends where one text ends may still be equal)
        q = bisect_right(starts, pb) - 1
        p = i + (q - j)
        if pa == nt and rtext[pb] == "\n":
            ur.extend(range(q + 1, nr))  # the node's lines end here; the reference has more
            break
        if pb == rt and text[pa] == "\n":
            start = at + (starts[q] - q0) + len(old[q]) + 1  # the node's lines go on; the reference has none
            k = p + 1
            while start <= nt:
                if len(un) + len(ur) >= limit:
                    return None
                own[k], start = line_at(start)
                un.append(k)
                k += 1
            break
        start = at + (starts[q] - q0)  # node line p
        k, t = p, -1
        while start <= nt:  # node line k exists
            line, after = line_at(start)
            t = _anchor(line, q, pos, dups)
            if t >= 0:
                break
            own[k] = line
            k += 1
            start = after
            if k - p > limit:
                return None
        if t < 0:
            un.extend(range(p, k))  # k: the node's line count
            ur.extend(range(q, nr))
            if len(un) + len(ur) > limit:
                return None
            break
        un.extend(range(p, k))
        ur.extend(range(q, t))
        if len(un) + len(ur) > limit:
            return None
        i, j, at = k, t, start
    if len(un) + len(ur) > limit:
        return None
    return un, ur, _NodeLines(own, old, un, ur, nr - len(ur) + len(un))


def make_delta(ref: IptablesRef, text: str, source: str) -> DeltaDump | None:
    from bisect import bisect_right

    from kpdoctor.dataplane.iptables_save import Chain, line_chain, line_kind, parse_iptables_save
    from kpdoctor.errors import InputError

    old = ref.lines
    if text == ref.text:
        return DeltaDump(ref, text, old, [], [], {}, False)
    pos, dups = ref.positions()
    limit = max(200, int(len(old) * DELTA_MAX_SHARE))
    found = align_text(text, ref, pos, dups, limit)
    if found is None:
        return None
    un, ur, lines = found
    delta = DeltaDump(ref, text, lines, un, ur, {}, False)
    for j in ur:
        kind = line_kind(old[j])
        if kind == "other":
            return None  # a table line or COMMIT of the reference is not in this dump
    node_starts = [delta.node_index(j) for j in ref.table_starts]
    changed: set[tuple[str, str]] = set()
    keep: list[int] = []
    decl_changed = False
    for i in un:
        line = lines[i]
        kind = line_kind(line)
        if kind == "other" or any(c in line for c in ODD_BREAKS):
            return None
        if kind == "skip":
            continue
        k = bisect_right(node_starts, i) - 1
        if k < 0:
            return None
        changed.add((ref.table_names[k], line_chain(line, kind)))
        decl_changed = decl_changed or kind == "decl"
        keep.append(i)
    for j in ur:
        line = old[j]
        kind = line_kind(line)
        if kind == "skip":
            continue
        changed.add((ref.table_at(j), line_chain(line, kind)))
        decl_changed = decl_changed or kind == "decl"
    # The changed chains' lines in this dump (with the table lines around them) go through the real
    # parser: what it rejects there, it would reject in the whole dump (then: a full parse reports it).
    unmatched_old = set(ur)
    keep += node_starts
    commit = pos.get("COMMIT")
    commits = [commit] if commit is not None else dups.get("COMMIT", [])
    keep += [delta.node_index(j) for j in commits]
    for table, name in changed:
        found = ref.full.tables[table].chains.get(name) if table in ref.full.tables else None
        if found is None:
            continue
        if found.line - 1 not in unmatched_old:
            keep.append(delta.node_index(found.line - 1))
        keep += [delta.node_index(j) for j in found.idx if j not in unmatched_old]
    order = sorted(set(keep))
    picked = lines.pick(order) if isinstance(lines, _NodeLines) else [lines[i] for i in order]
    src = dict(zip(order, picked, strict=True))  # the changed chains' lines, by this dump's index
    try:
        reduced = parse_iptables_save("\n".join(picked), source)
    except InputError:
        return None
    if list(reduced.tables) != list(ref.full.tables):
        return None
    chains: dict[tuple[str, str], Any] = {}
    for table, name in changed:
        got = reduced.tables[table].chains.get(name)
        if got is None:
            chains[(table, name)] = None
            continue
        if got.overrides:
            return None
        mine = Chain(name, got.policy, got.counters, order[got.line - 1] + 1, src)  # type: ignore[arg-type]
        mine.idx = [order[k] for k in got.idx]
        chains[(table, name)] = mine
    delta.changed = chains
    delta.decl_changed = decl_changed
    return delta


class DeltaDump:
    """A dump described as a reference dump plus the chains whose lines differ.

    `changed[(table, chain)]` is this dump's own chain (None: absent here); every other chain has
    exactly the reference's rules. Line numbers are this dump's own: a reference line index maps
    to this dump's through the unmatched lines of both sides (`node_index`).
    """

    def __init__(self, ref: IptablesRef, text: str, lines: list[str], un: list[int], ur: list[int],
                 changed: dict[tuple[str, str], Any], decl_changed: bool) -> None:
        self.ref = ref
        self.text = text
        self.lines = lines
        self.changed = changed
        self.decl_changed = decl_changed
        self._ur = ur
        self.unmatched_ref = ur
        self.unmatched_new = un
        self._gaps = [i - t for t, i in enumerate(un)]  # matched lines of this dump before each unmatched one

    def node_index(self, j: int) -> int:
        """This dump's index of the reference's (matched) line `j`."""
        from bisect import bisect_left, bisect_right

        k = j - bisect_left(self._ur, j)
        return k + bisect_right(self._gaps, k)

    def chain(self, table: str, name: str) -> Any:
        """This dump's chain (with its own line numbers), None when it has none of that name."""
        if (table, name) in self.changed:
            return self.changed[(table, name)]
        t = self.ref.full.tables.get(table)
        base = t.chains.get(name) if t is not None else None
        if base is None:
            return None
        from kpdoctor.dataplane.iptables_save import Chain

        idx = [self.node_index(j) for j in base.idx]
        old = base.src
        # Its lines are the reference's (by this dump's index): no lookup through a delta's `_NodeLines`.
        mine = Chain(name, base.policy, base.counters, self.node_index(base.line - 1) + 1,
                     dict(zip(idx, [old[j] for j in base.idx], strict=True)))  # type: ignore[arg-type]
        mine.idx = idx
        return mine

    def spec_table(self, table: str) -> Any:
        """The table as the semantic extractor reads it (chain specs only: unchanged chains are the
        reference's objects, whose texts are this dump's too)."""
        base = self.ref.full.tables.get(table)
        if base is None:
            return None
        return _SpecTable(_SpecChains(base.chains, {n: c for (t, n), c in self.changed.items() if t == table}))

    def chains_of(self, table: str) -> Mapping[str, Any]:
        """One table's chains of this dump (its own line numbers), each built on first access."""
        return _DeltaChains(self, table)


class _SpecChains(dict[str, Any]):
    """Chains by name for the semantic extractor: this dump's changed chains over the reference's."""

    def __init__(self, base: Mapping[str, Any], changed: Mapping[str, Any]) -> None:
        super().__init__()
        self._base = base
        self._changed = changed

    def get(self, name: str, default: Any = None) -> Any:
        if name in self._changed:
            found = self._changed[name]
            return default if found is None else found
        return self._base.get(name, default)


@dataclass
class _SpecTable:
    chains: _SpecChains


class _DeltaChains(Mapping[str, Any]):
    """One table's chains of a DeltaDump with this dump's line numbers, built on access."""

    def __init__(self, delta: DeltaDump, table: str) -> None:
        self._delta = delta
        self._table = table
        self._built: dict[str, Any] = {}
        self._names: list[str] | None = None

    def __getitem__(self, name: str) -> Any:
        if name not in self._built:
            found = self._delta.chain(self._table, name)
            if found is None:
                raise KeyError(name)
            self._built[name] = found
        return self._built[name]

    def get(self, name: str, default: Any = None) -> Any:
        try:
            return self[name]
        except KeyError:
            return default

    def __iter__(self) -> Iterator[str]:
        if self._names is None:
            base = self._delta.ref.full.tables[self._table].chains
            names = [n for n in base if (self._table, n) not in self._delta.changed]
            names += [n for (t, n), c in self._delta.changed.items() if t == self._table and c is not None]
            self._names = sorted(names, key=lambda n: self[n].line)
        return iter(self._names)

    def __len__(self) -> int:
        return sum(1 for _ in self)

