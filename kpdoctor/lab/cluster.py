"""Kubernetes objects describing the lab, so the reference proxier renders rules for *its* addresses.

The lab's rules are not hand-written: they come from the same renderer that
`kpdoctor proxier render` uses, fed a ClusterState whose Node, pod IPs and
kube-proxy ConfigMap match the namespaces `topology.Lab` builds. A packet test
then checks the renderer's output against the kernel, not against itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from kpdoctor.cluster.snapshot import load_objects
from kpdoctor.cluster.state import ClusterState
from kpdoctor.lab.topology import CLUSTER_CIDR, NODE_IP, POD_CIDR

LAB_NAMESPACE = "lab"


@dataclass(frozen=True)
class LabService:
    """One single-port TCP Service and the pod IPs behind it (all on the lab node)."""

    name: str
    cluster_ip: str
    port: int
    target_port: int
    endpoints: Sequence[str] = ()
    node_port: int = 0
    affinity_seconds: int = 0  # > 0: sessionAffinity ClientIP with this timeout
    port_name: str = "tcp"
    extra_spec: dict[str, Any] = field(default_factory=dict)


def service_object(svc: LabService, namespace: str = LAB_NAMESPACE) -> dict[str, Any]:
    port: dict[str, Any] = {"name": svc.port_name, "port": svc.port, "protocol": "TCP", "targetPort": svc.target_port}
    spec: dict[str, Any] = {
        "type": "NodePort" if svc.node_port else "ClusterIP",
        "clusterIP": svc.cluster_ip,
        "clusterIPs": [svc.cluster_ip],
        "ipFamilies": ["IPv4"],
        "ports": [port],
        "sessionAffinity": "None",
    }
    if svc.node_port:
        port["nodePort"] = svc.node_port
        spec["externalTrafficPolicy"] = "Cluster"
    if svc.affinity_seconds:
        spec["sessionAffinity"] = "ClientIP"
        spec["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": svc.affinity_seconds}}
    spec.update(svc.extra_spec)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": svc.name, "namespace": namespace},
        "spec": spec,
    }


def endpointslice_object(svc: LabService, node_name: str, namespace: str = LAB_NAMESPACE) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{svc.name}-lab",
            "namespace": namespace,
            "labels": {"kubernetes.io/service-name": svc.name},
        },
        "addressType": "IPv4",
        "endpoints": [
            {"addresses": [ip], "conditions": {"ready": True, "serving": True, "terminating": False},
             "nodeName": node_name}
            for ip in svc.endpoints
        ],
        "ports": [{"name": svc.port_name, "port": svc.target_port, "protocol": "TCP"}],
    }


def node_object(node_name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": node_name, "labels": {"kubernetes.io/hostname": node_name}},
        "spec": {"podCIDR": POD_CIDR, "podCIDRs": [POD_CIDR]},
        "status": {
            "addresses": [{"type": "InternalIP", "address": NODE_IP}, {"type": "Hostname", "address": node_name}],
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def kube_proxy_configmap(mode: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """ConfigMap kube-system/kube-proxy as kubeadm stores it, for the lab's cluster CIDR."""
    config: dict[str, Any] = {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clusterCIDR": CLUSTER_CIDR,
        "mode": "" if mode == "iptables" else mode,
    }
    config.update(extra or {})
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "kube-proxy", "namespace": "kube-system"},
        "data": {"config.conf": yaml.safe_dump(config, sort_keys=False)},
    }


def lab_cluster(
    services: Iterable[LabService], *, node_name: str, mode: str, config_extra: dict[str, Any] | None = None,
) -> ClusterState:
    objects: list[tuple[dict[str, Any], str]] = [
        (node_object(node_name), "lab:node"),
        (kube_proxy_configmap(mode, config_extra), "lab:kube-proxy"),
    ]
    for svc in services:
        objects.append((service_object(svc), f"lab:service/{svc.name}"))
        if svc.endpoints:
            objects.append((endpointslice_object(svc, node_name), f"lab:endpointslice/{svc.name}"))
    return load_objects(objects, source="lab")


def bench_service_ip(index: int) -> str:
    """The i-th bench ClusterIP in 10.96.0.0/16, skipping .0 and .255 octets and 10.96.0.1."""
    value = index + 2
    return f"10.96.{value // 250}.{value % 250 + 2}"


def bench_services(count: int, endpoints: Sequence[str], *, target_port: int, per_service: int = 1) -> list[LabService]:
    """`count` Services, each with `per_service` endpoints taken round-robin from the lab pods.

    Only the length of KUBE-SERVICES matters for the per-connection cost being
    measured, so one endpoint per Service keeps iptables-restore fast; more are possible.
    """
    if count > 250 * 250 - 4:
        raise ValueError("at most 62,000 bench Services fit the lab's service CIDR")
    result = []
    for i in range(count):
        eps = [endpoints[(i + k) % len(endpoints)] for k in range(min(per_service, len(endpoints)))]
        result.append(LabService(name=f"svc-{i:05d}", cluster_ip=bench_service_ip(i), port=80, target_port=target_port,
                                 endpoints=eps))
    return result
