"""The reference proxier's expectation per node, with its node-independent part computed once per scan.

`kpdoctor.proxier.expected.expected_view(build_input(cluster, node))` is the definition;
`SharedExpectation` gives the same views for every node of a scan without recomputing the service
ports whose views do not depend on the node.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from kpdoctor.cluster.state import ClusterState
from kpdoctor.dataplane.semantic import DROP, NODE_PORT, FrontendView, SemanticView

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

    def node_port_drops(self) -> list[tuple[Any, FrontendView]]:
        """The view's NodePort frontends that DROP: `(fe, view)` for each, in no particular order.

        The set `[(fe, v) for fe, v in self.view.frontends.items() if fe.kind == NODE_PORT and
        v.verdict == DROP]`, without walking every frontend per node: the node-independent ones once
        per scan, the node's own (node-dependent service ports) per node."""
        frontends = self.view.frontends
        template = self.shared.template
        if template is None or self.kinds is None:
            return [(fe, v) for fe, v in frontends.items() if fe.kind == NODE_PORT and v.verdict == DROP]
        # The view's keys are the template's (written over by the node's views) plus any node view's own.
        keys = list(self.shared.node_port_keys())
        keys += {v.frontend for group in self.node_views for v in group
                 if v.frontend.kind == NODE_PORT and v.frontend not in template}
        out = []
        for fe in keys:
            v = frontends.get(fe)
            if v is not None and v.verdict == DROP:
                out.append((fe, v))
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

    @property
    def template(self) -> Mapping[Any, FrontendView] | None:
        """Every node's frontend keys in order (None when two service ports share a frontend)."""
        return self._template

    def node_port_keys(self) -> list[Any]:
        """The template's NodePort frontends (computed once per scan)."""
        if self._node_port_keys is None:
            self._node_port_keys = [fe for fe in self._template or () if fe.kind == NODE_PORT]
        return self._node_port_keys

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


