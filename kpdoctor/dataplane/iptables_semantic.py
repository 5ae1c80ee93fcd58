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
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from kpdoctor.dataplane import semantic as sem
from kpdoctor.dataplane.iptables_paths import (
    NOT_A_PATH,
    ChainPath,
    JumpMemo,
    Resolver,
    SpecRule,
    parse_spec,
    service_from_comment,
    strip_host_prefix,
)
from kpdoctor.dataplane.iptables_save import IptablesDump, Table
from kpdoctor.dataplane.semantic import Frontend, FrontendView, SemanticView
from kpdoctor.gcpause import gc_paused

_KIND_SUFFIXES = ((" cluster IP", sem.CLUSTER_IP), (" external IP", sem.EXTERNAL_IP), (" loadbalancer IP", sem.LOAD_BALANCER))
_FILTER_SUFFIXES = (" has no local endpoints", " has no endpoints")

LOCALHOST = "127.0.0.1"


def _holds_localhost(dest: str) -> bool:
    try:
        return ipaddress.ip_address(LOCALHOST) in ipaddress.ip_network(dest, strict=False)
    except ValueError:
        return False


def _localhost_reaches_nodeports(services: Iterable[SpecRule]) -> bool:
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
    resolved: dict[str, ChainPath]
    deps: dict[str, list[str]]
    complete: bool
    _parents: dict[str, list[str]] | None = None
    _by_target: dict[str, list[int]] | None = None
    _by_filter_key: tuple[dict[Any, list[int]], dict[Any, list[int]]] | None = None
    _kinds_checked: Mapping[str, str] | None = None  # an address_kinds mapping found equal to `kinds`
    _filter_rules: dict[str, SpecRule] = field(default_factory=dict)  # filter rule text -> parsed (read-only)
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
                if fe.kind in (sem.NODE_PORT, sem.LOCALHOST_NODE_PORT):
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


def _frontend_view(fe: Frontend, service: str, path: ChainPath,
                   filter_ip: Mapping[tuple[str, int, str], tuple[str, str, str]],
                   filter_np: Mapping[tuple[int, str], tuple[str, str]]) -> FrontendView:
    ranges = frozenset(path.ranges) if fe.kind == sem.LOAD_BALANCER else frozenset()
    endpoints, affinity, internal = path.endpoints, path.affinity, path.internal
    if fe.kind == sem.LOCALHOST_NODE_PORT:  # from the node itself: KUBE-EXT's src-type LOCAL path
        if path.local_source is not None:
            endpoints, affinity = path.local_source, path.local_affinity
        internal = None
    internal_eps = frozenset(internal) if internal is not None else None
    if endpoints:
        dnat = frozenset(endpoints)
        return FrontendView(fe, service, sem.DNAT, dnat, affinity, ranges, internal_eps if internal_eps != dnat else None)
    if path.drop_mark and fe.kind != sem.LOCALHOST_NODE_PORT:
        # KUBE-MARK-DROP (kube-proxy before v1.25): the filter table's KUBE-FIREWALL drops the marked packet
        return FrontendView(fe, service, sem.DROP, frozenset(), 0, ranges, internal_eps or None)
    if fe.kind in (sem.NODE_PORT, sem.LOCALHOST_NODE_PORT):
        # un-NATed, a node port is delivered locally: unless the filter table drops or rejects it, nothing
        # listens there and the kernel answers with a reset / port unreachable
        verdict, fservice = filter_np.get((fe.port, fe.protocol), (sem.REJECT, service))
    else:
        # un-NATed, a Service IP is routed on as plain traffic: nothing on this node answers it
        verdict, fservice, _ = filter_ip.get((fe.address, fe.port, fe.protocol), (sem.DROP, service, ""))
    return FrontendView(fe, service or fservice, verdict, frozenset(), 0, ranges, internal_eps or None)


def semantic_view_traced(dump: IptablesDump, *, address_kinds: Mapping[str, str] | None = None,
                         memo: JumpMemo | None = None, trace: bool = True) -> tuple[SemanticView, SemanticTrace | None]:
    """`semantic_view` plus (when `trace`) how it was derived, for `semantic_view_delta`."""
    with gc_paused():  # many small acyclic objects: the collector's full passes would dominate at scale
        return _semantic_view(dump, address_kinds, memo, trace)


_FilterIp = dict[tuple[str, int, str], tuple[str, str, str]]  # (addr, port, proto) -> (verdict, service, kind)
_FilterNp = dict[tuple[int, str], tuple[str, str]]  # (port, proto) -> (verdict, service)


def _filter_verdicts(filt: Table | None, parsed: dict[str, SpecRule] | None = None) -> tuple[_FilterIp, _FilterNp]:
    """Filter-table verdicts for frontends without a DNAT path (`parsed`: rules already cut apart, by text)."""
    filter_ip: _FilterIp = {}
    filter_np: _FilterNp = {}
    if filt is not None:
        for chain, kind in (("KUBE-SERVICES", sem.CLUSTER_IP), ("KUBE-EXTERNAL-SERVICES", sem.EXTERNAL_IP)):
            found = filt.chains.get(chain)
            for spec in found.specs if found is not None else ():
                r = parsed.get(spec) if parsed is not None else None
                if r is None:
                    r = parse_spec(spec)
                    if parsed is not None:
                        parsed[spec] = r
                if r.target not in ("REJECT", "DROP") or r.dport is None or not r.proto:
                    continue
                verdict = sem.REJECT if r.target == "REJECT" else sem.DROP
                service = service_from_comment(r.comment, _FILTER_SUFFIXES)
                proto = r.proto.upper()
                if r.dest and "-d" not in r.negated:
                    addr = strip_host_prefix(r.dest)
                    filter_ip.setdefault((addr, r.dport, proto), (verdict, service, kind))
                elif r.dst_type_local:
                    filter_np.setdefault((r.dport, proto), (verdict, service))
    return filter_ip, filter_np


def _add_filter_only(views: dict[Frontend, FrontendView], filter_ip: _FilterIp, filter_np: _FilterNp,
                     kinds: Mapping[str, str], localhost: bool = False) -> None:
    """Frontends the filter table rejects or drops before any nat rule exists for them (with `localhost`,
    the filter's `--dst-type LOCAL` node-port rules hold for 127.0.0.1 too)."""
    for (addr, port, proto), (verdict, service, kind) in filter_ip.items():
        if kind == sem.EXTERNAL_IP:
            kind = kinds.get(addr, sem.EXTERNAL_IP)
        fe = Frontend(kind, addr, port, proto)
        if fe not in views:
            views[fe] = FrontendView(fe, service, verdict)
    for (port, proto), (verdict, service) in filter_np.items():
        fe = Frontend(sem.NODE_PORT, "", port, proto)
        if fe not in views:
            views[fe] = FrontendView(fe, service, verdict)
        if localhost:
            fe = Frontend(sem.LOCALHOST_NODE_PORT, LOCALHOST, port, proto)
            if fe not in views:
                views[fe] = FrontendView(fe, service, verdict)


def _semantic_view(dump: IptablesDump, address_kinds: Mapping[str, str] | None,
                   memo: JumpMemo | None = None, trace: bool = False) -> tuple[SemanticView, SemanticTrace | None]:
    kinds = address_kinds or {}
    nat = dump.table("nat")
    filt = dump.table("filter")
    resolver = Resolver(nat, memo)
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
        path = resolver.resolve(target) if target else ChainPath()
        views[fe] = _frontend_view(fe, service, path, filter_ip, filter_np)

    if nat is not None:
        for r in resolver.rules("KUBE-SERVICES"):
            if not r.dest or "-d" in r.negated or r.dport is None or not r.proto or not r.target:
                continue
            if r.target in ("KUBE-NODEPORTS", *NOT_A_PATH):
                continue
            addr = strip_host_prefix(r.dest)
            kind = ""
            for suffix, k in _KIND_SUFFIXES:
                if r.comment and r.comment.endswith(suffix):
                    kind = k
                    break
            if not kind:
                if r.target.startswith("KUBE-FW-"):
                    kind = sem.LOAD_BALANCER
                elif r.target.startswith("KUBE-EXT-"):
                    kind = kinds.get(addr, sem.EXTERNAL_IP)
                else:
                    kind = kinds.get(addr, sem.CLUSTER_IP)
            service = service_from_comment(r.comment, (s for s, _ in _KIND_SUFFIXES))
            add(Frontend(kind, addr, r.dport, r.proto.upper()), service, r.target)
        nodeports = resolver.rules("KUBE-NODEPORTS")
        # The general rule first; the `-d 127.0.0.0/8` nfacct duplicates lead to the same chain.
        for r in sorted(nodeports, key=lambda x: x.dest is not None):
            if r.dport is None or not r.proto or not r.target or r.target in NOT_A_PATH:
                continue
            if r.dest and "-d" not in r.negated and _is_loopback(r.dest):
                continue  # localhost NodePorts only: without the general rule the node's own IPs get nothing
            add(Frontend(sem.NODE_PORT, "", r.dport, r.proto.upper()), service_from_comment(r.comment, ()), r.target)
        localhost = _localhost_reaches_nodeports(resolver.rules("KUBE-SERVICES"))
        if localhost:
            # 127.0.0.1:PORT from the node: the first KUBE-NODEPORTS rule that matches it (kube-proxy's nfacct
            # `-d 127.0.0.0/8` duplicate, else the general rule - both lead to the same KUBE-EXT chain)
            for r in nodeports:
                if r.dport is None or not r.proto or not r.target or r.target in NOT_A_PATH or r.negated:
                    continue
                if r.dest and not _holds_localhost(r.dest):
                    continue
                add(Frontend(sem.LOCALHOST_NODE_PORT, LOCALHOST, r.dport, r.proto.upper()),
                    service_from_comment(r.comment, ()), r.target)

    from_nat = len(views)
    _add_filter_only(views, filter_ip, filter_np, kinds, localhost)
    view = SemanticView.of(views.values())
    if not trace:
        return view, None
    complete = not resolver.cut and from_nat == len(entries)
    return view, SemanticTrace(view, dict(kinds), entries, filter_ip, filter_np, resolver._resolved,
                               resolver.deps or {}, complete, localhost=localhost)


class _Overlay(dict[str, "ChainPath"]):
    """The resolver's results for a delta: its own, else `base`'s except for the `hidden` chains
    (what a copy of `base` without them would answer, without copying 100k entries per node)."""

    def __init__(self, base: Mapping[str, ChainPath], hidden: set[str]) -> None:
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
    resolver = Resolver(nat, memo)
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
    return {fe.address: fe.kind for fe in view.frontends if fe.address and fe.kind != sem.NODE_PORT}
