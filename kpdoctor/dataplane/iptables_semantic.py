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
endpoint and that has no filter rule is reported as `drop` (nothing DNATs it).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from kpdoctor.dataplane.iptables_save import IptablesDump, Table, tokenize
from kpdoctor.dataplane.semantic import (
    CLUSTER_IP,
    DNAT,
    DROP,
    EXTERNAL_IP,
    LOAD_BALANCER,
    NODE_PORT,
    REJECT,
    Frontend,
    FrontendView,
    SemanticView,
)

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


def _strip_host_prefix(addr: str) -> str:
    if addr.endswith("/32") or addr.endswith("/128"):
        addr = addr.rsplit("/", 1)[0]
    try:
        return str(ipaddress.ip_address(addr))
    except ValueError:
        return addr


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
            r.dport = int(val) if val.isdigit() else None
        elif t in ("-j", "-g", "--jump", "--goto"):
            r.target = val
        elif t == "--to-destination":
            r.to_destination = val
        elif t == "--seconds":
            r.rcheck_seconds = int(val) if val.isdigit() else None
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


class _Resolver:
    def __init__(self, nat: Table | None) -> None:
        self._nat = nat
        self._parsed: dict[str, list[_Rule]] = {}

    def rules(self, chain: str) -> list[_Rule]:
        cached = self._parsed.get(chain)
        if cached is None:
            found = self._nat.chains.get(chain) if self._nat is not None else None
            cached = [_parse(s) for s in found.specs] if found is not None else []
            self._parsed[chain] = cached
        return cached

    def resolve(self, chain: str, seen: frozenset[str] = frozenset()) -> _Path:
        path = _Path()
        if chain in seen or chain in _NOT_A_PATH:
            return path
        seen = seen | {chain}
        rules = self.rules(chain)
        if chain.startswith("KUBE-FW-"):
            for r in rules:
                if r.target and r.target not in _NOT_A_PATH and r.source and "-s" not in r.negated:
                    path.ranges.add(_cidr(r.source))
            follow = next((r.target for r in rules if r.target and r.target not in _NOT_A_PATH), None)
            if follow:
                sub = self.resolve(follow, seen)
                path.endpoints, path.affinity = sub.endpoints, sub.affinity
            return path
        if chain.startswith("KUBE-EXT-"):
            default = next(
                (r.target for r in rules if r.target and r.target not in _NOT_A_PATH and r.target != "DNAT"
                 and not r.source and not r.src_type_local and not r.in_iface and not r.negated),
                None,
            )
            if default:
                sub = self.resolve(default, seen)
                path.endpoints, path.affinity = sub.endpoints, sub.affinity
            return path
        for r in rules:
            if r.target == "DNAT" and r.to_destination:
                path.endpoints.add(_endpoint_key(r.to_destination))
            elif r.target and r.target not in _NOT_A_PATH and r.target not in ("DROP", "REJECT"):
                if r.rcheck_seconds is not None:
                    path.affinity = max(path.affinity, r.rcheck_seconds)
                sub = self.resolve(r.target, seen)
                path.endpoints |= sub.endpoints
        return path


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


def semantic_view(dump: IptablesDump, *, address_kinds: Mapping[str, str] | None = None) -> SemanticView:
    """The frontends kube-proxy's iptables rules in `dump` serve (empty when there are none)."""
    kinds = address_kinds or {}
    nat = dump.table("nat")
    filt = dump.table("filter")
    resolver = _Resolver(nat)

    # Filter-table verdicts for frontends without a DNAT path.
    filter_ip: dict[tuple[str, int, str], tuple[str, str, str]] = {}  # -> (verdict, service, kind)
    filter_np: dict[tuple[int, str], tuple[str, str]] = {}
    if filt is not None:
        for chain, kind in (("KUBE-SERVICES", CLUSTER_IP), ("KUBE-EXTERNAL-SERVICES", EXTERNAL_IP)):
            found = filt.chains.get(chain)
            for spec in found.specs if found is not None else ():
                r = _parse(spec)
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

    views: dict[Frontend, FrontendView] = {}

    def add(fe: Frontend, service: str, target: str | None) -> None:
        if fe in views:
            return  # the first matching rule wins, as in the kernel
        path = resolver.resolve(target) if target else _Path()
        ranges = frozenset(path.ranges) if fe.kind == LOAD_BALANCER else frozenset()
        if path.endpoints:
            views[fe] = FrontendView(fe, service, DNAT, frozenset(path.endpoints), path.affinity, ranges)
            return
        if fe.kind == NODE_PORT:
            verdict, fservice = filter_np.get((fe.port, fe.protocol), (DROP, service))
        else:
            verdict, fservice, _ = filter_ip.get((fe.address, fe.port, fe.protocol), (DROP, service, ""))
        views[fe] = FrontendView(fe, service or fservice, verdict, frozenset(), 0, ranges)

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
            add(Frontend(NODE_PORT, "", r.dport, r.proto.upper()), _service_from_comment(r.comment, ()), r.target)

    # Frontends the filter table rejects or drops before any nat rule exists for them.
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
    return SemanticView.of(views.values())


def address_kinds_of(view: SemanticView) -> dict[str, str]:
    """address -> frontend kind, from an (expected) view: the `address_kinds` argument."""
    return {fe.address: fe.kind for fe in view.frontends if fe.address and fe.kind != NODE_PORT}
