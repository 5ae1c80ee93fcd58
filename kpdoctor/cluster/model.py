"""Typed, immutable view of the cluster objects kube-proxy (and Cilium) read.

Only the fields that change kube-proxy's behaviour, or that a check cites, are
kept: a 100,000-endpoint cluster must fit in memory many times over, so the raw
API objects are dropped once parsed. Every class is a frozen, slotted
dataclass; collections are tuples or read-only mappings so that a check can
never mutate what another check reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

Protocol = Literal["TCP", "UDP", "SCTP"]
_EMPTY: Mapping[str, str] = MappingProxyType({})

# kube-proxy ignores Services carrying this label unless its own --service-proxy-name matches.
SERVICE_PROXY_NAME_LABEL = "service.kubernetes.io/service-proxy-name"
HEADLESS_LABEL = "service.kubernetes.io/headless"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
ENDPOINTSLICE_CONTROLLER = "endpointslice-controller.k8s.io"
# ResourceGap kind when a namespace's Pods (outside kube-system) cannot be listed: not "Pod", so a 403 there does
# not block the checks that read kube-system's pods
WORKLOAD_PODS_GAP = "workload-pods"
ZONE_LABEL = "topology.kubernetes.io/zone"


class Namespaced:
    """A namespaced API object; its `key` is `namespace/name`, as kubectl and the reports name it."""

    __slots__ = ()
    namespace: str
    name: str

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class ServicePort:
    name: str
    protocol: Protocol
    port: int
    target_port: int | str | None = None
    node_port: int = 0


@dataclass(frozen=True, slots=True)
class LoadBalancerIngress:
    ip: str
    # "VIP" (default) or "Proxy": kube-proxy does not program Proxy-mode ingress IPs.
    ip_mode: str = "VIP"


@dataclass(frozen=True, slots=True)
class Service(Namespaced):
    namespace: str
    name: str
    type: str = "ClusterIP"
    cluster_ips: tuple[str, ...] = ()
    external_ips: tuple[str, ...] = ()
    load_balancer_ingress: tuple[LoadBalancerIngress, ...] = ()
    load_balancer_source_ranges: tuple[str, ...] = ()
    ports: tuple[ServicePort, ...] = ()
    health_check_node_port: int = 0
    session_affinity: str = "None"
    session_affinity_timeout: int = 10800
    external_traffic_policy: str = "Cluster"
    internal_traffic_policy: str = "Cluster"
    traffic_distribution: str | None = None
    ip_families: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    # spec.selector: empty for a selector-less Service (its EndpointSlices are someone else's job)
    selector: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    external_name: str = ""

    @property
    def is_headless(self) -> bool:
        return not self.cluster_ips or self.cluster_ips[0] == "None"

    @property
    def proxied(self) -> bool:
        """Whether a default kube-proxy programs this Service at all."""
        if self.type == "ExternalName" or self.is_headless:
            return False
        if self.labels.get(SERVICE_PROXY_NAME_LABEL):
            return False
        return HEADLESS_LABEL not in self.labels

    @property
    def external_policy_local(self) -> bool:
        """eTP=Local only matters for Services with external frontends (NodePort/LB/externalIPs)."""
        return self.external_traffic_policy == "Local" and (
            self.type in ("NodePort", "LoadBalancer") or bool(self.external_ips)
        )

    @property
    def internal_policy_local(self) -> bool:
        return self.internal_traffic_policy == "Local"


@dataclass(frozen=True, slots=True)
class Endpoint:
    addresses: tuple[str, ...]
    ready: bool = True
    serving: bool = True
    terminating: bool = False
    node_name: str | None = None
    zone: str | None = None
    hints_for_zones: tuple[str, ...] | None = None
    hints_for_nodes: tuple[str, ...] | None = None
    target_pod: str | None = None  # targetRef name when the target is a Pod (same namespace as the slice)


@dataclass(frozen=True, slots=True)
class EndpointPort:
    name: str
    port: int | None
    protocol: Protocol = "TCP"


@dataclass(frozen=True, slots=True)
class EndpointSlice:
    namespace: str
    name: str
    service_name: str
    address_type: str
    endpoints: tuple[Endpoint, ...] = ()
    ports: tuple[EndpointPort, ...] = ()
    source: str = ""
    managed_by: str = ""  # label endpointslice.kubernetes.io/managed-by

    @property
    def service_key(self) -> str:
        return f"{self.namespace}/{self.service_name}"


@dataclass(frozen=True, slots=True)
class NodeAddress:
    type: str
    address: str


@dataclass(frozen=True, slots=True)
class Node:
    name: str
    addresses: tuple[NodeAddress, ...] = ()
    labels: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    pod_cidrs: tuple[str, ...] = ()
    ready: bool | None = None
    kernel_version: str = ""
    kube_proxy_version: str = ""
    os_image: str = ""
    kubelet_version: str = ""
    annotations: Mapping[str, str] = field(default_factory=lambda: _EMPTY)

    @property
    def zone(self) -> str | None:
        return self.labels.get(ZONE_LABEL)

    def address_of(self, kind: str) -> str | None:
        for addr in self.addresses:
            if addr.type == kind:
                return addr.address
        return None

    @property
    def internal_ips(self) -> tuple[str, ...]:
        return tuple(a.address for a in self.addresses if a.type == "InternalIP")


@dataclass(frozen=True, slots=True)
class ConfigMap:
    namespace: str
    name: str
    data: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    source: str = ""


@dataclass(frozen=True, slots=True)
class ContainerPort:
    container_port: int
    name: str = ""
    protocol: Protocol = "TCP"


@dataclass(frozen=True, slots=True)
class Container:
    name: str
    image: str = ""
    command: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    ports: tuple[ContainerPort, ...] = ()
    env: Mapping[str, str] = field(default_factory=lambda: _EMPTY)  # literal `value`s only (no valueFrom)


@dataclass(frozen=True, slots=True)
class DaemonSet(Namespaced):
    namespace: str
    name: str
    labels: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    selector: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    containers: tuple[Container, ...] = ()
    configmap_volumes: tuple[str, ...] = ()
    node_selector: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    desired: int = 0
    current: int = 0
    ready: int = 0
    available: int = 0
    updated: int = 0
    misscheduled: int = 0


@dataclass(frozen=True, slots=True)
class ContainerStatus:
    name: str
    ready: bool = False
    restart_count: int = 0
    state: str = ""  # running | waiting | terminated
    reason: str = ""  # e.g. CrashLoopBackOff
    last_exit_code: int | None = None
    last_reason: str = ""


@dataclass(frozen=True, slots=True)
class PodCondition:
    type: str  # Ready, PodScheduled, ContainersReady, ...
    status: str  # "True" | "False" | "Unknown"
    reason: str = ""
    message: str = ""


@dataclass(frozen=True, slots=True)
class Pod(Namespaced):
    namespace: str
    name: str
    labels: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    node_name: str | None = None
    phase: str = ""
    ready: bool = False
    pod_ip: str | None = None
    host_network: bool = False
    owner_kind: str | None = None
    owner_name: str | None = None
    containers: tuple[Container, ...] = ()
    configmap_volumes: tuple[str, ...] = ()
    container_statuses: tuple[ContainerStatus, ...] = ()
    conditions: tuple[PodCondition, ...] = ()
    deleting: bool = False  # metadata.deletionTimestamp is set (terminating)

    def condition(self, kind: str) -> PodCondition | None:
        return next((c for c in self.conditions if c.type == kind), None)

    @property
    def restart_count(self) -> int:
        return sum(c.restart_count for c in self.container_statuses)


@dataclass(frozen=True, slots=True)
class ResourceGap:
    """A kind the loader could not read (e.g. RBAC 403); checks that need it say so."""

    kind: str
    reason: str
