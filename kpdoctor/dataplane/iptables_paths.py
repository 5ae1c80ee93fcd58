"""kube-proxy's iptables rules read as paths: a rule spec split into the parts the semantic walk needs (`SpecRule`:
comment, destination, match flags, target, DNAT destination) and a `Resolver` that follows a nat chain's jumps
(KUBE-FW -> KUBE-EXT -> KUBE-SVC/SVL -> KUBE-SEP -> DNAT) to the `ChainPath` it ends in, memoized across nodes by
`JumpMemo`. `kpdoctor.dataplane.iptables_semantic` turns those paths into the `SemanticView`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from kpdoctor.dataplane.iptables_save import Table, tokenize

NOT_A_PATH = frozenset({"KUBE-MARK-MASQ", "KUBE-MARK-DROP", "RETURN", "ACCEPT", "MARK", "MASQUERADE", "SNAT", "LOG"})


@dataclass(slots=True)
class SpecRule:
    """The parts of a rule the extractor needs (`!` negations are kept apart)."""

    comment: str | None = None
    dest: str | None = None
    source: str | None = None
    proto: str | None = None
    dport: int | None = None
    target: str | None = None
    to_destination: str | None = None
    rcheck_seconds: int | None = None
    src_type_local: bool = False
    dst_type_local: bool = False
    in_iface: bool = False
    negated: set[str] = field(default_factory=set)


def _split_comment(spec: str) -> tuple[str | None, list[str]]:
    """(comment, other tokens) without tokenizing the whole rule char by char."""
    i = spec.find("--comment ")
    if i < 0:
        return None, spec.split() if '"' not in spec else tokenize(spec)
    rest = spec[i + 10:]
    if rest.startswith('"'):
        j = rest.find('"', 1)
        if "\\" in rest[:j + 1] or j < 0:
            tokens = tokenize(spec)
            k = tokens.index("--comment")
            return (tokens[k + 1] if k + 1 < len(tokens) else None), tokens[:k] + tokens[k + 2:]
        comment, after = rest[1:j], rest[j + 1:]
    else:
        comment, _, after = rest.partition(" ")
    head = spec[:i]
    if '"' in head or '"' in after:
        return comment, tokenize(head) + tokenize(after)
    return comment, head.split() + after.split()


_CANONICAL_V4 = re.compile(r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}")


def canonical_ip(text: str) -> str | None:
    """Canonical address text (dotted quads are checked without `ipaddress`: ~10x faster)."""
    if _CANONICAL_V4.fullmatch(text):
        return text
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def strip_host_prefix(addr: str) -> str:
    if addr.endswith("/32") or addr.endswith("/128"):
        addr = addr.rsplit("/", 1)[0]
    return canonical_ip(addr) or addr


_VALUED = frozenset({
    "-d", "--destination", "--dst", "-s", "--source", "--src", "-p", "--protocol", "--dport",
    "--destination-port", "-j", "-g", "--jump", "--goto", "--to-destination", "--seconds", "--src-type",
    "--dst-type", "-i", "--in-interface",
})


def parse_spec(spec: str) -> SpecRule:
    comment, tokens = _split_comment(spec)
    r = SpecRule(comment=comment)
    neg = False
    n = len(tokens)
    i = 0
    while i < n:
        t = tokens[i]
        if t == "!":
            neg = True
            i += 1
            continue
        if t not in _VALUED or i + 1 >= n:
            neg = False
            i += 1
            continue
        val = tokens[i + 1]
        if t in ("-d", "--destination", "--dst"):
            if neg:
                r.negated.add("-d")
            else:
                r.dest = val
        elif t in ("-s", "--source", "--src"):
            if neg:
                r.negated.add("-s")
            else:
                r.source = val
        elif t in ("-p", "--protocol"):
            r.proto = val
        elif t in ("--dport", "--destination-port"):
            r.dport = int(val) if val.isdecimal() else None
        elif t in ("-j", "-g", "--jump", "--goto"):
            r.target = val
        elif t == "--to-destination":
            r.to_destination = val
        elif t == "--seconds":
            r.rcheck_seconds = int(val) if val.isdecimal() else None
        elif t == "--src-type":
            r.src_type_local = val == "LOCAL" and not neg
        elif t == "--dst-type":
            r.dst_type_local = val == "LOCAL" and not neg
        else:  # -i / --in-interface
            r.in_iface = True
        neg = False
        i += 2
    return r


def service_from_comment(comment: str | None, suffixes: Iterable[str]) -> str:
    if not comment:
        return ""
    for suffix in suffixes:
        if comment.endswith(suffix):
            return comment[: -len(suffix)]
    return comment.split(" ", 1)[0]


@dataclass
class ChainPath:
    endpoints: set[str] = field(default_factory=set)
    affinity: int = 0
    ranges: set[str] = field(default_factory=set)
    # KUBE-EXT's short-circuit: where pods / node-local sources go (None: no such rule), and where a
    # node-local source (src-type LOCAL, no input interface) goes (None: not an EXT path)
    internal: set[str] | None = None
    local_source: set[str] | None = None
    local_affinity: int = 0
    # an unconditional jump to KUBE-MARK-DROP (kube-proxy before v1.25: "has no local endpoints"), which the
    # filter table's KUBE-FIREWALL drops: the verdict when no endpoint is reached
    drop_mark: bool = False


class JumpMemo(dict[tuple[str, ...], list[tuple[str | None, str | None, int | None]]]):
    """Rule texts of a chain -> its jumps, shared by the dumps of one scan.

    Nodes of one cluster hold mostly byte-identical service and endpoint chains, so a scan that
    passes one memo to every node's `semantic_view` cuts each distinct chain's rules apart once.
    Bounded: it starts over past `limit` chains.
    """

    def __init__(self, limit: int = 400_000) -> None:
        super().__init__()
        self.limit = limit


class Resolver:
    def __init__(self, nat: Table | None, memo: JumpMemo | None = None) -> None:
        self._nat = nat
        self._memo = memo
        self._parsed: dict[str, list[SpecRule]] = {}
        self._jumps: dict[str, list[tuple[str | None, str | None, int | None]]] = {}
        self._resolved: dict[str, ChainPath] = {}
        self._on_path: set[str] = set()
        # chain -> the chains its result was built from (for incremental re-derivation); None: not traced
        self.deps: dict[str, list[str]] | None = None
        self.cut = False  # a cycle was cut somewhere: some result depends on the path it was reached by

    def rules(self, chain: str) -> list[SpecRule]:
        cached = self._parsed.get(chain)
        if cached is None:
            found = self._nat.chains.get(chain) if self._nat is not None else None
            cached = [parse_spec(s) for s in found.specs] if found is not None else []
            self._parsed[chain] = cached
        return cached

    def resolve(self, chain: str, seen: frozenset[str] = frozenset()) -> ChainPath:
        """The path from `chain`: DNAT targets, affinity, source ranges (chains in `seen` count as empty).

        A service chain is reached from several frontends (cluster IP, node port, external IPs,
        its EXT and FW chains) and every endpoint chain from its service chains, so each chain is
        resolved once and remembered: linear in the size of the dump. A result is remembered only
        when no chain on the way was cut short as a cycle, because only such a result does not
        depend on `seen`. Returned paths are shared: callers read them, never change them.
        """
        self._on_path = set(seen)
        return self._resolve(chain)[0]

    def _resolve(self, chain: str) -> tuple[ChainPath, bool]:
        done = self._resolved.get(chain)
        if done is not None:
            return done, True
        path = ChainPath()
        if chain in NOT_A_PATH:
            return path, True
        on_path = self._on_path  # the chains being resolved above this one (a jump back is a cycle)
        if chain in on_path:
            self.cut = True
            return path, False
        on_path.add(chain)
        try:
            complete = self._resolve_rules(chain, path)
        finally:
            on_path.discard(chain)
        if complete:
            self._resolved[chain] = path
        return path, complete

    def _follow(self, parent: str, chain: str) -> tuple[ChainPath, bool]:
        if self.deps is not None:
            self.deps.setdefault(parent, []).append(chain)
        return self._resolve(chain)

    def _resolve_rules(self, chain: str, path: ChainPath) -> bool:
        complete = True
        if self.deps is not None:
            self.deps.setdefault(chain, [])
        if chain.startswith("KUBE-FW-"):
            rules = self.rules(chain)
            for r in rules:
                if r.target and r.target not in NOT_A_PATH and r.source and "-s" not in r.negated:
                    path.ranges.add(_cidr(r.source))
            follow = next((r.target for r in rules if r.target and r.target not in NOT_A_PATH), None)
            if follow:
                sub, complete = self._follow(chain, follow)
                path.endpoints, path.affinity = sub.endpoints, sub.affinity
                path.internal, path.local_source = sub.internal, sub.local_source
                path.local_affinity, path.drop_mark = sub.local_affinity, sub.drop_mark
        elif chain.startswith(("KUBE-EXT-", "KUBE-XLB-")):
            # KUBE-XLB is KUBE-EXT's name before v1.24: the same short-circuit jumps, but the local endpoints
            # are balanced in the chain itself (one statistic jump per KUBE-SEP), or KUBE-MARK-DROP without any
            rules = self.rules(chain)
            jumps = [r for r in rules if r.target and r.target not in NOT_A_PATH and r.target != "DNAT"]
            plain = [r for r in jumps if not r.source and not r.src_type_local and not r.in_iface and not r.negated]
            path.drop_mark = any(r.target == "KUBE-MARK-DROP" and not r.source and not r.src_type_local
                                 and not r.in_iface and not r.negated for r in rules)
            defaults = [r.target for r in plain if r.rcheck_seconds is None]
            if not chain.startswith("KUBE-XLB-"):
                defaults = defaults[:1]
            for r in plain:
                if r.rcheck_seconds is not None and chain.startswith("KUBE-XLB-"):
                    path.affinity = max(path.affinity, r.rcheck_seconds)
            for target in defaults:
                assert target is not None
                sub, ok = self._follow(chain, target)
                complete = complete and ok
                if len(defaults) == 1:
                    path.endpoints, path.affinity = sub.endpoints, sub.affinity
                else:
                    path.endpoints = path.endpoints | sub.endpoints
                    path.affinity = max(path.affinity, sub.affinity)
                path.drop_mark = path.drop_mark or sub.drop_mark
            # eTP=Local: `-s <cluster CIDR>` / `-i <prefix>` (pods) and `--src-type LOCAL` (the node) jump to
            # KUBE-SVC before the default; a node-local source (no input interface) takes the first jump
            # that is not a pod condition
            shortcut = [r for r in jumps if r.source or r.src_type_local or r.in_iface]
            if shortcut:
                path.internal = set()
                for r in shortcut:
                    assert r.target is not None
                    sub, ok = self._follow(chain, r.target)
                    complete = complete and ok
                    path.internal |= sub.endpoints
            local = next((r.target for r in jumps
                          if not r.source and not r.in_iface and not r.negated and r.rcheck_seconds is None), None)
            path.local_source = set()
            if local:
                sub, ok = self._follow(chain, local)
                complete = complete and ok
                path.local_source, path.local_affinity = set(sub.endpoints), sub.affinity
        else:
            for target, endpoint, seconds in self.jumps(chain):
                if target == "DNAT" and endpoint:
                    path.endpoints.add(endpoint)
                elif target == "KUBE-MARK-DROP":
                    path.drop_mark = True
                elif target and target not in NOT_A_PATH and target not in ("DROP", "REJECT"):
                    if seconds is not None:
                        # `-m recent --rcheck` only matches clients recorded by the `--set` inside that
                        # KUBE-SEP chain, which only its random/plain jump enters: affinity, never new clients
                        path.affinity = max(path.affinity, seconds)
                        continue
                    sub, ok = self._follow(chain, target)
                    complete = complete and ok
                    path.endpoints |= sub.endpoints
                    path.drop_mark = path.drop_mark or sub.drop_mark
        return complete

    def jumps(self, chain: str) -> list[tuple[str | None, str | None, int | None]]:
        """(target, DNAT endpoint key of --to-destination, --rcheck --seconds) per rule of a
        service/endpoint chain.

        These chains hold most rules of a big dump, so the three values are cut out of the text
        directly; a rule whose quoted comment could hide the `-j` falls back to the full parse.
        """
        cached = self._jumps.get(chain)
        if cached is not None:
            return cached
        found = self._nat.chains.get(chain) if self._nat is not None else None
        specs = found.specs if found is not None else []
        memo = self._memo
        if memo is not None:
            key = tuple(specs)
            known = memo.get(key)
            if known is not None:
                self._jumps[chain] = known
                return known
        out = self._cut_jumps(specs)
        self._jumps[chain] = out
        if memo is not None:
            if len(memo) >= memo.limit:
                memo.clear()
            memo[key] = out
        return out

    @staticmethod
    def _cut_jumps(specs: list[str]) -> list[tuple[str | None, str | None, int | None]]:
        out: list[tuple[str | None, str | None, int | None]] = []
        for spec in specs:
            j = spec.rfind(" -j ")
            if j < 0 or j < spec.rfind('"') or spec.count(" -j ") + spec.count(" -g ") != 1:
                r = parse_spec(spec)
                dnat = _endpoint_key(r.to_destination) if r.target == "DNAT" and r.to_destination else None
                out.append((r.target, dnat, r.rcheck_seconds))
                continue
            target = spec[j + 4:].split(" ", 1)[0]
            to_destination = seconds = None
            if target == "DNAT":
                k = spec.find("--to-destination ")
                if k >= 0:
                    to_destination = spec[k + 17:].split(" ", 1)[0]
            elif "--rcheck" in spec:
                k = spec.find("--seconds ")
                value = spec[k + 10:].split(" ", 1)[0] if k >= 0 else ""
                seconds = int(value) if value.isdecimal() else None
            out.append((target, _endpoint_key(to_destination) if to_destination else None, seconds))
        return out

def _cidr(text: str) -> str:
    try:
        return str(ipaddress.ip_network(text, strict=False))
    except ValueError:
        return text


def _endpoint_key(target: str) -> str:
    """`--to-destination` value -> `ip:port` / `[ip]:port` (a range keeps its text)."""
    if target.startswith("["):
        ip, _, port = target[1:].partition("]:")
        return f"[{strip_host_prefix(ip)}]:{port}"
    ip, sep, port = target.rpartition(":")
    if not sep:
        return target
    return f"{strip_host_prefix(ip)}:{port}"
