"""A parsed iptables dump -> the mode-independent `SemanticView` (what each Service frontend does).

Starts where packets start: nat KUBE-SERVICES (cluster IPs, external IPs,
LoadBalancer VIPs) and nat KUBE-NODEPORTS, then follows the jumps kube-proxy
builds (KUBE-FW -> KUBE-EXT -> KUBE-SVC / KUBE-SVL -> KUBE-SEP -> DNAT); a
frontend without a DNAT path takes its verdict from the filter table's REJECT /
DROP rules (KUBE-SERVICES, KUBE-EXTERNAL-SERVICES). Rules that are not
kube-proxy's are simply never reached from those entry points.

For a KUBE-EXT chain the followed path is the one taken by traffic that does
not short-circuit: the jump that carries no source condition (`-s`,
`--src-type LOCAL`, `-i`), as the expected view defines it.

External IPs and LoadBalancer VIPs of a service *without endpoints* appear only
as identical REJECT rules in filter KUBE-EXTERNAL-SERVICES; pass `address_kinds`
(address -> frontend kind, e.g. from the expected view) to label them, otherwise
they are reported as external IPs. A frontend whose nat path reaches no
endpoint and that has no filter rule is reported as `drop` (nothing DNATs it:
the packet is routed on), except a node port: un-NATed it is delivered to the
node itself, where nothing listens: `reject` (TCP reset / port unreachable), as
for an eTP=Local Service without local endpoints whose filter DROP is gone.

Two more paths are read (see `kpdoctor.dataplane.semantic`): KUBE-EXT's
short-circuit jumps (`-s` / `-i` / `--src-type LOCAL`) give `internal_endpoints`,
and when nat KUBE-SERVICES sends 127.0.0.1 to KUBE-NODEPORTS each node port also
gets a `localhost-node-port` frontend that follows KUBE-EXT's node-local path.
"""

from __future__ import annotations

import ipaddress
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from kpdoctor.dataplane.iptables_save import IptablesDump, Table, tokenize
from kpdoctor.dataplane.semantic import (
    CLUSTER_IP,
    DNAT,
    DROP,
    EXTERNAL_IP,
    LOAD_BALANCER,
    LOCALHOST_NODE_PORT,
    NODE_PORT,
    REJECT,
    Frontend,
    FrontendView,
    SemanticView,
)
from kpdoctor.gcpause import gc_paused

_KIND_SUFFIXES = ((" cluster IP", CLUSTER_IP), (" external IP", EXTERNAL_IP), (" loadbalancer IP", LOAD_BALANCER))
_FILTER_SUFFIXES = (" has no local endpoints", " has no endpoints")
_NOT_A_PATH = frozenset({"KUBE-MARK-MASQ", "KUBE-MARK-DROP", "RETURN", "ACCEPT", "MARK", "MASQUERADE", "SNAT", "LOG"})


@dataclass(slots=True)
class _Rule:
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


def _strip_host_prefix(addr: str) -> str:
    if addr.endswith("/32") or addr.endswith("/128"):
        addr = addr.rsplit("/", 1)[0]
    return canonical_ip(addr) or addr


_VALUED = frozenset({
    "-d", "--destination", "--dst", "-s", "--source", "--src", "-p", "--protocol", "--dport",
    "--destination-port", "-j", "-g", "--jump", "--goto", "--to-destination", "--seconds", "--src-type",
    "--dst-type", "-i", "--in-interface",
})


def _parse(spec: str) -> _Rule:
    comment, tokens = _split_comment(spec)
    r = _Rule(comment=comment)
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


def _service_from_comment(comment: str | None, suffixes: Iterable[str]) -> str:
    if not comment:
        return ""
    for suffix in suffixes:
        if comment.endswith(suffix):
            return comment[: -len(suffix)]
    return comment.split(" ", 1)[0]


@dataclass
class _Path:
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


class _Resolver:
    def __init__(self, nat: Table | None, memo: JumpMemo | None = None) -> None:
        self._nat = nat
        self._memo = memo
        self._parsed: dict[str, list[_Rule]] = {}
        self._jumps: dict[str, list[tuple[str | None, str | None, int | None]]] = {}
        self._resolved: dict[str, _Path] = {}
        self._on_path: set[str] = set()
        # chain -> the chains its result was built from (for incremental re-derivation); None: not traced
        self.deps: dict[str, list[str]] | None = None
        self.cut = False  # a cycle was cut somewhere: some result depends on the path it was reached by

    def rules(self, chain: str) -> list[_Rule]:
        cached = self._parsed.get(chain)
        if cached is None:
            found = self._nat.chains.get(chain) if self._nat is not None else None
            cached = [_parse(s) for s in found.specs] if found is not None else []
            self._parsed[chain] = cached
        return cached

    def resolve(self, chain: str, seen: frozenset[str] = frozenset()) -> _Path:
        """The path from `chain`: DNAT targets, affinity, source ranges (chains in `seen` count as empty).

        A service chain is reached from several frontends (cluster IP, node port, external IPs,
        its EXT and FW chains) and every endpoint chain from its service chains, so each chain is
        resolved once and remembered: linear in the size of the dump. A result is remembered only
        when no chain on the way was cut short as a cycle, because only such a result does not
        depend on `seen`. Returned paths are shared: callers read them, never change them.
        """
        self._on_path = set(seen)
        return self._resolve(chain)[0]

    def _resolve(self, chain: str) -> tuple[_Path, bool]:
        done = self._resolved.get(chain)
        if done is not None:
            return done, True
        path = _Path()
        if chain in _NOT_A_PATH:
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

    def _follow(self, parent: str, chain: str) -> tuple[_Path, bool]:
        if self.deps is not None:
            self.deps.setdefault(parent, []).append(chain)
        return self._resolve(chain)

    def _resolve_rules(self, chain: str, path: _Path) -> bool:
        complete = True
        if self.deps is not None:
            self.deps.setdefault(chain, [])
        if chain.startswith("KUBE-FW-"):
            rules = self.rules(chain)
            for r in rules:
                if r.target and r.target not in _NOT_A_PATH and r.source and "-s" not in r.negated:
                    path.ranges.add(_cidr(r.source))
            follow = next((r.target for r in rules if r.target and r.target not in _NOT_A_PATH), None)
            if follow:
                sub, complete = self._follow(chain, follow)
                path.endpoints, path.affinity = sub.endpoints, sub.affinity
                path.internal, path.local_source = sub.internal, sub.local_source
                path.local_affinity, path.drop_mark = sub.local_affinity, sub.drop_mark
        elif chain.startswith(("KUBE-EXT-", "KUBE-XLB-")):
            # KUBE-XLB is KUBE-EXT's name before v1.24: the same short-circuit jumps, but the local endpoints
            # are balanced in the chain itself (one statistic jump per KUBE-SEP), or KUBE-MARK-DROP without any
            rules = self.rules(chain)
            jumps = [r for r in rules if r.target and r.target not in _NOT_A_PATH and r.target != "DNAT"]
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
                elif target and target not in _NOT_A_PATH and target not in ("DROP", "REJECT"):
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
                r = _parse(spec)
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


LOCALHOST = "127.0.0.1"


def _holds_localhost(dest: str) -> bool:
    try:
        return ipaddress.ip_address(LOCALHOST) in ipaddress.ip_network(dest, strict=False)
    except ValueError:
        return False


def _localhost_reaches_nodeports(services: Iterable[_Rule]) -> bool:
    """Whether nat KUBE-SERVICES sends 127.0.0.1 to KUBE-NODEPORTS (localhost NodePorts, iptables/proxier.go).

    kube-proxy's tail rule is `--dst-type LOCAL -j KUBE-NODEPORTS` with localhostNodePorts, `... ! -d
    127.0.0.0/8 ...` without (IPv6: always `! -d ::1/128`), or one `-d IP` rule per nodePortAddresses
    address (127.0.0.1 among them only with localhostNodePorts). The only negated `-d` kube-proxy writes
    there is that loopback exclusion. Whether the kernel then routes 127.0.0.1 to a pod is the
    route_localnet sysctl's business, not the rules'.
    """
    for r in services:
        if r.target != "KUBE-NODEPORTS" or "-d" in r.negated or r.source or "-s" in r.negated:
            continue
        if r.dest is None or _holds_localhost(r.dest):
            return True
    return False


def _is_loopback(dest: str) -> bool:
    try:
        return ipaddress.ip_network(dest, strict=False).is_loopback
    except ValueError:
        return False


def _cidr(text: str) -> str:
    try:
        return str(ipaddress.ip_network(text, strict=False))
    except ValueError:
        return text


def _endpoint_key(target: str) -> str:
    """`--to-destination` value -> `ip:port` / `[ip]:port` (a range keeps its text)."""
    if target.startswith("["):
        ip, _, port = target[1:].partition("]:")
        return f"[{_strip_host_prefix(ip)}]:{port}"
    ip, sep, port = target.rpartition(":")
    if not sep:
        return target
    return f"{_strip_host_prefix(ip)}:{port}"


def semantic_view(dump: IptablesDump, *, address_kinds: Mapping[str, str] | None = None,
                  memo: JumpMemo | None = None) -> SemanticView:
    """The frontends kube-proxy's iptables rules in `dump` serve (empty when there are none).

    `memo` (optional) shares the cutting of identical chains between the dumps of one scan."""
    return semantic_view_traced(dump, address_kinds=address_kinds, memo=memo, trace=False)[0]


# The chains whose rules decide which frontends exist: a node whose copy of one of these differs from
# the reference's is extracted in full, not incrementally.
NAT_ENTRY_CHAINS = frozenset({("nat", "KUBE-SERVICES"), ("nat", "KUBE-NODEPORTS")})


@dataclass
class SemanticTrace:
    """How a view was derived, so a nearly identical dump can be re-derived only where it differs.

    `entries` are the frontends created from nat rules in creation order (frontend, service, target
    chain); `resolved`/`deps` are the resolver's per-chain results and the chains each was built from.
    Valid for incremental use only when `complete` (no cycle was cut: every result is path-independent).
    """

    view: SemanticView
    kinds: dict[str, str]
    entries: list[tuple[Frontend, str, str]]
    filter_ip: dict[tuple[str, int, str], tuple[str, str, str]]
    filter_np: dict[tuple[int, str], tuple[str, str]]
    resolved: dict[str, _Path]
    deps: dict[str, list[str]]
    complete: bool
    _parents: dict[str, list[str]] | None = None
    _by_target: dict[str, list[int]] | None = None
    _by_filter_key: tuple[dict[Any, list[int]], dict[Any, list[int]]] | None = None
    _kinds_checked: Mapping[str, str] | None = None  # an address_kinds mapping found equal to `kinds`
    _filter_rules: dict[str, _Rule] = field(default_factory=dict)  # filter rule text -> parsed (read-only)
    localhost: bool = False  # nat KUBE-SERVICES sends 127.0.0.1 to KUBE-NODEPORTS

    def affected_chains(self, changed: Iterable[str]) -> set[str]:
        """`changed` and every chain whose resolution read one of them (transitively)."""
        if self._parents is None:
            parents: defaultdict[str, list[str]] = defaultdict(list)
            for parent, children in self.deps.items():
                for child in children:
                    parents[child].append(parent)
            self._parents = dict(parents)
        out = set(changed)
        todo = list(out)
        while todo:
            for parent in self._parents.get(todo.pop(), ()):
                if parent not in out:
                    out.add(parent)
                    todo.append(parent)
        return out

    def entries_by_filter_key(self) -> tuple[dict[Any, list[int]], dict[Any, list[int]]]:
        """Indexes of `entries` by the filter verdict key their view reads: (port, proto) for node ports,
        (address, port, proto) for the others."""
        if self._by_filter_key is None:
            by_np: dict[Any, list[int]] = {}
            by_ip: dict[Any, list[int]] = {}
            for n, (fe, _, _) in enumerate(self.entries):
                if fe.kind in (NODE_PORT, LOCALHOST_NODE_PORT):
                    by_np.setdefault((fe.port, fe.protocol), []).append(n)
                else:
                    by_ip.setdefault((fe.address, fe.port, fe.protocol), []).append(n)
            self._by_filter_key = (by_np, by_ip)
        return self._by_filter_key

    def entries_via(self, chains: set[str]) -> list[int]:
        """Indexes of `entries` whose target chain is in `chains` (in creation order)."""
        if self._by_target is None:
            by_target: dict[str, list[int]] = {}
            for n, (_, _, target) in enumerate(self.entries):
                by_target.setdefault(target, []).append(n)
            self._by_target = by_target
        found = [n for c in chains for n in self._by_target.get(c, ())]
        found.sort()
        return found


def _frontend_view(fe: Frontend, service: str, path: _Path,
                   filter_ip: Mapping[tuple[str, int, str], tuple[str, str, str]],
                   filter_np: Mapping[tuple[int, str], tuple[str, str]]) -> FrontendView:
    ranges = frozenset(path.ranges) if fe.kind == LOAD_BALANCER else frozenset()
    endpoints, affinity, internal = path.endpoints, path.affinity, path.internal
    if fe.kind == LOCALHOST_NODE_PORT:  # from the node itself: KUBE-EXT's src-type LOCAL path
        if path.local_source is not None:
            endpoints, affinity = path.local_source, path.local_affinity
        internal = None
    internal_eps = frozenset(internal) if internal is not None else None
    if endpoints:
        dnat = frozenset(endpoints)
        return FrontendView(fe, service, DNAT, dnat, affinity, ranges, internal_eps if internal_eps != dnat else None)
    if path.drop_mark and fe.kind != LOCALHOST_NODE_PORT:
        # KUBE-MARK-DROP (kube-proxy before v1.25): the filter table's KUBE-FIREWALL drops the marked packet
        return FrontendView(fe, service, DROP, frozenset(), 0, ranges, internal_eps or None)
    if fe.kind in (NODE_PORT, LOCALHOST_NODE_PORT):
        # un-NATed, a node port is delivered locally: unless the filter table drops or rejects it, nothing
        # listens there and the kernel answers with a reset / port unreachable
        verdict, fservice = filter_np.get((fe.port, fe.protocol), (REJECT, service))
    else:
        # un-NATed, a Service IP is routed on as plain traffic: nothing on this node answers it
        verdict, fservice, _ = filter_ip.get((fe.address, fe.port, fe.protocol), (DROP, service, ""))
    return FrontendView(fe, service or fservice, verdict, frozenset(), 0, ranges, internal_eps or None)


def semantic_view_traced(dump: IptablesDump, *, address_kinds: Mapping[str, str] | None = None,
                         memo: JumpMemo | None = None, trace: bool = True) -> tuple[SemanticView, SemanticTrace | None]:
    """`semantic_view` plus (when `trace`) how it was derived, for `semantic_view_delta`."""
    with gc_paused():  # many small acyclic objects: the collector's full passes would dominate at scale
        return _semantic_view(dump, address_kinds, memo, trace)


_FilterIp = dict[tuple[str, int, str], tuple[str, str, str]]  # (addr, port, proto) -> (verdict, service, kind)
_FilterNp = dict[tuple[int, str], tuple[str, str]]  # (port, proto) -> (verdict, service)


def _filter_verdicts(filt: Table | None, parsed: dict[str, _Rule] | None = None) -> tuple[_FilterIp, _FilterNp]:
    """Filter-table verdicts for frontends without a DNAT path (`parsed`: rules already cut apart, by text)."""
    filter_ip: _FilterIp = {}
    filter_np: _FilterNp = {}
    if filt is not None:
        for chain, kind in (("KUBE-SERVICES", CLUSTER_IP), ("KUBE-EXTERNAL-SERVICES", EXTERNAL_IP)):
            found = filt.chains.get(chain)
            for spec in found.specs if found is not None else ():
                r = parsed.get(spec) if parsed is not None else None
                if r is None:
                    r = _parse(spec)
                    if parsed is not None:
                        parsed[spec] = r
                if r.target not in ("REJECT", "DROP") or r.dport is None or not r.proto:
                    continue
                verdict = REJECT if r.target == "REJECT" else DROP
                service = _service_from_comment(r.comment, _FILTER_SUFFIXES)
                proto = r.proto.upper()
                if r.dest and "-d" not in r.negated:
                    addr = _strip_host_prefix(r.dest)
                    filter_ip.setdefault((addr, r.dport, proto), (verdict, service, kind))
                elif r.dst_type_local:
                    filter_np.setdefault((r.dport, proto), (verdict, service))
    return filter_ip, filter_np


def _add_filter_only(views: dict[Frontend, FrontendView], filter_ip: _FilterIp, filter_np: _FilterNp,
                     kinds: Mapping[str, str], localhost: bool = False) -> None:
    """Frontends the filter table rejects or drops before any nat rule exists for them (with `localhost`,
    the filter's `--dst-type LOCAL` node-port rules hold for 127.0.0.1 too)."""
    for (addr, port, proto), (verdict, service, kind) in filter_ip.items():
        if kind == EXTERNAL_IP:
            kind = kinds.get(addr, EXTERNAL_IP)
        fe = Frontend(kind, addr, port, proto)
        if fe not in views:
            views[fe] = FrontendView(fe, service, verdict)
    for (port, proto), (verdict, service) in filter_np.items():
        fe = Frontend(NODE_PORT, "", port, proto)
        if fe not in views:
            views[fe] = FrontendView(fe, service, verdict)
        if localhost:
            fe = Frontend(LOCALHOST_NODE_PORT, LOCALHOST, port, proto)
            if fe not in views:
                views[fe] = FrontendView(fe, service, verdict)


def _semantic_view(dump: IptablesDump, address_kinds: Mapping[str, str] | None,
                   memo: JumpMemo | None = None, trace: bool = False) -> tuple[SemanticView, SemanticTrace | None]:
    kinds = address_kinds or {}
    nat = dump.table("nat")
    filt = dump.table("filter")
    resolver = _Resolver(nat, memo)
    if trace:
        resolver.deps = {}
    entries: list[tuple[Frontend, str, str]] = []

    filter_ip, filter_np = _filter_verdicts(filt)

    views: dict[Frontend, FrontendView] = {}
    localhost = False

    def add(fe: Frontend, service: str, target: str | None) -> None:
        if fe in views:
            return  # the first matching rule wins, as in the kernel
        if target:
            entries.append((fe, service, target))
        path = resolver.resolve(target) if target else _Path()
        views[fe] = _frontend_view(fe, service, path, filter_ip, filter_np)

    if nat is not None:
        for r in resolver.rules("KUBE-SERVICES"):
            if not r.dest or "-d" in r.negated or r.dport is None or not r.proto or not r.target:
                continue
            if r.target in ("KUBE-NODEPORTS", *_NOT_A_PATH):
                continue
            addr = _strip_host_prefix(r.dest)
            kind = ""
            for suffix, k in _KIND_SUFFIXES:
                if r.comment and r.comment.endswith(suffix):
                    kind = k
                    break
            if not kind:
                if r.target.startswith("KUBE-FW-"):
                    kind = LOAD_BALANCER
                elif r.target.startswith("KUBE-EXT-"):
                    kind = kinds.get(addr, EXTERNAL_IP)
                else:
                    kind = kinds.get(addr, CLUSTER_IP)
            service = _service_from_comment(r.comment, (s for s, _ in _KIND_SUFFIXES))
            add(Frontend(kind, addr, r.dport, r.proto.upper()), service, r.target)
        nodeports = resolver.rules("KUBE-NODEPORTS")
        # The general rule first; the `-d 127.0.0.0/8` nfacct duplicates lead to the same chain.
        for r in sorted(nodeports, key=lambda x: x.dest is not None):
            if r.dport is None or not r.proto or not r.target or r.target in _NOT_A_PATH:
                continue
            if r.dest and "-d" not in r.negated and _is_loopback(r.dest):
                continue  # localhost NodePorts only: without the general rule the node's own IPs get nothing
            add(Frontend(NODE_PORT, "", r.dport, r.proto.upper()), _service_from_comment(r.comment, ()), r.target)
        localhost = _localhost_reaches_nodeports(resolver.rules("KUBE-SERVICES"))
        if localhost:
            # 127.0.0.1:PORT from the node: the first KUBE-NODEPORTS rule that matches it (kube-proxy's nfacct
            # `-d 127.0.0.0/8` duplicate, else the general rule - both lead to the same KUBE-EXT chain)
            for r in nodeports:
                if r.dport is None or not r.proto or not r.target or r.target in _NOT_A_PATH or r.negated:
                    continue
                if r.dest and not _holds_localhost(r.dest):
                    continue
                add(Frontend(LOCALHOST_NODE_PORT, LOCALHOST, r.dport, r.proto.upper()),
                    _service_from_comment(r.comment, ()), r.target)

    from_nat = len(views)
    _add_filter_only(views, filter_ip, filter_np, kinds, localhost)
    view = SemanticView.of(views.values())
    if not trace:
        return view, None
    complete = not resolver.cut and from_nat == len(entries)
    return view, SemanticTrace(view, dict(kinds), entries, filter_ip, filter_np, resolver._resolved,
                               resolver.deps or {}, complete, localhost=localhost)


class _Overlay(dict[str, "_Path"]):
    """The resolver's results for a delta: its own, else `base`'s except for the `hidden` chains
    (what a copy of `base` without them would answer, without copying 100k entries per node)."""

    def __init__(self, base: Mapping[str, _Path], hidden: set[str]) -> None:
        super().__init__()
        self._base = base
        self._hidden = hidden

    def get(self, chain: str, default: Any = None) -> Any:
        found = dict.get(self, chain)
        if found is not None:
            return found
        if chain in self._hidden:
            return default
        return self._base.get(chain, default)


def semantic_view_delta(base: SemanticTrace, nat: Table | None, filt: Table | None, changed: Iterable[tuple[str, str]],
                        address_kinds: Mapping[str, str] | None = None,
                        memo: JumpMemo | None = None) -> tuple[SemanticView, set[Frontend]] | None:
    """The view of a dump that equals `base`'s dump except for the chains `changed` ((table, chain)).

    Only what a changed chain can influence is re-derived (from `nat` / `filt`, the node's own
    tables): frontends whose resolution read a changed nat chain, and - when the filter table's
    KUBE-SERVICES / KUBE-EXTERNAL-SERVICES differ - the verdicts taken from them. Everything else is
    `base`'s result, which the full extraction would reproduce exactly because those chains' rules
    and everything they lead to are identical. Returns (view, frontends whose view differs from
    base's), or None when the delta cannot be trusted (base had a cycle, different address kinds,
    a changed nat entry chain, a cycle in the re-derivation): the caller then extracts in full.
    """
    changed = set(changed)
    if not base.complete:
        return None
    if address_kinds is None or address_kinds is not base._kinds_checked:
        if dict(address_kinds or {}) != base.kinds:
            return None
        base._kinds_checked = address_kinds  # the same (shared, unchanging) mapping again: no 12k-entry compare

    if ("nat", "KUBE-SERVICES") in changed or ("nat", "KUBE-NODEPORTS") in changed:
        return None  # which frontends exist: the full extraction
    affected = base.affected_chains(n for t, n in changed if t == "nat")
    redo = set(base.entries_via(affected))
    filter_ip, filter_np = base.filter_ip, base.filter_np
    refilter = ("filter", "KUBE-SERVICES") in changed or ("filter", "KUBE-EXTERNAL-SERVICES") in changed
    if refilter:
        if len(base._filter_rules) > 50_000:
            base._filter_rules.clear()
        filter_ip, filter_np = _filter_verdicts(filt, base._filter_rules)
        ip_keys = {k for k in filter_ip.keys() | base.filter_ip.keys() if filter_ip.get(k) != base.filter_ip.get(k)}
        np_keys = {k for k in filter_np.keys() | base.filter_np.keys() if filter_np.get(k) != base.filter_np.get(k)}
        by_np, by_ip = base.entries_by_filter_key()  # the entries whose verdict key changed
        for np_key in np_keys:
            redo.update(by_np.get(np_key, ()))
        for ip_key in ip_keys:
            redo.update(by_ip.get(ip_key, ()))
    if not redo and not refilter:
        return base.view, set()
    resolver = _Resolver(nat, memo)
    resolver._resolved = _Overlay(base.resolved, affected)  # base's results but for the affected chains
    old = base.view.frontends
    views = dict(old)  # a copy keeps the stored hashes: no Frontend.__hash__ per entry
    trailing_before: list[Frontend] = []
    if refilter:  # the filter-only frontends come last: drop them, re-add them from the node's verdicts
        trailing_before = list(old)[len(base.entries):]
        for fe in trailing_before:
            del views[fe]
    differ: set[Frontend] = set()
    for n in sorted(redo):
        fe, service, target = base.entries[n]
        new = _frontend_view(fe, service, resolver.resolve(target), filter_ip, filter_np)
        if resolver.cut:
            return None
        if new != views[fe]:
            views[fe] = new
            differ.add(fe)
    if refilter:
        from_nat = len(views)
        _add_filter_only(views, filter_ip, filter_np, base.kinds, base.localhost)
        trailing = list(views)[from_nat:]
        for fe in {*trailing, *trailing_before}:
            if views.get(fe) != old.get(fe):
                differ.add(fe)
    if not differ and list(views) == list(old):
        return base.view, differ
    return SemanticView(MappingProxyType(views)), differ


def address_kinds_of(view: SemanticView) -> dict[str, str]:
    """address -> frontend kind, from an (expected) view: the `address_kinds` argument."""
    return {fe.address: fe.kind for fe in view.frontends if fe.address and fe.kind != NODE_PORT}
