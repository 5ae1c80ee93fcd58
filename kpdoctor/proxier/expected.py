"""The mode-independent expectation: per Service frontend, what a node should do with a new connection.

Computed straight from the categorized service ports (not from rendered rules),
so it can be compared with the semantic view parsed from *any* mode's
dataplane; the golden tests prove that for iptables the view parsed from real
kube-proxy output equals this.

The rules mirror kube-proxy's `syncProxyRules` decisions:
- cluster IP: internal policy endpoints (iTP=Local -> local ones); no endpoints
  at all -> reject; iTP=Local without local endpoints -> drop;
- external IPs, LoadBalancer VIPs, node ports: external policy endpoints
  (eTP=Local -> local ones: the path of traffic that does not short-circuit);
  no endpoints -> reject; eTP=Local without local endpoints -> drop;
- node ports have address "" (every address kube-proxy accepts them on);
- source ranges apply to LoadBalancer VIPs, only when the service has endpoints
  (kube-proxy builds no firewall for a rejected service), and include the VIPs
  themselves when a range contains the node's IP (kube-proxy's allowFromNode);
- affinity seconds only on DNAT verdicts;
- short-circuit (iptables and nftables, `ViewOptions.short_circuit`): an external frontend of an
  eTP=Local Service with endpoints has a KUBE-EXT / `external-` chain that sends pod traffic (the
  local-traffic detector) and node-local traffic to the cluster chain (KUBE-SVC / `service-`):
  `internal_endpoints` = the cluster endpoints, when they differ from the outside path's
  (kube-proxy's `UsesClusterEndpoints` keeps that chain for exactly this). IPVS has no such path:
  `syncEndpoint` gives every source the same virtual server;
- localhost node ports (`ViewOptions.localhost_node_ports`: iptables mode, IPv4,
  `localhostNodePorts` and nodePortAddresses holding 127.0.0.1 - the conditions of the KUBE-SERVICES
  -> KUBE-NODEPORTS tail rule in iptables/proxier.go): a `localhost-node-port` frontend 127.0.0.1:PORT
  per node port. Its traffic comes from the node, so KUBE-EXT short-circuits it to the cluster
  endpoints whatever eTP says, and the filter DROP of "no local endpoints" (INPUT/FORWARD only) never
  sees it: DNAT to the cluster endpoints, or reject without any endpoint.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from kpdoctor.dataplane import semantic as sem
from kpdoctor.dataplane.semantic import Frontend, FrontendView, SemanticView
from kpdoctor.proxier.context import ProxierInput
from kpdoctor.proxier.endpoints import ServicePortEndpoints


def _ip(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        return text.strip()


def _cidr(text: str) -> str | None:
    try:
        return str(ipaddress.ip_network(text.strip(), strict=False))
    except ValueError:
        return None


def source_ranges(spe: ServicePortEndpoints, node_ip: str | None) -> frozenset[str]:
    """The source CIDRs a LoadBalancer VIP accepts (empty = any), as the kernel prints them."""
    info = spe.info
    ranges = [c for c in (_cidr(r) for r in info.load_balancer_source_ranges) if c]
    if not ranges or not info.load_balancer_vips:
        return frozenset()
    allowed = set(ranges)
    if node_ip:
        ip = ipaddress.ip_address(node_ip)
        if any(ip.version == n.version and ip in n for n in (ipaddress.ip_network(r) for r in ranges)):
            allowed.update(f"{v}/{32 if ':' not in v else 128}" for v in info.load_balancer_vips)
    return frozenset(allowed)


@dataclass(frozen=True)
class ViewOptions:
    """What of the expectation depends on the proxy mode and its configuration (see module docstring)."""

    short_circuit: bool = True  # iptables, nftables; not IPVS
    localhost_node_ports: bool = False  # iptables, IPv4, localhostNodePorts, 127.0.0.1 in nodePortAddresses


def view_options(inp: ProxierInput) -> ViewOptions:
    """The `ViewOptions` of `inp`'s mode and configuration."""
    mode = inp.mode
    localhost = False
    if mode == "iptables" and inp.family != "IPv6" and inp.config.localhost_node_ports:
        from kpdoctor.proxier.iptables import nodeport_addresses

        localhost = nodeport_addresses(inp).contains_ipv4_loopback
    return ViewOptions(short_circuit=mode != "ipvs", localhost_node_ports=localhost)


def _verdict(has_any: bool, policy_local: bool, has_local: bool) -> str:
    """What traffic under one traffic policy meets: no endpoint at all rejects; a Local policy without a
    local endpoint drops; otherwise it is DNATed to the policy's endpoints."""
    if not has_any:
        return sem.REJECT
    if policy_local and not has_local:
        return sem.DROP
    return sem.DNAT


def service_port_views(spe: ServicePortEndpoints, node_ip: str | None = None,
                       options: ViewOptions = ViewOptions()) -> list[FrontendView]:
    """The frontends of one service port with their expected verdicts and endpoints."""
    info = spe.info
    cat = spe.categorized
    service = info.service_port_name
    proto = info.protocol
    has_any = cat.has_any
    affinity = info.session_affinity_seconds

    internal = cat.local if info.internal_policy_local else cat.cluster
    internal_verdict = _verdict(has_any, info.internal_policy_local, bool(cat.local))
    external = cat.local if info.external_policy_local else cat.cluster
    external_verdict = _verdict(has_any, info.external_policy_local, bool(cat.local))

    # eTP=Local: pods and the node short-circuit to the cluster endpoints (the KUBE-EXT chain exists
    # whenever the Service has endpoints, also without local ones)
    short_circuit: frozenset[str] | None = None
    if options.short_circuit and info.external_policy_local and has_any:
        short_circuit = frozenset(ep.key for ep in cat.cluster)

    def view(kind: str, address: str, port: int, verdict: str, eps: tuple, ranges: frozenset[str],
             internal_eps: frozenset[str] | None = None) -> FrontendView:
        dnat = verdict == sem.DNAT
        endpoints = frozenset(ep.key for ep in eps) if dnat else frozenset()
        return FrontendView(
            frontend=Frontend(kind, address, port, proto),
            service=service,
            verdict=verdict,
            endpoints=endpoints,
            affinity_seconds=affinity if dnat else 0,
            source_ranges=ranges,
            internal_endpoints=internal_eps if internal_eps != endpoints else None,
        )

    port = info.port.port
    views = [view(sem.CLUSTER_IP, _ip(info.cluster_ip), port, internal_verdict, internal, frozenset())]
    views += [view(sem.EXTERNAL_IP, _ip(eip), port, external_verdict, external, frozenset(), short_circuit)
              for eip in info.external_ips]
    ranges = source_ranges(spe, node_ip) if has_any else frozenset()
    views += [view(sem.LOAD_BALANCER, _ip(vip), port, external_verdict, external, ranges, short_circuit)
              for vip in info.load_balancer_vips]
    if info.node_port:
        views.append(view(sem.NODE_PORT, "", info.node_port, external_verdict, external, frozenset(), short_circuit))
        if options.localhost_node_ports:
            views.append(view(sem.LOCALHOST_NODE_PORT, "127.0.0.1", info.node_port, sem.DNAT if has_any else sem.REJECT,
                              cat.cluster, frozenset()))
    return views


def expected_view(inp: ProxierInput) -> SemanticView:
    """What every frontend of every programmed service port should do on `inp`'s node."""
    node_ip = inp.primary_node_ip
    options = view_options(inp)
    return SemanticView.of(v for spe in inp.service_ports() for v in service_port_views(spe, node_ip, options))
