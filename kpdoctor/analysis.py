"""The one place where checks get derived views: parsed facts, node config, expected vs actual dataplane.

Checks must not each re-parse a 400k-line dump or re-render the reference
proxier, and must not each know which module parses which mode; everything
here is memoized per node through `ctx.derived`, and the wiring to the
dataplane parsers (written per mode) lives only in `actual_view`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from kpdoctor.checks_api import CheckContext
from kpdoctor.cluster.config import KubeProxyConfig
from kpdoctor.cluster.model import Pod
from kpdoctor.cluster.state import ClusterState, NodeProxyConfig
from kpdoctor.dataplane.semantic import FrontendDiff, FrontendView, SemanticView, diff
from kpdoctor.node.parsed import IptablesDump, IptRule, ParsedNode
from kpdoctor.node.state import NodeState
from kpdoctor.node_only import config_from_node, is_node_only
from kpdoctor.service_proxy import (  # noqa: F401  (re-exported: checks import them from here)
    DEFAULT_MODE_VERSION_MAX,
    HOST_PROCESS,
    IPTABLES_MARKER_CHAINS,
    IPVS_IPTABLES_MARKERS,
    UNKNOWN,
    Presence,
    ServiceProxy,
    decide,
    ipt_evidence,
    presence,
    resolve_mode,
)

KUBE_PROXY_LOG = "kube-proxy/log.txt"


# ------------------------------------------------------------------ parsed facts per node


def parsed(ctx: CheckContext) -> ParsedNode:
    """The parsed facts of `ctx.node` (one ParsedNode per node per scan).

    Its `iptables(key)` structure views come from the same single parse of each dump that the
    expected-vs-actual comparison uses (`node_dumps`), so a 400k-line dump is read once per node.
    """
    node = ctx.node
    if node is None:
        raise ValueError("parsed() needs a node-scope context")
    return ctx.derived("parsed-node", lambda: SharedParsedNode(node, _dumps=node_dumps(ctx)))


def parsed_of(ctx: CheckContext, node: NodeState) -> ParsedNode:
    """Parsed facts of another node (cluster-scope checks looking across nodes)."""
    found: dict[str, ParsedNode] = ctx.derived("parsed-nodes", dict)
    if node.name not in found:
        found[node.name] = SharedParsedNode(node, _dumps=NodeDumps(node))
    return found[node.name]


# ------------------------------------------------------------------ one parse per iptables dump

# Line breaks other than \n / \r\n that str.splitlines() (the light parser) honours and the full
# parser does not: a dump containing one is read by the light parser itself, so line numbers agree.
_ODD_BREAKS = ("\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029")


class NodeDumps:
    """The iptables dumps of one node, each parsed once with the full parser and shared.

    Byte-identical facts (`iptables-save.txt` and `iptables-nft-save.txt` on an nf_tables node)
    share one parse. The structure view the firewall/backend/leftover checks read
    (`kpdoctor.node.parsed.IptablesDump`) is derived from that parse instead of a second pass
    over the text; a dump the full parser rejects (or whose lines it would number differently)
    gets the lenient light parser, exactly as before.

    With `refs` (the scan's `IptablesRefs`), a big dump that differs from a dump already parsed
    in this scan in only a few lines is not parsed at all: `delta(key)` describes it as that
    reference plus the chains that differ (see `DeltaDump`), and the structure view and the
    expected-vs-actual comparison are derived from that.
    """

    def __init__(self, node: NodeState, refs: IptablesRefs | None = None) -> None:
        self.node = node
        self.refs = refs
        self._full: dict[str, tuple[str, Any]] = {}  # key -> (text, FullDump | InputError)
        self._light: dict[str, IptablesDump | None] = {}
        self._light_of: dict[int, tuple[Any, LightDump]] = {}  # id(full parse) -> (full parse, its view)
        self._delta: dict[str, DeltaDump | None] = {}

    def full(self, key: str) -> Any:
        """The `kpdoctor.dataplane.iptables_save.IptablesDump` of fact `key` (None when absent).

        Raises the parser's InputError for a dump it cannot read."""
        from kpdoctor.dataplane.iptables_save import parse_iptables_save
        from kpdoctor.errors import InputError

        text = self.node.text(key)
        if text is None:
            return None
        known = self._full.get(key)
        if known is None or known[0] is not text:
            known = None
            for other, (seen, result) in self._full.items():
                if other != key and not isinstance(result, InputError) and len(seen) == len(text) and seen == text:
                    known = (text, result)
                    break
            if known is None:
                try:
                    known = (text, parse_iptables_save(text, f"{self.node.name}/{key}"))
                except InputError as exc:
                    known = (text, exc)
                else:
                    if self.refs is not None:
                        self.refs.offer(text, known[1], self.node.name)
            self._full[key] = known
        result = known[1]
        if isinstance(result, InputError):
            raise result
        return result

    def delta(self, key: str) -> DeltaDump | None:
        """Fact `key` as a reference dump of this scan plus its differing chains; None when it is not
        one (no reference yet, too different, anything unusual): then `full(key)` is the way."""
        if key in self._delta:
            return self._delta[key]
        text = self.node.text(key)
        found: DeltaDump | None = None
        if text is not None and self.refs is not None and key not in self._full:
            for known in self._delta.values():
                if known is not None and len(known.text) == len(text) and known.text == text:
                    found = known
                    break
            else:
                if not any(len(seen) == len(text) and seen == text for seen, _ in self._full.values()):
                    found = self.refs.delta(text, f"{self.node.name}/{key}")
        self._delta[key] = found
        return found

    def ref_of(self, key: str) -> IptablesRef | None:
        """The scan reference made from this node's parse of `key`, if it became one."""
        known = self._full.get(key)
        if self.refs is None or known is None:
            return None
        return self.refs.of_dump(known[1])

    def light(self, key: str) -> IptablesDump | None:
        if key not in self._light:
            self._light[key] = self._build_light(key)
        return self._light[key]

    def _build_light(self, key: str) -> IptablesDump | None:
        from kpdoctor.errors import InputError
        from kpdoctor.node.parsed import parse_iptables_dump

        text = self.node.text(key)
        if text is None:
            return None
        delta = self.delta(key)
        if delta is not None:
            return delta.light()
        if not any(c in text for c in _ODD_BREAKS):
            try:
                full = self.full(key)
            except InputError:
                full = None
            if full is not None and not any(ch.overrides for t in full.tables.values() for ch in t.chains.values()):
                known = self._light_of.get(id(full))
                if known is None:
                    known = self._light_of[id(full)] = (full, _light_from_full(full))
                    ref = self.refs.of_dump(full) if self.refs is not None else None
                    if ref is not None and ref.light is None:
                        ref.light = known[1]
                return known[1]
        return parse_iptables_dump(text)


# ------------------------------------------------------------ dumps as a delta of another node's

# Dumps shorter than this are parsed in full (the bookkeeping would cost more than the parse).
DELTA_MIN_LINES = 2000
# At most this share of a dump's lines may differ from the reference (beyond it: a full parse).
DELTA_MAX_SHARE = 0.05
MAX_REFS = 2  # dumps kept as references per scan (each holds its parse: memory)
# Analyse nodes incrementally against a reference dump (False: every dump parsed and extracted in full;
# the tests run both ways and compare the findings).
INCREMENTAL = True


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
        self.light: LightDump | None = None
        self.recorded: list[RecordedComparison] = []
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


@dataclass
class RecordedComparison:
    """A reference node's comparison: reused for every frontend a delta node has in common with it."""

    expectation: NodeExpectation
    trace: Any  # iptables_semantic.SemanticTrace
    diffs: list[FrontendDiff]


class IptablesRefs:
    """The reference dumps of one scan (`ctx.shared`): the first big dumps parsed in full."""

    def __init__(self) -> None:
        self.refs: list[IptablesRef] = []

    def offer(self, text: str, full: Any, node: str) -> None:
        """Keep a freshly parsed dump as a reference when there is room and it is an ordinary one.

        A reference whose node recorded no comparison (its rules were not compared: kube-proxy not
        expected there, another mode) makes room for a new one: it can serve structure views only."""
        if text.count("\n") < DELTA_MIN_LINES or any(c in text for c in _ODD_BREAKS):
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
        if not _has_lines(text, DELTA_MIN_LINES):
            return None
        first: DeltaDump | None = None
        for ref in sorted(self.refs, key=lambda r: not r.recorded):  # those with a comparison to reuse first
            found = _make_delta(ref, text, source)
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


def _align(new: list[str], old: list[str], pos: Mapping[str, int], dups: Mapping[str, list[int]],
           limit: int) -> tuple[list[int], list[int]] | None:
    """Indexes of `new`'s lines and `old`'s lines left out of a common subsequence of the two lists.

    Greedy, at C speed along matching runs (`map(ne, ...)` over list iterators positioned in O(1));
    at a mismatch, the next line of `new` that occurs in `old` further on is the anchor to resume
    from. The result is always a valid alignment (equal lines, in order), maybe not a minimal one:
    what it leaves out is re-derived from the new dump's own lines. None past `limit` lines.
    Scans use `_align_text`, which gives the same result on the raw text without splitting it; this
    list form is its definition, and the tests hold the two equal.
    """
    from bisect import bisect_left
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
                line = new[k]
                x = pos.get(line)
                if x is None:
                    seen = dups.get(line)
                    if seen is not None:
                        y = bisect_left(seen, q)
                        if y < len(seen):
                            t = seen[y]
                            break
                elif x >= q:
                    t = x
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


def _align_text(text: str, ref: IptablesRef, pos: Mapping[str, int], dups: Mapping[str, list[int]],
                limit: int) -> tuple[list[int], list[int], Any] | None:
    """`_align(text.split("\n"), ref.lines, ...)` - the same result - on the raw text.

    Equal stretches are skipped by comparing large blocks of text (`_common_prefix`); only at a
    difference are the node's lines cut out (`str.find`) and looked up in the reference, exactly as
    `_align` does. Returns the unmatched indexes of both sides and the node's lines (`_NodeLines`)."""
    from bisect import bisect_left, bisect_right

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
            x = pos.get(line)
            if x is None:
                seen = dups.get(line)
                if seen is not None:
                    y = bisect_left(seen, q)
                    if y < len(seen):
                        t = seen[y]
                        break
            elif x >= q:
                t = x
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


def _line_kind(line: str) -> str:
    """How the full parser treats a line: rule, decl, skip, or other (anything else: no delta)."""
    if line.startswith("-A "):
        return "rule"
    if not line or line[0] == "#" or line.isspace():
        return "skip"
    if line[0] == ":":
        return "decl"
    return "other"


def _chain_of(line: str, kind: str) -> str:
    if kind == "rule":
        j = line.find(" ", 3)
        return line[3:j] if j > 0 else line[3:]
    return line[1:].split(" ", 1)[0]


def _make_delta(ref: IptablesRef, text: str, source: str) -> DeltaDump | None:
    from bisect import bisect_right

    from kpdoctor.dataplane.iptables_save import Chain, parse_iptables_save
    from kpdoctor.errors import InputError

    old = ref.lines
    if text == ref.text:
        return DeltaDump(ref, text, old, [], [], {}, False)
    pos, dups = ref.positions()
    limit = max(200, int(len(old) * DELTA_MAX_SHARE))
    found = _align_text(text, ref, pos, dups, limit)
    if found is None:
        return None
    un, ur, lines = found
    delta = DeltaDump(ref, text, lines, un, ur, {}, False)
    for j in ur:
        kind = _line_kind(old[j])
        if kind == "other":
            return None  # a table line or COMMIT of the reference is not in this dump
    node_starts = [delta.node_index(j) for j in ref.table_starts]
    changed: set[tuple[str, str]] = set()
    keep: list[int] = []
    decl_changed = False
    for i in un:
        line = lines[i]
        kind = _line_kind(line)
        if kind == "other" or any(c in line for c in _ODD_BREAKS):
            return None
        if kind == "skip":
            continue
        k = bisect_right(node_starts, i) - 1
        if k < 0:
            return None
        changed.add((ref.table_names[k], _chain_of(line, kind)))
        decl_changed = decl_changed or kind == "decl"
        keep.append(i)
    for j in ur:
        line = old[j]
        kind = _line_kind(line)
        if kind == "skip":
            continue
        changed.add((ref.table_at(j), _chain_of(line, kind)))
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

    def light(self) -> LightDump:
        """The structure view `_light_from_full` would give for this dump's own full parse.

        Not kept here (the caller, `NodeDumps`, keeps it): the view refers back to this delta, and a
        reference cycle would keep a node's lines alive until the cyclic collector runs."""
        ref_light = self.ref.light
        if ref_light is None:
            ref_light = self.ref.light = _light_from_full(self.ref.full)
        if not self.decl_changed:
            policies: Mapping[str, Mapping[str, str]] = ref_light.policies
        else:
            edited = {name: dict(p) for name, p in ref_light.policies.items()}
            for (table, name), ch in self.changed.items():
                if ch is None:
                    edited[table].pop(name, None)
                else:
                    edited[table][name] = ch.policy
            policies = edited
        rules = {name: _ChainRules(name, _DeltaChains(self, name)) for name in self.ref.full.tables}
        light = LightDump(policies=policies, rules=rules)
        if not self.decl_changed:
            # Same declarations (same `policies` object): the name sets are the reference's, computed once.
            object.__setattr__(light, "_same_as", ref_light)
        elif "_kube_chains" in ref_light.__dict__:
            object.__setattr__(light, "_kube_chains", self._kube_chains(ref_light.__dict__["_kube_chains"], policies))
        return light

    def _kube_chains(self, known: dict[str, list[str]], policies: Mapping[str, Mapping[str, str]]) -> dict[str, list[str]]:
        """`IptablesDump.kube_chains()` of this dump from the reference's: only the declarations that differ."""
        from bisect import bisect_left, insort

        from kpdoctor.dataplane.chain_owners import is_kube_proxy_chain

        out: dict[str, list[str]] = {}
        for table, declared in policies.items():
            names = list(known.get(table, ()))
            for (t, name), _ in self.changed.items():
                if t != table or not is_kube_proxy_chain(table, name):
                    continue
                k = bisect_left(names, name)
                present = k < len(names) and names[k] == name
                if name in declared and not present:
                    insort(names, name)
                elif name not in declared and present:
                    del names[k]
            if names:
                out[table] = names
        return out


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


def node_dumps(ctx: CheckContext) -> NodeDumps:
    node = ctx.node
    if node is None:
        raise ValueError("node_dumps() needs a node-scope context")
    refs = ctx.shared("iptables-refs", IptablesRefs) if INCREMENTAL else None
    return ctx.derived("iptables-dumps", lambda: NodeDumps(node, refs))


class _ChainRules(Mapping[str, tuple[IptRule, ...]]):
    """One table's rules per chain, built on first access (the light parser's `IptRule`s, same numbers).

    Chains iterate in the order of their first rule, as the light parser inserts them."""

    def __init__(self, table: str, chains: Mapping[str, Any]) -> None:
        self._table = table
        self._chains = chains
        self._built: dict[str, tuple[IptRule, ...]] = {}
        self._order: list[str] | None = None

    def __getitem__(self, chain: str) -> tuple[IptRule, ...]:
        found = self._built.get(chain)
        if found is None:
            ch = self._chains.get(chain)
            if ch is None or not ch.idx:
                raise KeyError(chain)
            src = ch.src
            table = self._table
            found = tuple(IptRule(table, chain, n, src[i].strip(), i + 1) for n, i in enumerate(ch.idx))
            self._built[chain] = found
        return found

    def __iter__(self) -> Iterator[str]:
        if self._order is None:
            with_rules = [(ch.idx[0], name) for name, ch in self._chains.items() if ch.idx]
            self._order = [name for _, name in sorted(with_rules)]
        return iter(self._order)

    def __len__(self) -> int:
        return sum(1 for ch in self._chains.values() if ch.idx)


@dataclass(frozen=True)
class LightDump(IptablesDump):
    """`IptablesDump` whose set-building questions are answered once (they are asked per check)."""

    def kube_chains(self) -> dict[str, list[str]]:
        cached: dict[str, list[str]] | None = self.__dict__.get("_kube_chains")
        if cached is None:
            same = self.__dict__.get("_same_as")  # a delta dump declaring exactly its reference's chains
            cached = same.kube_chains() if same is not None else super().kube_chains()
            object.__setattr__(self, "_kube_chains", cached)
        return cached

    def chains(self, table: str | None = None) -> set[str]:
        same = self.__dict__.get("_same_as")
        if same is not None:
            return same.chains(table)
        memo: dict[str | None, set[str]] = self.__dict__.setdefault("_chain_sets", {})
        if table not in memo:
            tables = [table] if table else list(self.policies)
            memo[table] = set().union(*(self.policies.get(t, {}) for t in tables))  # the keys, at C speed
        return memo[table]


def _light_from_full(full: Any) -> LightDump:
    policies = {name: {c: ch.policy for c, ch in t.chains.items()} for name, t in full.tables.items()}
    rules = {name: _ChainRules(name, t.chains) for name, t in full.tables.items()}
    return LightDump(policies=policies, rules=rules)


@dataclass
class SharedParsedNode(ParsedNode):
    """A ParsedNode whose iptables structure views come from the node's one full parse per dump."""

    _dumps: NodeDumps | None = None

    def iptables(self, key: str) -> IptablesDump | None:
        if self._dumps is None:
            return super().iptables(key)
        return self._dumps.light(key)


# ------------------------------------------------------------------ kube-proxy on a node


def service_proxy(ctx: CheckContext, node_name: str | None = None) -> ServiceProxy:
    """Who implements Services on the node (`kpdoctor.service_proxy.decide`), once per node per scan."""
    name = node_name or (ctx.node.name if ctx.node else "")
    cache: dict[str, ServiceProxy] = ctx.derived("service-proxies", dict)
    if name not in cache:
        if ctx.node is not None and ctx.node.name == name:
            p: ParsedNode | None = parsed(ctx)
        else:
            state = ctx.nodes.get(name)
            p = parsed_of(ctx, state) if state is not None and state.reachable else None
        if is_node_only(ctx.cluster):  # no cluster objects: only what the node's own kube-proxy reports
            config = config_from_node(name, p.configz, p.proxy_mode) if p is not None else None
            cache[name] = ServiceProxy(
                name, HOST_PROCESS if config is not None else UNKNOWN,
                "kube-proxy answering on the node", ("node facts only: no cluster objects in this scan",), config)
        else:
            cache[name] = decide(ctx.cluster, name, p)
    return cache[name]


def node_proxy_config(ctx: CheckContext, node_name: str | None = None) -> NodeProxyConfig | None:
    return service_proxy(ctx, node_name).config


def kube_proxy_pod(ctx: CheckContext, node_name: str | None = None) -> Pod | None:
    return service_proxy(ctx, node_name).pod


def kube_proxy_expected(ctx: CheckContext, node_name: str | None = None) -> bool:
    """Whether a kube-proxy is meant to run on the node (DaemonSet or static pod, embedded in k3s, a host
    process, or assumed from kube-proxy's ConfigMap when no workloads were collected)."""
    return service_proxy(ctx, node_name).runs_kube_proxy


def kube_proxy_version(ctx: CheckContext) -> tuple[int, int] | None:
    if is_node_only(ctx.cluster):
        return None
    return ctx.cluster.kube_proxy_version()


def configured_mode(ctx: CheckContext, node_name: str | None = None) -> tuple[str, str, NodeProxyConfig] | None:
    """(effective mode, explanation, where it came from) for the node's own kube-proxy config."""
    found = node_proxy_config(ctx, node_name)
    if found is None:
        return None
    mode, why = resolve_mode(found.config.mode, kube_proxy_version(ctx))
    return mode, why, found


_USING = re.compile(r'"Using (\w+) Proxier"')


def log_of(ctx: CheckContext, pod: Pod | None) -> str | None:
    """The kube-proxy pod's log from the API (cluster/logs) or, failing that, the node's own log fact."""
    if pod is not None:
        text = ctx.cluster.logs.get(pod.key)
        if text is not None:
            return text
    if ctx.node is not None:
        return ctx.node.text(KUBE_PROXY_LOG)
    return None


def logged_mode(log: str | None) -> tuple[str, str] | None:
    """The last "Using X Proxier" line: (mode, line)."""
    if not log:
        return None
    found: tuple[str, str] | None = None
    for line in log.splitlines():
        match = _USING.search(line)
        if match:
            found = (match.group(1).lower(), line.strip())
    return found


# -------------------------------------------------------------------- dataplane presence
# (Presence, presence, ipt_evidence: kpdoctor.service_proxy, imported above)


def iptables_rules_key(p: ParsedNode) -> str | None:
    """The dump that holds the kube-proxy rules: the default backend first, then legacy, then nft."""
    for key in ("iptables-save.txt", "iptables-legacy-save.txt", "iptables-nft-save.txt"):
        if ipt_evidence(p, key):
            return key
    for key in ("iptables-save.txt", "iptables-nft-save.txt", "iptables-legacy-save.txt"):
        if p.has(key):
            return key
    return None


# ---------------------------------------------------------- expected and actual dataplane


class ViewUnavailable(Exception):
    """The view cannot be built (dump unreadable, IPVS state unavailable); the message says why."""


def actual_view(
    node: NodeState, mode: str, *, rules_key: str | None = None, expected: SemanticView | None = None,
    family: str = "IPv4", parsed_node: ParsedNode | None = None, dumps: NodeDumps | None = None,
    jump_memo: Any = None,
) -> SemanticView | None:
    """The node's dataplane as a SemanticView for `mode`; None when the node has no dump for it.

    `expected` (the reference proxier's view) only lends names: which address is a
    load balancer vs an external IP, and Service names for IPVS (which stores none).
    Raises ViewUnavailable when a dump exists but cannot be read (the message says why).
    `parsed_node` / `dumps` are the node's already-parsed facts (checks pass theirs, so nothing
    is parsed twice); without them the node is parsed here. `jump_memo` (an iptables_semantic
    JumpMemo shared by a scan) lets identical chains of different nodes be read once.
    """
    from kpdoctor.errors import InputError

    if dumps is None:
        dumps = parsed_node._dumps if isinstance(parsed_node, SharedParsedNode) else None
        dumps = dumps or NodeDumps(node)
    if parsed_node is None:
        parsed_node = SharedParsedNode(node, _dumps=dumps)
    try:
        if mode == "iptables":
            from kpdoctor.dataplane.iptables_semantic import address_kinds_of
            from kpdoctor.dataplane.iptables_semantic import semantic_view as ipt_view

            key = rules_key or iptables_rules_key(parsed_node)
            if family == "IPv6":
                key = "ip6tables-save.txt"
            dump = dumps.full(key) if key else None
            if dump is None:
                return None
            kinds = address_kinds_of(expected) if expected is not None else None
            return ipt_view(dump, address_kinds=kinds, memo=jump_memo)
        if mode == "nftables":
            from kpdoctor.dataplane.iptables_semantic import address_kinds_of
            from kpdoctor.dataplane.nft import parse_nft
            from kpdoctor.dataplane.nft_semantic import semantic_view as nft_view

            text = node.text("nft-ruleset.json")
            if text is None:
                return None
            kinds = address_kinds_of(expected) if expected is not None else None
            ruleset = parse_nft(text, source=f"{node.name}/nft-ruleset.json")  # JSON or text: by content
            return nft_view(ruleset, family, address_kinds=kinds)
        if mode == "ipvs":
            from kpdoctor.dataplane.ipvs import read_node_ipvs
            from kpdoctor.dataplane.ipvs_semantic import api_frontends, ipvs_semantic_view, label_services

            if node.text("ipvsadm-save.txt") is None:
                return None
            table, ipsets = read_node_ipvs(node)
            if not table.available:
                raise ViewUnavailable(table.reason)
            p = parsed_node
            node_ports, service_ips = api_frontends(expected)
            view = ipvs_semantic_view(
                table.virtual_servers, ipsets, node.text(iptables_rules_key(p) or "iptables-save.txt"),
                node_ips=p.addresses(6 if family == "IPv6" else 4), node_ports=node_ports, service_ips=service_ips,
            )
            return label_services(view, expected) if expected is not None else view
    except InputError as exc:
        raise ViewUnavailable(str(exc)) from None
    raise ViewUnavailable(f"unknown proxy mode {mode!r}")


def expected_for(ctx: CheckContext, mode: str | None = None) -> SemanticView:
    """The reference proxier's expectation for `ctx.node` (IPv4), from current Services/EndpointSlices."""
    return expected_detail(ctx, mode).view


def expected_detail(ctx: CheckContext, mode: str | None = None) -> NodeExpectation:
    """`expected_for` with what an incremental comparison needs (which views are node-specific)."""
    node = ctx.node
    if node is None:
        raise ValueError("expected_for() needs a node-scope context")

    def build() -> NodeExpectation:
        from kpdoctor.proxier.context import build_input
        from kpdoctor.proxier.expected import view_options

        found = node_proxy_config(ctx, node.name)
        config: KubeProxyConfig | None = None
        if found is not None:
            config = found.config
        inp = build_input(ctx.cluster, node.name, config=config, mode=mode)
        family = inp.family
        options = view_options(inp)  # mode/config-dependent parts (short-circuit, localhost NodePorts)
        shared = ctx.shared(f"expected-shared:{family}:{options}",
                            lambda: SharedExpectation(ctx.cluster, family, options))
        api_node = ctx.cluster.node_by_name.get(node.name)
        zone = (api_node.zone or "") if api_node is not None else ""
        return shared.expectation_for(node.name, zone, inp.primary_node_ip)

    return ctx.derived(f"expected-view:{mode or ''}", build)


def expected_node_port_drops(ctx: CheckContext, mode: str | None = None) -> list[tuple[Any, FrontendView]]:
    """The expected view's NodePort frontends that DROP: `(fe, view)` for each, in no particular order.

    The set `[(fe, v) for fe, v in expected_for(ctx, mode).frontends.items() if fe.kind == NODE_PORT and
    v.verdict == DROP]` gives, without walking every frontend per node: the node-independent ones once
    per scan, the node's own (node-dependent service ports) per node."""
    from kpdoctor.dataplane.semantic import DROP, NODE_PORT

    detail = expected_detail(ctx, mode)
    shared = detail.shared
    frontends = detail.view.frontends
    template = shared._template
    if template is None or detail.kinds is None:
        return [(fe, v) for fe, v in frontends.items() if fe.kind == NODE_PORT and v.verdict == DROP]
    # The view's keys are the template's (written over by the node's views) plus any node view's own.
    if shared._node_port_keys is None:
        shared._node_port_keys = [fe for fe in template if fe.kind == NODE_PORT]
    keys = list(shared._node_port_keys)
    keys += {v.frontend for group in detail.node_views for v in group
             if v.frontend.kind == NODE_PORT and v.frontend not in template}
    out = []
    for fe in keys:
        v = frontends.get(fe)
        if v is not None and v.verdict == DROP:
            out.append((fe, v))
    return out


_NO_NODE = "\0no-node"  # a node name no endpoint carries: every endpoint is remote


@dataclass(frozen=True)
class NodeExpectation:
    """One node's expected view, and the views of the node-dependent service ports it was built from.

    Two expectations of the same `SharedExpectation` differ at most in the frontends of
    `node_views` (same positions, same frontends), which is what lets a comparison reuse another
    node's result for every other frontend.
    """

    view: SemanticView
    shared: SharedExpectation
    node_views: tuple[tuple[FrontendView, ...], ...]
    kinds: Mapping[str, str] | None = None  # address -> kind when shared by every node (`address_kinds_of`)

    def differing(self, other: NodeExpectation) -> set[Any] | None:
        """Frontends whose expected view differs between the two nodes; None when not comparable."""
        if other.shared is not self.shared or len(other.node_views) != len(self.node_views):
            return None
        out: set[Any] = set()
        for mine, theirs in zip(self.node_views, other.node_views, strict=True):
            if mine != theirs:
                out.update(v.frontend for v in mine)
                out.update(v.frontend for v in theirs)
        return out


class SharedExpectation:
    """The node-independent part of the reference proxier's expectation, computed once per scan.

    `kpdoctor.proxier.expected.expected_view(build_input(cluster, node))` is the definition; for
    most service ports its result is the same on every node: the endpoints (sorted, deduplicated)
    and their categorisation depend on the node only through Local traffic policies, topology
    hints, a source-range check against the node's IP, and which copy of an endpoint listed in
    two slices wins (the local one). Ports with none of those keep their frontend views from the
    first computation; the others are recomputed per node exactly as `expected_view` does.

    When no two service ports share a frontend (the usual case), a node's view is a copy of one
    template mapping with the node-dependent ports' views written over their placeholders: the same
    keys in the same order as `SemanticView.of` would give, without rebuilding 10,000s of entries.
    """

    def __init__(self, cluster: ClusterState, family: str, options: Any = None) -> None:
        from kpdoctor.proxier.endpoints import ServicePortEndpoints, categorize, endpoints_for
        from kpdoctor.proxier.expected import ViewOptions, service_port_views
        from kpdoctor.proxier.serviceport import all_service_ports

        self._options = options if options is not None else ViewOptions()
        slices = cluster.slices_by_service
        self._entries: list[tuple[Any, tuple[Any, ...], list[FrontendView] | None]] = []
        # per node-dependent entry: what its result depends on, when that is only which endpoints are local
        # (plus the zone/node with topology hints, the node IP with source ranges), and results seen so far
        self._reuse: dict[int, tuple[dict[str, tuple[int, ...]], bool, bool]] = {}
        self._seen: dict[tuple[int, Any], tuple[FrontendView, ...]] = {}
        template: dict[Any, FrontendView] = {}
        total = 0
        for info in all_service_ports(cluster, family):
            svc_slices = tuple(slices.get(info.service.key, ()))
            eps = endpoints_for(info, svc_slices, _NO_NODE)
            spe = ServicePortEndpoints(info, tuple(eps), categorize(info, eps, _NO_NODE, ""))
            placeholder = service_port_views(spe, None, self._options)
            views: list[FrontendView] | None = None
            if not _node_dependent(info, eps, svc_slices):
                views = placeholder
            elif _candidates(info, svc_slices) == len(eps):
                # No endpoint listed twice: on any node the endpoints are these, only `is_local` differs.
                by_node: dict[str, tuple[int, ...]] = {}
                for n, ep in enumerate(eps):
                    if ep.node_name is not None:
                        by_node[ep.node_name] = (*by_node.get(ep.node_name, ()), n)
                hints = any(ep.zone_hints or ep.node_hints for ep in eps)
                ranges = bool(info.load_balancer_source_ranges and info.load_balancer_vips)
                self._reuse[len(self._entries)] = (by_node, hints, ranges)
            self._entries.append((info, svc_slices, views))
            for v in placeholder:
                template[v.frontend] = v
            total += len(placeholder)
        # Frontend keys do not depend on the node; a shared key would make "later wins" order-dependent.
        self._template: dict[Any, FrontendView] | None = template if len(template) == total else None
        self._dependent: list[tuple[int, Any]] | None = None
        self._node_port_keys: list[Any] | None = None
        self._kinds = address_kinds(template) if self._template is not None else None

    def view_for(self, node_name: str, zone: str, node_ip: str | None) -> SemanticView:
        return self.expectation_for(node_name, zone, node_ip).view

    def expectation_for(self, node_name: str, zone: str, node_ip: str | None) -> NodeExpectation:
        from kpdoctor.proxier.endpoints import ServicePortEndpoints, categorize, endpoints_for
        from kpdoctor.proxier.expected import service_port_views

        template = self._template
        out: list[FrontendView] = []
        node_views: list[tuple[FrontendView, ...]] = []
        reuse, seen = self._reuse, self._seen
        if template is not None:  # only the node-dependent entries matter (in order)
            if self._dependent is None:
                self._dependent = [(n, e) for n, e in enumerate(self._entries) if e[2] is None]
            entries: Any = self._dependent
        else:
            entries = enumerate(self._entries)
        for n, (info, svc_slices, views) in entries:
            if views is None:
                how = reuse.get(n)
                key: Any = None
                if how is not None:
                    by_node, hints, ranges = how
                    key = (n, by_node.get(node_name, ()), (node_name, zone) if hints else None,
                           node_ip if ranges else None)
                    known = seen.get(key)
                    if known is not None:
                        node_views.append(known)
                        if template is None:
                            out += known
                        continue
                eps = endpoints_for(info, svc_slices, node_name)
                spe = ServicePortEndpoints(info, tuple(eps), categorize(info, eps, node_name, zone))
                views = service_port_views(spe, node_ip, self._options)
                node_views.append(tuple(views))
                if key is not None:
                    seen[key] = node_views[-1]
                if template is None:
                    out += views
            elif template is None:
                out += views
        if template is None:
            return NodeExpectation(SemanticView.of(out), self, tuple(node_views))
        merged = dict(template)
        for group in node_views:
            for v in group:
                merged[v.frontend] = v
        return NodeExpectation(SemanticView(MappingProxyType(merged)), self, tuple(node_views), self._kinds)


def address_kinds(frontends: Mapping[Any, Any]) -> dict[str, str]:
    """`iptables_semantic.address_kinds_of` over a frontend mapping (the same loop, kept in one place)."""
    from kpdoctor.dataplane.semantic import NODE_PORT

    return {fe.address: fe.kind for fe in frontends if fe.address and fe.kind != NODE_PORT}


def _candidates(info: Any, slices: tuple[Any, ...]) -> int:
    """How many endpoint entries the slices list for this service port (before deduplication)."""
    wanted = "IPv6" if info.family == "IPv6" else "IPv4"
    candidates = 0
    for sl in slices:
        if sl.address_type != wanted:
            continue
        for eport in sl.ports:
            if eport.name == info.port_name and eport.protocol == info.protocol and eport.port is not None:
                candidates += sum(1 for ep in sl.endpoints if ep.addresses)
    return candidates


def _node_dependent(info: Any, eps: list[Any], slices: tuple[Any, ...]) -> bool:
    if info.uses_local_endpoints or (info.load_balancer_source_ranges and info.load_balancer_vips):
        return True
    if any(ep.zone_hints or ep.node_hints for ep in eps):
        return True
    # An endpoint listed by two slices: kube-proxy keeps the local copy, so the node decides which
    # copy's conditions count. Count every candidate; fewer endpoints than candidates means overlap
    # (or an unparsable address, which costs nothing to treat the same way).
    return _candidates(info, slices) != len(eps)


@dataclass(frozen=True)
class Comparison:
    mode: str
    rules_key: str  # the fact the actual view was read from
    expected: SemanticView
    actual: SemanticView
    diffs: list[FrontendDiff]


def compare(ctx: CheckContext, mode: str) -> Comparison | None:
    """Expected vs actual for the node in `mode`; None when the node has no dump for that mode."""
    node = ctx.node
    if node is None:
        raise ValueError("compare() needs a node-scope context")

    def build() -> Comparison | None:
        p = parsed(ctx)
        key = iptables_rules_key(p) if mode == "iptables" else (
            "nft-ruleset.json" if mode == "nftables" else "ipvsadm-save.txt"
        )
        expected = expected_for(ctx, mode)
        from kpdoctor.dataplane.iptables_semantic import JumpMemo

        memo = ctx.shared("iptables-jump-memo", JumpMemo) if mode == "iptables" else None
        if mode == "iptables" and key:
            return _compare_iptables(ctx, key, memo)
        actual = actual_view(node, mode, rules_key=key, expected=expected, parsed_node=p, dumps=node_dumps(ctx),
                             jump_memo=memo)
        if actual is None:
            return None
        return Comparison(mode, key or "", expected, actual, diff(expected, actual))

    result: Comparison | None = ctx.derived(f"compare:{mode}", build)
    return result


def _compare_iptables(ctx: CheckContext, key: str, memo: Any) -> Comparison | None:
    """`compare` for iptables mode: what `actual_view` + `diff` give, derived incrementally when the
    node's dump is a delta of a reference dump whose node was compared already.

    The node's diffs are the reference's for every frontend whose expected view and actual view are
    the same on both nodes (its diff is then the same), plus `diff` over the rest: frontends the
    delta re-derived and found different, and the node-dependent expected ones that differ.
    """
    from kpdoctor.dataplane.iptables_semantic import (
        NAT_ENTRY_CHAINS,
        semantic_view_delta,
        semantic_view_traced,
    )
    from kpdoctor.errors import InputError

    dumps = node_dumps(ctx)
    detail = expected_detail(ctx, "iptables")
    # The shared mapping itself (read only): a delta recognises it and skips comparing 12k addresses.
    kinds = detail.kinds if detail.kinds is not None else address_kinds(detail.view.frontends)
    delta = dumps.delta(key)
    if delta is not None and not NAT_ENTRY_CHAINS & delta.changed.keys():
        for rec in delta.ref.recorded:
            expected_changed = detail.differing(rec.expectation)
            if expected_changed is None:
                continue
            got = semantic_view_delta(rec.trace, delta.spec_table("nat"), delta.spec_table("filter"),
                                      delta.changed, kinds, memo)
            if got is None:
                break
            actual, actual_changed = got
            redo = expected_changed | actual_changed
            diffs = rec.diffs
            if redo:
                kept = [d for d in rec.diffs if d.frontend not in redo]
                want, have = detail.view.frontends, actual.frontends
                new = diff(SemanticView.of(want[f] for f in redo if f in want),
                           SemanticView.of(have[f] for f in redo if f in have))
                diffs = sorted(kept + new, key=lambda d: d.frontend) if new else kept
            return Comparison("iptables", key, detail.view, actual, diffs)
    try:
        dump = dumps.full(key)
    except InputError as exc:
        raise ViewUnavailable(str(exc)) from None
    if dump is None:
        return None
    ref = dumps.ref_of(key)
    record = ref is not None and len(ref.recorded) < 2
    actual, trace = semantic_view_traced(dump, address_kinds=kinds, memo=memo, trace=record)
    diffs = diff(detail.view, actual)
    if ref is not None and trace is not None and trace.complete:
        ref.recorded.append(RecordedComparison(detail, trace, diffs))
    return Comparison("iptables", key, detail.view, actual, diffs)


def dump_reliability(ctx: CheckContext, mode: str, rules_key: str) -> Any:
    """`kpdoctor.dataplane.reliability.Reliability` of the node's `mode` dump (None for IPVS, which has no
    chains to be missing, or when the dump is absent or unreadable). Worth its cost only when the comparison
    found differences: a dump that cannot be what the kernel holds must not be read as stale endpoints."""
    node = ctx.node
    if node is None:
        raise ValueError("dump_reliability() needs a node-scope context")

    def build() -> Any:
        from kpdoctor.dataplane.reliability import iptables_reliability, nft_reliability
        from kpdoctor.errors import InputError

        try:
            if mode == "iptables":
                dump = node_dumps(ctx).full(rules_key)
                return None if dump is None else iptables_reliability(dump)
            if mode == "nftables":
                from kpdoctor.dataplane.nft import parse_nft

                text = node.text(rules_key)
                return None if text is None else nft_reliability(parse_nft(text, source=f"{node.name}/{rules_key}"))
        except InputError:
            return None
        return None

    return ctx.derived(f"dump-reliability:{mode}:{rules_key}", build)


def fact_contains(p: ParsedNode, key: str, token: str) -> bool:
    """`token in p.state.text(key)`, answered from the scan's reference dump when `key` is a delta of one.

    A token without a line break occurs in a text iff it occurs in one of its lines; a delta's lines
    are the reference's matched lines plus its own unmatched ones, so only those few are searched
    (the reference's count of the token is kept per token).
    """
    text = p.state.text(key)
    if text is None:
        return False
    dumps = p._dumps if isinstance(p, SharedParsedNode) else None
    delta = dumps.delta(key) if dumps is not None and "\n" not in token else None
    if delta is None:
        return token in text
    ref = delta.ref
    total = ref.token_counts.get(token)
    if total is None:
        total = ref.token_counts[token] = ref.text.count(token)
    old = ref.lines
    if total > sum(old[j].count(token) for j in delta.unmatched_ref):
        return True
    lines = delta.lines
    return any(token in lines[i] for i in delta.unmatched_new)


def grep_fact(node: NodeState, key: str, needle: str, limit: int = 3) -> list[str]:
    """`key:LINE: text` for the first lines of a fact containing `needle` (evidence for a finding).

    Searches with `str.find` and counts newlines only up to each hit: a scan of a node whose rules
    are far from the API's can produce thousands of findings, and re-splitting a 5 MB dump for
    each of them made evidence gathering quadratic (minutes, measured).
    """
    text = node.text(key)
    if not text:
        return []
    out: list[str] = []
    pos = counted = 0
    lineno = 1
    while len(out) < limit:
        hit = text.find(needle, pos)
        if hit < 0:
            break
        start = text.rfind("\n", 0, hit) + 1
        end = text.find("\n", hit)
        if end < 0:
            end = len(text)
        lineno += text.count("\n", counted, start)
        counted = start
        shown = text[start:end].strip()
        if len(shown) > 240:
            shown = shown[:237] + "..."
        out.append(f"{key}:{lineno}: {shown}")
        pos = end + 1
    return out


def memo(ctx: CheckContext, key: str, factory: Callable[[], Any]) -> Any:
    return ctx.derived(key, factory)
