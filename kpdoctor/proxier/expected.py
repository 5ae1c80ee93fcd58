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
- affinity seconds only on DNAT verdicts.
"""

from __future__ import annotations

import ipaddress

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


def service_port_views(spe: ServicePortEndpoints, node_ip: str | None = None) -> list[FrontendView]:
    """The frontends of one service port with their expected verdicts and endpoints."""
    info = spe.info
    cat = spe.categorized
    service = info.service_port_name
    proto = info.protocol
    has_any = cat.has_any
    affinity = info.session_affinity_seconds

    internal = cat.local if info.internal_policy_local else cat.cluster
    if not has_any:
        internal_verdict = REJECT
    elif info.internal_policy_local and not cat.local:
        internal_verdict = DROP
    else:
        internal_verdict = DNAT
    external = cat.local if info.external_policy_local else cat.cluster
    if not has_any:
        external_verdict = REJECT
    elif info.external_policy_local and not cat.local:
        external_verdict = DROP
    else:
        external_verdict = DNAT

    def view(kind: str, address: str, port: int, verdict: str, eps: tuple, ranges: frozenset[str]) -> FrontendView:
        dnat = verdict == DNAT
        return FrontendView(
            frontend=Frontend(kind, address, port, proto),
            service=service,
            verdict=verdict,
            endpoints=frozenset(ep.key for ep in eps) if dnat else frozenset(),
            affinity_seconds=affinity if dnat else 0,
            source_ranges=ranges,
        )

    port = info.port.port
    views = [view(CLUSTER_IP, _ip(info.cluster_ip), port, internal_verdict, internal, frozenset())]
    views += [view(EXTERNAL_IP, _ip(eip), port, external_verdict, external, frozenset()) for eip in info.external_ips]
    ranges = source_ranges(spe, node_ip) if has_any else frozenset()
    views += [view(LOAD_BALANCER, _ip(vip), port, external_verdict, external, ranges)
              for vip in info.load_balancer_vips]
    if info.node_port:
        views.append(view(NODE_PORT, "", info.node_port, external_verdict, external, frozenset()))
    return views


def expected_view(inp: ProxierInput) -> SemanticView:
    """What every frontend of every programmed service port should do on `inp`'s node."""
    node_ip = inp.primary_node_ip
    return SemanticView.of(v for spe in inp.service_ports() for v in service_port_views(spe, node_ip))
