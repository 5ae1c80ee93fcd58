"""The gate's service-table coverage as a `SemanticView` diff: what kube-proxy serves for one Service port on a node
vs what a Cilium agent's service table serves there.

kube-proxy's side is the same `SemanticView` the checks compare against (`kpdoctor.dataplane.semantic`): one
`FrontendView` per frontend of the port (ClusterIP, NodePort, load-balancer and external IPs), whose `endpoints`
are the backends kube-proxy uses on that node (`kpdoctor.proxier.endpoints`: readiness, terminating fallback, Local
policies) and whose `internal_endpoints` are where in-cluster clients of an external frontend go when that differs
(kube-proxy's KUBE-EXT short-circuit; Cilium's internal-scope copy of the frontend). Cilium keeps one table entry
per address the frontend listens on (a NodePort on every node address), so each entry is read as a `FrontendView`
of the kube-proxy frontend it serves and `diff`ed against kube-proxy's view of that frontend, for its scope.

Topology hints are accepted either way: kube-proxy honours them by default, Cilium only with
`enable-service-topology`, and both serve the Service (`alternative`, the hint-free view).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from kpdoctor.addresses import join_host_port
from kpdoctor.cilium import TYPE_LOCAL_REDIRECT, CiliumFrontend, ServiceTable
from kpdoctor.dataplane import semantic as sem
from kpdoctor.dataplane.semantic import Frontend, FrontendDiff, FrontendView, SemanticView, diff
from kpdoctor.proxier.endpoints import EndpointInfo, ServicePortEndpoints


def _keys(endpoints: Iterable[EndpointInfo]) -> frozenset[str]:
    return frozenset(ep.key for ep in endpoints)


def _backends(spe: ServicePortEndpoints, local: bool) -> tuple[frozenset[str], frozenset[str] | None]:
    """The backend keys kube-proxy uses on this node (cluster or local set), and the hint-free alternative when
    topology hints are in use (None otherwise)."""
    cat = spe.categorized
    chosen = _keys(cat.local if local else cat.cluster)
    alt: frozenset[str] | None = None
    if cat.topology_mode and not local:
        ready = [ep for ep in spe.endpoints if ep.ready]
        alt = _keys(ready or [ep for ep in spe.endpoints if ep.serving and ep.terminating])
    return chosen, alt


def _view(frontend: Frontend, service: str, endpoints: frozenset[str],
          internal: frozenset[str] | None = None) -> FrontendView:
    """A frontend's view from its backends alone (the verdict follows them: Cilium's table tells no more, so
    kube-proxy's DROP of an eTP=Local port without local endpoints is REJECT on both sides here)."""
    return FrontendView(frontend, service, sem.DNAT if endpoints else sem.REJECT, endpoints,
                        internal_endpoints=None if internal is None or internal == endpoints else internal)


@dataclass(frozen=True)
class PortViews:
    """kube-proxy's view of one Service port on one node, and the hint-free alternative (None without hints)."""

    expected: SemanticView
    alternative: SemanticView | None


def kube_proxy_views(spe: ServicePortEndpoints) -> PortViews:
    """What kube-proxy serves for `spe` on its node, frontend by frontend (ClusterIP first, then NodePort,
    load-balancer and external IPs in the Service's order)."""
    info = spe.info
    proto, port, service = info.protocol, info.port.port, info.service_port_name
    cluster_ip = Frontend(sem.CLUSTER_IP, info.cluster_ip, port, proto)
    external = ([Frontend(sem.NODE_PORT, "", info.node_port, proto)] if info.node_port else []) + [
        Frontend(sem.LOAD_BALANCER, vip, port, proto) for vip in info.load_balancer_vips] + [
        Frontend(sem.EXTERNAL_IP, eip, port, proto) for eip in info.external_ips]
    cip, cip_alt = _backends(spe, local=info.internal_policy_local)
    ext, ext_alt = _backends(spe, local=info.external_policy_local)
    # In-cluster traffic to an external frontend short-circuits to the cluster endpoints (kube-proxy's KUBE-EXT
    # chain; Cilium's internal-scope copy of an eTP=Local frontend).
    internal, internal_alt = _backends(spe, local=False)
    expected = SemanticView.of([_view(cluster_ip, service, cip)] + [_view(f, service, ext, internal) for f in external])
    if cip_alt is None and ext_alt is None and internal_alt is None:
        return PortViews(expected, None)
    alternative = SemanticView.of(
        ([_view(cluster_ip, service, cip_alt)] if cip_alt is not None else [])
        + [_view(f, service, ext if ext_alt is None else ext_alt, internal if internal_alt is None else internal_alt)
           for f in external])
    return PortViews(expected, alternative)


def agent_entries(table: ServiceTable, frontend: Frontend) -> list[CiliumFrontend]:
    """The agent's table entries that serve `frontend` (a NodePort: one per address it listens on)."""
    if frontend.kind == sem.NODE_PORT:
        return table.node_ports(frontend.port, frontend.protocol)
    return table.at(frontend.address, frontend.port, frontend.protocol)


def _scoped(view: FrontendView, internal: bool) -> FrontendView:
    """What one table entry of `view`'s frontend must hold: the outside path, or the in-cluster one."""
    return _view(view.frontend, view.service, view.internal_targets if internal else view.endpoints)


def entry_diff(want: FrontendView, alternative: FrontendView | None, entry: CiliumFrontend) -> FrontendDiff | None:
    """`diff` of kube-proxy's view of a frontend (for the entry's scope) and the entry's; None when the entry
    serves what kube-proxy does (or the hint-free alternative)."""
    internal = entry.scope == "internal" and want.frontend.kind != sem.CLUSTER_IP
    have = SemanticView.of([_view(want.frontend, want.service, entry.serving_backends)])
    diffs = diff(SemanticView.of([_scoped(want, internal)]), have)
    if diffs and alternative is not None and not diff(SemanticView.of([_scoped(alternative, internal)]), have):
        return None
    return diffs[0] if diffs else None


def _entry_problem(what: str, entry: CiliumFrontend, d: FrontendDiff, node: str, table: ServiceTable) -> str:
    parts = []
    if d.missing:
        parts.append(f"missing backends {', '.join(sorted(d.missing))}")
    if d.stale:
        parts.append(f"backends kube-proxy would not use {', '.join(sorted(d.stale))}")
    return f"{what} {entry.label} on {node}: {'; '.join(parts)} ({table.source})"


def _label(f: Frontend) -> str:
    if f.kind == sem.NODE_PORT:
        return f"NodePort frontend *:{f.port}/{f.protocol}"
    kind = {sem.LOAD_BALANCER: "LoadBalancer", sem.EXTERNAL_IP: "externalIP", sem.CLUSTER_IP: "ClusterIP"}[f.kind]
    return f"{kind} frontend {join_host_port(f.address, f.port)}/{f.protocol}"


def table_gaps(spe: ServicePortEndpoints, table: ServiceTable, node: str) -> list[str]:
    """What the agent's table on `node` serves differently from kube-proxy for this Service port (empty: same)."""
    views = kube_proxy_views(spe)
    alternative = views.alternative.frontends if views.alternative is not None else {}
    two_scopes = spe.info.external_policy_local != spe.info.internal_policy_local
    problems: list[str] = []
    for frontend, want in views.expected.frontends.items():
        entries = agent_entries(table, frontend)
        alt = alternative.get(frontend)
        if frontend.kind == sem.CLUSTER_IP:
            if any(fe.type == TYPE_LOCAL_REDIRECT for fe in entries):
                return []  # a LocalRedirectPolicy deliberately overrides this Service on this node
            if not entries:
                if want.endpoints:
                    problems.append(f"{_label(frontend)} is missing from the agent's service table on {node} "
                                    f"({table.source})")
                continue
            problems += [_entry_problem("ClusterIP frontend", fe, d, node, table)
                         for fe in entries if (d := entry_diff(want, alt, fe)) is not None]
            continue
        outside = [fe for fe in entries if fe.scope != "internal"]
        inside = [fe for fe in entries if fe.scope == "internal"]
        if not outside:
            problems.append(f"{_label(frontend)} is missing from the agent's service table on {node} ({table.source})")
            continue
        if two_scopes and not inside:
            problems.append(f"{_label(frontend)}: the internal-scope copy that sends in-cluster clients to all "
                            f"endpoints (externalTrafficPolicy Local) is missing on {node} ({table.source})")
        problems += [_entry_problem("frontend", fe, d, node, table)
                     for fe in outside + inside if (d := entry_diff(want, alt, fe)) is not None]
    return problems
