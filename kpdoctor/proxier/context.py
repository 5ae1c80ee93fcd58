"""The input of every reference-proxier renderer: what one kube-proxy on one node knows.

kube-proxy's output depends on the cluster objects *and* on node-local facts
(its node name, the node's IPs for nodePortAddresses / "primary", its zone) and
its configuration, so the three are bundled here once and every mode renders
from the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kpdoctor.addresses import IPV4, ip_family
from kpdoctor.cluster.config import KubeProxyConfig
from kpdoctor.cluster.kube_proxy_node import ProxyMode
from kpdoctor.cluster.state import ClusterState
from kpdoctor.errors import InputError
from kpdoctor.proxier.endpoints import ServicePortEndpoints, endpoints_by_service_port
from kpdoctor.proxier.serviceport import all_service_ports

DEFAULT_VERSION = (1, 36)


@dataclass(frozen=True)
class ProxierInput:
    cluster: ClusterState
    node_name: str
    config: KubeProxyConfig  # already defaulted (`with_defaults()`)
    family: str = IPV4
    node_ips: tuple[str, ...] = ()  # the node's addresses of this family (InternalIP first)
    version: tuple[int, int] = DEFAULT_VERSION
    _service_ports: list[ServicePortEndpoints] = field(default_factory=list, compare=False, repr=False)

    @property
    def mode(self) -> str:
        return self.config.effective_mode

    @property
    def primary_node_ip(self) -> str | None:
        return self.node_ips[0] if self.node_ips else None

    def service_ports(self) -> list[ServicePortEndpoints]:
        """Every programmed service port with its categorized endpoints (computed once)."""
        if not self._service_ports:
            self._service_ports.extend(
                endpoints_by_service_port(self.cluster, all_service_ports(self.cluster, self.family), self.node_name)
            )
        return self._service_ports


def build_input(
    cluster: ClusterState,
    node_name: str,
    *,
    config: KubeProxyConfig | None = None,
    mode: ProxyMode | None = None,
    family: str = IPV4,
    version: tuple[int, int] | None = None,
) -> ProxierInput:
    """Resolve the node, its config (pod -> DaemonSet -> ConfigMap unless given) and its IPs."""
    node = cluster.node_by_name.get(node_name)
    if node is None:
        known = ", ".join(sorted(cluster.node_by_name)) or "none"
        raise InputError(f"no Node named {node_name!r} in the snapshot (nodes: {known})", where=cluster.source or None)
    if config is None:
        found = cluster.proxy_config_for(node_name)
        if found is None:
            raise InputError(
                "no kube-proxy configuration found (no kube-proxy pod/DaemonSet ConfigMap and no "
                "ConfigMap kube-system/kube-proxy key config.conf); pass --config FILE",
                where=cluster.source or None,
            )
        config = found.config
    if mode:
        from dataclasses import replace

        config = replace(config, mode=mode)
    node_ips = tuple(
        a.address for a in sorted(node.addresses, key=lambda a: a.type != "InternalIP")
        if a.type in ("InternalIP", "ExternalIP") and ip_family(a.address) == family
    )
    return ProxierInput(
        cluster=cluster,
        node_name=node_name,
        config=config.with_defaults(),
        family=family,
        node_ips=node_ips,
        version=version or cluster.kube_proxy_version() or DEFAULT_VERSION,
    )
