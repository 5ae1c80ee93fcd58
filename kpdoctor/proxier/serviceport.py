"""Per-family service-port view, as kube-proxy's ServiceChangeTracker builds it (`pkg/proxy/service.go`).

Every mode renders from these, so a Service means the same thing to the
iptables, nftables and IPVS renderers and to the semantic view.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass

from kpdoctor.addresses import IPV4, cidr_family, ip_family
from kpdoctor.cluster.model import Service, ServicePort
from kpdoctor.cluster.state import ClusterState


@dataclass(frozen=True, slots=True)
class ServicePortInfo:
    """One port of one Service for one IP family: the unit kube-proxy programs."""

    service: Service
    port: ServicePort
    family: str
    cluster_ip: str
    external_ips: tuple[str, ...]
    load_balancer_vips: tuple[str, ...]
    load_balancer_source_ranges: tuple[str, ...]
    health_check_node_port: int

    @property
    def namespace(self) -> str:
        return self.service.namespace

    @property
    def name(self) -> str:
        return self.service.name

    @property
    def port_name(self) -> str:
        return self.port.name

    @property
    def protocol(self) -> str:
        """Upper-case, as the API writes it."""
        return self.port.protocol

    @property
    def protocol_lower(self) -> str:
        return self.port.protocol.lower()

    @property
    def service_port_name(self) -> str:
        """`ServicePortName.String()`: `ns/name` plus `:port` only when the port is named."""
        suffix = f":{self.port.name}" if self.port.name else ""
        return f"{self.service.namespace}/{self.service.name}{suffix}"

    @property
    def node_port(self) -> int:
        return self.port.node_port

    @property
    def session_affinity_seconds(self) -> int:
        """0 when there is no ClientIP affinity."""
        return self.service.session_affinity_timeout if self.service.session_affinity == "ClientIP" else 0

    @property
    def externally_accessible(self) -> bool:
        return bool(self.node_port or self.load_balancer_vips or self.external_ips)

    @property
    def external_policy_local(self) -> bool:
        return self.service.external_policy_local

    @property
    def internal_policy_local(self) -> bool:
        return self.service.internal_policy_local

    @property
    def uses_cluster_endpoints(self) -> bool:
        """Even with eTP=Local, external traffic from inside the cluster short-circuits to cluster endpoints."""
        return not self.internal_policy_local or self.externally_accessible

    @property
    def uses_local_endpoints(self) -> bool:
        return self.internal_policy_local or (self.external_policy_local and self.externally_accessible)


def service_ports(service: Service, family: str) -> Iterator[ServicePortInfo]:
    """The ports kube-proxy programs for `service` in `family`; nothing for skipped Services."""
    if not service.proxied:
        return
    cluster_ip = next((ip for ip in service.cluster_ips if ip_family(ip) == family), "")
    if not cluster_ip:
        return
    external_ips = tuple(ip for ip in service.external_ips if ip_family(ip) == family)
    vips = tuple(
        str(ipaddress.ip_address(i.ip))
        for i in service.load_balancer_ingress
        if i.ip_mode == "VIP" and ip_family(i.ip) == family
    )
    ranges = tuple(r for r in service.load_balancer_source_ranges if cidr_family(r) == family)
    needs_hc = service.type == "LoadBalancer" and service.external_traffic_policy == "Local"
    hc_port = service.health_check_node_port if needs_hc else 0
    for port in service.ports:
        yield ServicePortInfo(
            service=service,
            port=port,
            family=family,
            cluster_ip=cluster_ip,
            external_ips=external_ips,
            load_balancer_vips=vips,
            load_balancer_source_ranges=ranges,
            health_check_node_port=hc_port,
        )


def all_service_ports(cluster: ClusterState, family: str = IPV4) -> list[ServicePortInfo]:
    """All programmed service ports of the cluster, in a stable (API) order."""
    return [info for service in cluster.services for info in service_ports(service, family)]
