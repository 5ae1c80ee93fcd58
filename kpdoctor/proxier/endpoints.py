"""Endpoint selection shared by every mode: kube-proxy's `endpointslicecache.go` and `topology.go`.

This is where "which pods does this node send a Service's traffic to" is
decided: readiness, serving/terminating fallback, topology hints
(PreferSameZone / PreferSameNode) and the Local traffic policies. Keeping it in
one place is what lets the three renderers and the semantic view agree.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from kpdoctor.addresses import CANONICAL_V4, IPV6, canonical_ip
from kpdoctor.cluster.model import EndpointSlice
from kpdoctor.cluster.state import ClusterState
from kpdoctor.proxier.serviceport import ServicePortInfo

PREFER_SAME_ZONE = "PreferSameZone"
PREFER_SAME_NODE = "PreferSameNode"


@dataclass(frozen=True, slots=True)
class EndpointInfo:
    ip: str
    port: int
    is_local: bool
    ready: bool
    serving: bool
    terminating: bool
    node_name: str | None = None
    zone_hints: frozenset[str] = frozenset()
    node_hints: frozenset[str] = frozenset()

    @property
    def key(self) -> str:
        """`ip:port` (`[ip]:port` for IPv6): the string kube-proxy sorts, hashes and dedups by."""
        return f"[{self.ip}]:{self.port}" if ":" in self.ip else f"{self.ip}:{self.port}"


def _family_address_type(family: str) -> str:
    return "IPv6" if family == IPV6 else "IPv4"


def endpoints_for(
    info: ServicePortInfo, slices: Iterable[EndpointSlice], node_name: str
) -> list[EndpointInfo]:
    """All endpoints of one service port from its EndpointSlices, deduplicated, sorted by `ip:port` string."""
    wanted_type = _family_address_type(info.family)
    found: dict[str, EndpointInfo] = {}
    no_hints: frozenset[str] = frozenset()
    port_name = info.port_name
    protocol = info.protocol
    canonical_v4 = CANONICAL_V4.fullmatch
    for eps in slices:
        if eps.address_type != wanted_type:
            continue
        for eport in eps.ports:
            if eport.name != port_name or eport.protocol != protocol or eport.port is None:
                continue
            port = eport.port
            for ep in eps.endpoints:
                addresses = ep.addresses
                if not addresses:
                    continue
                ip = addresses[0] if canonical_v4(addresses[0]) else canonical_ip(addresses[0])
                if ip is None:
                    continue
                ep_node = ep.node_name
                is_local = ep_node is not None and ep_node == node_name
                key = f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
                # kube-proxy dedups overlapping slices by ip:port, preferring a local copy.
                if key in found and not is_local:
                    continue
                zones = ep.hints_for_zones
                nodes = ep.hints_for_nodes
                found[key] = EndpointInfo(  # positional: this runs once per endpoint (100,000s)
                    ip, port, is_local, ep.ready, ep.serving, ep.terminating, ep_node,
                    frozenset(zones) if zones else no_hints, frozenset(nodes) if nodes else no_hints,
                )
    return [found[k] for k in sorted(found)]


def topology_mode(endpoints: list[EndpointInfo], node_name: str, zone: str) -> str:
    """`topologyModeFromHints`: hints are honoured only when *every* ready endpoint carries them."""
    has_for_node = has_for_zone = False
    all_node_hints = all_zone_hints = True
    for ep in endpoints:
        if not ep.ready:
            continue
        if not ep.zone_hints:
            all_zone_hints = False
        elif zone in ep.zone_hints:
            has_for_zone = True
        if not ep.node_hints:
            all_node_hints = False
            if not all_zone_hints:
                return ""  # neither kind of hint can apply any more (the common case: no hints at all)
        elif node_name in ep.node_hints:
            has_for_node = True
    if all_node_hints and has_for_node:
        return PREFER_SAME_NODE
    if all_zone_hints and has_for_zone:
        return PREFER_SAME_ZONE
    return ""


def _available_for_topology(ep: EndpointInfo, mode: str, node_name: str, zone: str) -> bool:
    if mode == "":
        return True
    if mode == PREFER_SAME_NODE:
        return node_name in ep.node_hints
    if mode == PREFER_SAME_ZONE:
        return zone in ep.zone_hints
    return False


def _select(endpoints: list[EndpointInfo], keep: Callable[[EndpointInfo], bool]) -> list[EndpointInfo]:
    return [ep for ep in endpoints if keep(ep)]


@dataclass(frozen=True, slots=True)
class CategorizedEndpoints:
    """`CategorizeEndpoints`' four results: what cluster- and local-policy traffic may use."""

    cluster: tuple[EndpointInfo, ...]
    local: tuple[EndpointInfo, ...]
    all_reachable: tuple[EndpointInfo, ...]  # sorted by key
    has_any: bool
    topology_mode: str = ""


def categorize(info: ServicePortInfo, endpoints: list[EndpointInfo], node_name: str, zone: str) -> CategorizedEndpoints:
    cluster: list[EndpointInfo] = []
    local: list[EndpointInfo] = []
    has_any = False
    mode = ""
    if info.uses_cluster_endpoints:
        mode = topology_mode(endpoints, node_name, zone)
        if mode == "":
            cluster = [ep for ep in endpoints if ep.ready]
        else:
            cluster = _select(endpoints, lambda ep: ep.ready and _available_for_topology(ep, mode, node_name, zone))
        if not cluster:
            cluster = _select(
                endpoints,
                lambda ep: ep.serving and ep.terminating and _available_for_topology(ep, mode, node_name, zone),
            )
        has_any = bool(cluster)
    if not info.uses_local_endpoints:
        return CategorizedEndpoints(tuple(cluster), (), tuple(cluster), has_any, mode)

    has_local_ready = has_local_serving_terminating = False
    for ep in endpoints:
        if ep.ready:
            has_any = True
            has_local_ready = has_local_ready or ep.is_local
        elif ep.serving and ep.terminating:
            has_any = True
            has_local_serving_terminating = has_local_serving_terminating or ep.is_local
    if has_local_ready:
        local = _select(endpoints, lambda ep: ep.is_local and ep.ready)
    elif has_local_serving_terminating:
        local = _select(endpoints, lambda ep: ep.is_local and ep.serving and ep.terminating)

    if not info.uses_cluster_endpoints:
        return CategorizedEndpoints((), tuple(local), tuple(local), has_any, mode)
    merged = {ep.key: ep for ep in cluster}
    merged.update({ep.key: ep for ep in local})
    return CategorizedEndpoints(tuple(cluster), tuple(local), tuple(merged[k] for k in sorted(merged)), has_any, mode)


@dataclass(frozen=True, slots=True)
class ServicePortEndpoints:
    """A service port with its endpoints, categorized for one node."""

    info: ServicePortInfo
    endpoints: tuple[EndpointInfo, ...]
    categorized: CategorizedEndpoints


def endpoints_by_service_port(
    cluster: ClusterState, infos: Iterable[ServicePortInfo], node_name: str
) -> list[ServicePortEndpoints]:
    """Categorize every service port for `node_name`; the node's zone comes from its Node labels."""
    node = cluster.node_by_name.get(node_name)
    zone = (node.zone or "") if node is not None else ""
    slices: Mapping[str, tuple[EndpointSlice, ...]] = cluster.slices_by_service
    result: list[ServicePortEndpoints] = []
    for info in infos:
        eps = endpoints_for(info, slices.get(info.service.key, ()), node_name)
        result.append(ServicePortEndpoints(info, tuple(eps), categorize(info, eps, node_name, zone)))
    return result
