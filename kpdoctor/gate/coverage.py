"""Coverage, Service by Service: would the replacement serve everything kube-proxy serves today?

Two layers, both per node:

1. *Features*: every Service port kube-proxy programs (the reference proxier's
   `all_service_ports`) needs a Cilium feature — NodePort, external IPs,
   session affinity, socket LB for host-network clients, the health-check node
   port for eTP=Local LoadBalancers, source-range checks, IPv6, SCTP — and the
   agent's own status (not just the ConfigMap) must say it is on.
2. *Service table*: where the agent's `cilium-dbg service list -o json` is
   available, every frontend the reference proxier derives from the API must be
   there with the same backends as kube-proxy would use on that node: a
   `SemanticView` diff of the two (`kpdoctor.gate.coverage_table`).

A Service Cilium would not serve fails with its name, the node and the missing piece.
"""

from __future__ import annotations

from kpdoctor.addresses import IPV4, IPV6, join_host_port
from kpdoctor.cilium import (
    SUPPORTED_RANGE,
    AgentStatus,
    CiliumConfig,
    ServiceTable,
)
from kpdoctor.cluster.model import Service
from kpdoctor.gate.context import GateContext
from kpdoctor.gate.coverage_table import table_gaps
from kpdoctor.gate.model import GateCase, GateCondition, GateReason, blocking, unknown, warning
from kpdoctor.proxier.endpoints import ServicePortEndpoints, endpoints_by_service_port
from kpdoctor.proxier.serviceport import ServicePortInfo, all_service_ports

TITLE = "Every Service kube-proxy serves today is served by the replacement (features and service table)"


def _feature_gaps(info: ServicePortInfo, status: AgentStatus, cfg: CiliumConfig) -> list[str]:
    """What the agent lacks to serve this port the way kube-proxy does (empty when nothing)."""
    feats = status.features
    gaps: list[str] = []
    if cfg.service_proxy_name:
        gaps.append(f"cilium-config k8s-service-proxy-name={cfg.service_proxy_name!r}: Cilium serves only Services "
                    f"labelled service.kubernetes.io/service-proxy-name={cfg.service_proxy_name}, kube-proxy serves "
                    "this unlabelled one")
    if info.family == IPV6 and cfg.enable_ipv6 is not True:
        gaps.append("IPv6 frontend but cilium-config enable-ipv6 is not true")
    if info.family == IPV4 and cfg.enable_ipv4 is False:
        gaps.append("IPv4 frontend but cilium-config enable-ipv4 is false")
    if info.protocol == "SCTP" and cfg.enable_sctp is not True:
        gaps.append("SCTP port but cilium-config enable-sctp is not true")
    if not feats.socket_lb:
        gaps.append(f"ClusterIP {join_host_port(info.cluster_ip, info.port.port)}/{info.protocol} from host-network clients "
                    "(kubelet probes, hostNetwork pods) needs socket LB, which the agent reports off "
                    "(bpf-lb-sock)")
    if info.node_port:
        if not feats.node_port:
            gaps.append(f"NodePort {info.node_port}/{info.protocol} needs the NodePort feature, which the agent "
                        "reports off (enable-node-port)")
        elif feats.node_port_min and feats.node_port_max and not (
                feats.node_port_min <= info.node_port <= feats.node_port_max):
            gaps.append(f"NodePort {info.node_port} is outside the agent's node-port range "
                        f"{feats.node_port_min}-{feats.node_port_max} (node-port-range)")
    if info.load_balancer_vips and not feats.node_port:
        gaps.append(f"LoadBalancer ingress {', '.join(info.load_balancer_vips)} needs the NodePort feature, which "
                    "the agent reports off (enable-node-port)")
    if info.external_ips and not feats.external_ips:
        gaps.append(f"externalIPs {', '.join(info.external_ips)} need the external-IPs feature, which the agent "
                    "reports off (enable-external-ips)")
    if info.session_affinity_seconds and not feats.session_affinity:
        gaps.append(f"sessionAffinity ClientIP ({info.session_affinity_seconds}s) needs session affinity, which the "
                    "agent reports off (enable-session-affinity)")
    if info.health_check_node_port and cfg.health_check_node_port is False:
        gaps.append(f"externalTrafficPolicy Local with healthCheckNodePort {info.health_check_node_port}: "
                    "cilium-config enable-health-check-nodeport=false, so load balancers lose their node health "
                    "check and send traffic to nodes without endpoints")
    if info.load_balancer_source_ranges and cfg.source_range_check is False:
        gaps.append(f"loadBalancerSourceRanges {', '.join(info.load_balancer_source_ranges)} are not enforced: "
                    "cilium-config enable-svc-source-range-check=false")
    return gaps


def _port_label(info: ServicePortInfo) -> str:
    name = f" ({info.port_name})" if info.port_name else ""
    return f"{info.port.port}/{info.protocol}{name} [{info.family}]"


def service_coverage(ctx: GateContext) -> GateCondition:
    cfg = ctx.cilium_config
    infos = all_service_ports(ctx.cluster, IPV4) + all_service_ports(ctx.cluster, IPV6)
    cond_reasons: list[GateReason] = []
    if ctx.cluster.gap("Service") or ctx.cluster.gap("EndpointSlice"):
        cond_reasons.append(unknown("Services", "cannot prove: Services or EndpointSlices could not be read"))
    if cfg is None:
        cond_reasons.append(unknown("ConfigMap kube-system/cilium-config",
                                    "cannot prove coverage: cilium-config is not in the input"))
    nodes = ctx.agent_nodes
    if not nodes:
        cond_reasons.append(unknown("Nodes", "cannot prove: no nodes in the input"))
    known: dict[str, AgentStatus] = {}
    unproven: list[str] = []
    for node in nodes:
        status = ctx.agent_status(node)
        if status is None or not status.supported:
            unproven.append(node)
            why = ctx.agent_status_error(node) or (
                f"Cilium {status.version_label} is outside {SUPPORTED_RANGE}" if status else "")
            cond_reasons.append(unknown(f"Node {node}", f"cannot prove coverage on {node}: {why}"))
        else:
            known[node] = status
    tables: dict[str, ServiceTable] = {}
    no_table: list[str] = []
    for node in known:
        err = ctx.service_table_error(node)
        if err:
            cond_reasons.append(unknown(f"Node {node}", f"cannot prove frontends on {node}: {err}"))
            unproven.append(node)
            continue
        table = ctx.service_table(node)
        if table is None:
            no_table.append(node)
        else:
            tables[node] = table
    if no_table:
        cond_reasons.append(warning("Nodes", (
            "agents' service tables not collected on " + ", ".join(no_table)
            + ": features checked, frontends/backends not compared (collect `cilium-dbg service list -o json` "
            "into nodes/<node>/cilium/service-list.json)")))

    by_service: dict[str, list[ServicePortInfo]] = {}
    services: dict[str, Service] = {}
    for info in infos:
        by_service.setdefault(info.service.key, []).append(info)
        services[info.service.key] = info.service
    per_node: dict[str, dict[tuple[str, str, str], ServicePortEndpoints]] = {}
    for node in tables:
        per_node[node] = {
            (spe.info.service.key, spe.info.family, f"{spe.info.port_name}/{spe.info.protocol}/{spe.info.port.port}"):
                spe
            for spe in endpoints_by_service_port(ctx.cluster, infos, node)
        }

    cases = []
    for key in sorted(by_service):
        subject = f"Service {key}"
        reasons: list[GateReason] = []
        for info in by_service[key]:
            if cfg is not None:
                for node, status in known.items():
                    if not status.kpr_true:
                        continue  # reported by agents-kpr-mode; feature flags mean nothing without KPR
                    for gap in _feature_gaps(info, status, cfg):
                        reasons.append(blocking(subject, f"port {_port_label(info)} not served on {node}: {gap}",
                                                evidence=(f"{status.source}: kube-proxy-replacement.features",)))
                for node, table in tables.items():
                    status = known[node]
                    if not status.kpr_true:
                        continue
                    spe = per_node[node][(info.service.key, info.family,
                                          f"{info.port_name}/{info.protocol}/{info.port.port}")]
                    for problem in table_gaps(spe, table, node):
                        reasons.append(blocking(subject, f"port {_port_label(info)}: {problem}"))
        inactive = sorted(node for node, status in known.items() if not status.kpr_true)
        if inactive:
            reasons.append(blocking(subject, "not served by the replacement on " + ", ".join(inactive)
                                    + ": the agent there does not report KubeProxyReplacement True"))
        if unproven and not any(r.kind == "blocking" for r in reasons):
            reasons.append(unknown(subject, "not proven on " + ", ".join(sorted(set(unproven)))))
        if cfg is None and not reasons:
            reasons.append(unknown(subject, "not evaluated: cilium-config missing"))
        # one line per distinct problem: the same gap on 40 nodes is 40 lines, but identical lines collapse
        seen: set[tuple[str, str]] = set()
        unique = []
        for r in reasons:
            if (r.kind, r.message) not in seen:
                seen.add((r.kind, r.message))
                unique.append(r)
        cases.append(GateCase(subject, tuple(unique)))
    return GateCondition("service-coverage", TITLE, tuple(cond_reasons), cases=tuple(cases),
                         evidence=(f"{len(infos)} service ports of {len(by_service)} Services (reference proxier)",))
