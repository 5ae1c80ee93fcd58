"""The mode-independent meaning of a dataplane: per Service frontend, where new connections go.

iptables chains, nftables verdict maps and IPVS virtual servers are three
spellings of the same thing. Each mode's extractor turns its parsed dataplane
into a `SemanticView`, and the reference proxier produces the expected one, so
checks such as stale-endpoints are written once and `diff()` says, per
frontend, what is missing, stale or extra.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

# Frontend kinds
CLUSTER_IP = "cluster-ip"
EXTERNAL_IP = "external-ip"
LOAD_BALANCER = "load-balancer"
NODE_PORT = "node-port"
# A NodePort reached through 127.0.0.1 from the node itself (address "127.0.0.1"): only iptables mode
# programs it (IPv4, `localhostNodePorts`, nodePortAddresses holding 127.0.0.1); nftables and IPVS never do.
# Its traffic is node-local, so it takes KUBE-EXT's short-circuit: its endpoints are the cluster endpoints.
LOCALHOST_NODE_PORT = "localhost-node-port"

# Verdicts for a new connection to a frontend
DNAT = "dnat"  # load-balanced to `endpoints`
REJECT = "reject"  # no endpoints: ICMP port unreachable / TCP reset (connection refused)
DROP = "drop"  # Local policy with no local endpoints, or a source-range firewall miss


@dataclass(frozen=True, slots=True, order=True)
class Frontend:
    kind: str
    address: str  # "" for node ports (every address kube-proxy accepts NodePorts on)
    port: int
    protocol: str  # upper case: TCP / UDP / SCTP

    def __str__(self) -> str:
        addr = self.address or "*"
        if ":" in addr:
            addr = f"[{addr}]"
        return f"{self.kind} {addr}:{self.port}/{self.protocol}"


@dataclass(frozen=True, slots=True)
class FrontendView:
    """What a new connection from outside the node's pods gets at one frontend.

    `endpoints` are the DNAT targets (`ip:port`, IPv6 as `[ip]:port`) of the path
    taken by traffic that does not short-circuit: for eTP/iTP=Local that is the
    local endpoint set. `service` is the ServicePortName (`ns/name:port`).

    `internal_endpoints` are the DNAT targets of traffic that *does* short-circuit - from pods
    (kube-proxy's local-traffic detector) and from the node itself to an external frontend (external
    IP, load-balancer IP, node port) of an eTP=Local Service, which iptables and nftables send to the
    cluster endpoints - when they differ from `endpoints`; None when those sources take the same path
    (no short-circuit, or it leads to the same endpoints). With no local endpoint the verdict is the
    outside clients' (`drop`) while pods still reach `internal_endpoints`.
    """

    frontend: Frontend
    service: str
    verdict: str
    endpoints: frozenset[str] = frozenset()
    affinity_seconds: int = 0
    source_ranges: frozenset[str] = frozenset()
    internal_endpoints: frozenset[str] | None = None

    @property
    def internal_targets(self) -> frozenset[str]:
        """Where short-circuited traffic goes (`endpoints` when it takes the outside path)."""
        return self.endpoints if self.internal_endpoints is None else self.internal_endpoints


@dataclass(frozen=True)
class SemanticView:
    frontends: Mapping[Frontend, FrontendView] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def of(cls, views: Iterable[FrontendView]) -> SemanticView:
        return cls(MappingProxyType({v.frontend: v for v in views}))

    def services(self) -> set[str]:
        return {v.service for v in self.frontends.values()}


@dataclass(frozen=True, slots=True)
class FrontendDiff:
    """One difference between expected and actual for one frontend."""

    frontend: Frontend
    service: str
    # "missing-frontend" | "extra-frontend" | "missing-endpoints" | "stale-endpoints" | "verdict" | "affinity" |
    # "stale-internal-endpoints" | "missing-internal-endpoints" (the short-circuit path of pods and the node:
    # `missing` / `stale` compare `internal_targets`)
    kind: str
    expected: FrontendView | None
    actual: FrontendView | None
    missing: frozenset[str] = frozenset()  # endpoints expected but absent
    stale: frozenset[str] = frozenset()  # endpoints present but not expected


def diff(expected: SemanticView, actual: SemanticView) -> list[FrontendDiff]:
    """Differences, sorted by frontend; empty when the node does what the API says."""
    out: list[FrontendDiff] = []
    for fe in sorted(set(expected.frontends) | set(actual.frontends)):
        want = expected.frontends.get(fe)
        have = actual.frontends.get(fe)
        if have is None and want is not None:
            out.append(FrontendDiff(fe, want.service, "missing-frontend", want, None, missing=want.endpoints))
            continue
        if want is None and have is not None:
            out.append(FrontendDiff(fe, have.service, "extra-frontend", None, have, stale=have.endpoints))
            continue
        assert want is not None and have is not None
        if want.verdict != have.verdict:
            out.append(
                FrontendDiff(
                    fe, want.service, "verdict", want, have,
                    missing=want.endpoints - have.endpoints, stale=have.endpoints - want.endpoints,
                )
            )
            continue
        missing = want.endpoints - have.endpoints
        stale = have.endpoints - want.endpoints
        if stale:
            out.append(FrontendDiff(fe, want.service, "stale-endpoints", want, have, missing=missing, stale=stale))
        elif missing:
            out.append(FrontendDiff(fe, want.service, "missing-endpoints", want, have, missing=missing))
        if want.affinity_seconds != have.affinity_seconds:
            out.append(FrontendDiff(fe, want.service, "affinity", want, have))
        if want.internal_endpoints is not None or have.internal_endpoints is not None:
            want_in, have_in = want.internal_targets, have.internal_targets
            # only what the outside path's diff above has not already said
            stale_in = have_in - want_in - (have.endpoints - want.endpoints)
            missing_in = want_in - have_in - (want.endpoints - have.endpoints)
            if stale_in:
                out.append(FrontendDiff(fe, want.service, "stale-internal-endpoints", want, have,
                                        missing=missing_in, stale=stale_in))
            elif missing_in:
                out.append(FrontendDiff(fe, want.service, "missing-internal-endpoints", want, have,
                                        missing=missing_in))
    return out
