"""API objects in the shape of upstream kube-proxy's proxier tests (pkg/proxy/iptables/proxier_test.go helpers)."""

from __future__ import annotations

from typing import Any

from kpdoctor.cluster.config import parse_config_text
from kpdoctor.cluster.snapshot import load_objects
from kpdoctor.proxier.context import ProxierInput, build_input

TEST_NODE = "test-node"
TEST_NODE_IP = "192.168.0.2"
FAKE_PROXIER_CONFIG = "kind: KubeProxyConfiguration\nmode: iptables\nclusterCIDR: 10.0.0.0/8\n"


def svc(ns: str, name: str, cluster_ip: str, *, type_: str = "ClusterIP", node_port: int = 0,
        etp: str | None = None, lb_ip: str | None = None, external_ips: list[str] | None = None,
        hc_port: int = 0, source_ranges: list[str] | None = None, affinity: int = 0) -> dict[str, Any]:
    port: dict[str, Any] = {"name": "p80", "port": 80, "protocol": "TCP"}
    if node_port:
        port["nodePort"] = node_port
    spec: dict[str, Any] = {"type": type_, "clusterIP": cluster_ip, "ports": [port]}
    if etp:
        spec["externalTrafficPolicy"] = etp
    if external_ips:
        spec["externalIPs"] = external_ips
    if hc_port:
        spec["healthCheckNodePort"] = hc_port
    if source_ranges:
        spec["loadBalancerSourceRanges"] = source_ranges
    if affinity:
        spec["sessionAffinity"] = "ClientIP"
        spec["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": affinity}}
    status = {"loadBalancer": {"ingress": [{"ip": lb_ip}]}} if lb_ip else {}
    return {"kind": "Service", "metadata": {"namespace": ns, "name": name}, "spec": spec, "status": status}


def eps(ns: str, name: str, *endpoints: tuple[str, str | None]) -> dict[str, Any]:
    return {
        "kind": "EndpointSlice",
        "metadata": {"namespace": ns, "name": f"{name}-1", "labels": {"kubernetes.io/service-name": name}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [ip], **({"nodeName": node} if node else {})} for ip, node in endpoints],
        "ports": [{"name": "p80", "port": 80, "protocol": "TCP"}],
    }


def fake_proxier_input(objects: list[dict[str, Any]]) -> ProxierInput:
    node = {"kind": "Node", "metadata": {"name": TEST_NODE},
            "status": {"addresses": [{"type": "InternalIP", "address": TEST_NODE_IP}]}}
    cluster = load_objects(((o, "upstream-test") for o in [*objects, node]), source="upstream-test")
    config = parse_config_text(FAKE_PROXIER_CONFIG, source="fake-proxier")
    return build_input(cluster, TEST_NODE, config=config)
