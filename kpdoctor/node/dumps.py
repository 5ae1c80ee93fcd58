"""A node's iptables dumps parsed once per scan, and the structure views derived from that parse.

`NodeDumps` holds each dump's one full parse (`kpdoctor.dataplane.iptables_save`), or its description
as a delta of a reference dump of the scan (`kpdoctor.dataplane.iptables_delta`); the structure view
the checks read (`LightDump`, a `kpdoctor.node.parsed.IptablesView`) is derived from either, and the
node's `ParsedNode` (`SharedParsedNode`) answers `iptables(key)` with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kpdoctor.dataplane.iptables_delta import DeltaDump, IptablesRef, IptablesRefs
from kpdoctor.node.parsed import ChainRules, IptablesView, ParsedNode
from kpdoctor.node.state import NodeState


class NodeDumps:
    """The iptables dumps of one node, each parsed once with the full parser and shared.

    Byte-identical facts (`iptables-save.txt` and `iptables-nft-save.txt` on an nf_tables node)
    share one parse. The structure view the firewall/backend/leftover checks read
    (`kpdoctor.node.parsed.IptablesView`) is derived from that parse instead of a second pass
    over the text; a dump the full parser rejects gets the same parser's lenient mode
    (`kpdoctor.node.parsed.parse_iptables_view`).

    With `refs` (the scan's `IptablesRefs`), a big dump that differs from a dump already parsed
    in this scan in only a few lines is not parsed at all: `delta(key)` describes it as that
    reference plus the chains that differ (see `DeltaDump`), and the structure view and the
    expected-vs-actual comparison are derived from that.
    """

    def __init__(self, node: NodeState, refs: IptablesRefs | None = None) -> None:
        self.node = node
        self.refs = refs
        self._full: dict[str, tuple[str, Any]] = {}  # key -> (text, FullDump | InputError)
        self._light: dict[str, IptablesView | None] = {}
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

    def light(self, key: str) -> IptablesView | None:
        if key not in self._light:
            self._light[key] = self._build_light(key)
        return self._light[key]

    def _build_light(self, key: str) -> IptablesView | None:
        from kpdoctor.errors import InputError
        from kpdoctor.node.parsed import parse_iptables_view

        text = self.node.text(key)
        if text is None:
            return None
        delta = self.delta(key)
        if delta is not None:
            return light_of_delta(delta)
        try:
            full = self.full(key)
        except InputError:
            full = None
        if full is not None:
            known = self._light_of.get(id(full))
            if known is None:
                known = self._light_of[id(full)] = (full, light_from_full(full))
                ref = self.refs.of_dump(full) if self.refs is not None else None
                if ref is not None and ref.light is None:
                    ref.light = known[1]
            return known[1]
        return parse_iptables_view(text, f"{self.node.name}/{key}")  # the same parser, lenient: never raises



def light_of_delta(delta: DeltaDump) -> LightDump:
    """The structure view `light_from_full` would give for the delta dump's own full parse.

    Not kept on the delta (the caller, `NodeDumps`, keeps it): the view refers back to the delta, and a
    reference cycle would keep a node's lines alive until the cyclic collector runs."""
    ref = delta.ref
    ref_light: LightDump | None = ref.light
    if ref_light is None:
        ref_light = ref.light = light_from_full(ref.full)
    if not delta.decl_changed:
        policies: Mapping[str, Mapping[str, str]] = ref_light.policies
    else:
        edited = {name: dict(p) for name, p in ref_light.policies.items()}
        for (table, name), ch in delta.changed.items():
            if ch is None:
                edited[table].pop(name, None)
            else:
                edited[table][name] = ch.policy
        policies = edited
    rules = {name: ChainRules(name, delta.chains_of(name)) for name in ref.full.tables}
    light = LightDump(policies=policies, rules=rules)
    if not delta.decl_changed:
        # Same declarations (same `policies` object): the name sets are the reference's, computed once.
        object.__setattr__(light, "_same_as", ref_light)
    elif "_kube_chains" in ref_light.__dict__:
        object.__setattr__(light, "_kube_chains", _delta_kube_chains(delta, ref_light.__dict__["_kube_chains"], policies))
    return light


def _delta_kube_chains(delta: DeltaDump, known: dict[str, list[str]],
                       policies: Mapping[str, Mapping[str, str]]) -> dict[str, list[str]]:
    """`IptablesView.kube_chains()` of a delta dump from the reference's: only the declarations that differ."""
    from bisect import bisect_left, insort

    from kpdoctor.dataplane.chain_owners import is_kube_proxy_chain

    out: dict[str, list[str]] = {}
    for table, declared in policies.items():
        names = list(known.get(table, ()))
        for (t, name), _ in delta.changed.items():
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

@dataclass(frozen=True)
class LightDump(IptablesView):
    """`IptablesView` whose set-building questions are answered once (they are asked per check)."""

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


def light_from_full(full: Any) -> LightDump:
    policies = {name: {c: ch.policy for c, ch in t.chains.items()} for name, t in full.tables.items()}
    rules = {name: ChainRules(name, t.chains) for name, t in full.tables.items()}
    return LightDump(policies=policies, rules=rules)


@dataclass
class SharedParsedNode(ParsedNode):
    """A ParsedNode whose iptables structure views come from the node's one full parse per dump."""

    dumps: NodeDumps | None = None

    def iptables(self, key: str) -> IptablesView | None:
        if self.dumps is None:
            return super().iptables(key)
        return self.dumps.light(key)


def fact_contains(p: ParsedNode, key: str, token: str) -> bool:
    """`token in p.state.text(key)`, answered from the scan's reference dump when `key` is a delta of one.

    A token without a line break occurs in a text iff it occurs in one of its lines; a delta's lines
    are the reference's matched lines plus its own unmatched ones, so only those few are searched
    (the reference's count of the token is kept per token).
    """
    text = p.state.text(key)
    if text is None:
        return False
    dumps = p.dumps if isinstance(p, SharedParsedNode) else None
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

