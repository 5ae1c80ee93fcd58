"""A seeded generator of Service/EndpointSlice sets for fidelity runs against real kube-proxy.

`generate(seed, services, nodes)` returns API objects (and LoadBalancer statuses) covering what
kube-proxy renders differently: ClusterIP / NodePort / LoadBalancer / ExternalName, externalTrafficPolicy
and internalTrafficPolicy Local, ClientIP affinity, ready / serving-terminating / not-serving endpoints,
topology hints, loadBalancerSourceRanges, externalIPs, Services without endpoints, named multi-port
Services, UDP/SCTP-free TCP+UDP ports. Same seed, same objects: a failing case is replayed by its seed.
ClusterIPs and NodePorts are chosen here (deterministic, collision-free), not by the API server.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

NAMESPACE = "gen"


@dataclass
class Generated:
    objects: list[dict[str, Any]] = field(default_factory=list)
    # (namespace, name) -> status.loadBalancer, applied through /status after the Service exists
    lb_status: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    endpoints: int = 0


def cluster_ip(i: int) -> str:
    value = i + 100  # 10.96.0.1 is the kubernetes Service; keep clear of it
    return f"10.96.{value // 250}.{value % 250 + 2}"


def generate(seed: int, services: int, nodes: list[str], *, endpoints_per_service: int = 3) -> Generated:
    rnd = random.Random(seed)
    out = Generated()
    out.objects.append({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
    for i in range(services):
        name = f"s{i:05d}"
        kind = rnd.choice(["ClusterIP", "ClusterIP", "NodePort", "LoadBalancer"])
        ports = [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]
        if rnd.random() < 0.2:
            ports.append({"name": "dns", "port": 53, "targetPort": 5353, "protocol": "UDP"})
        spec: dict[str, Any] = {"type": kind, "clusterIP": cluster_ip(i), "clusterIPs": [cluster_ip(i)],
                                "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack", "ports": ports}  # fmt: skip
        if kind != "ClusterIP":
            for k, p in enumerate(ports):
                p["nodePort"] = 30000 + (i * 2 + k) % 2000
            if rnd.random() < 0.3:
                spec["externalTrafficPolicy"] = "Local"
                if kind == "LoadBalancer":  # chosen here too, or the API server's random pick may collide
                    spec["healthCheckNodePort"] = 32000 + i % 700
        if kind == "LoadBalancer":
            if rnd.random() < 0.4:
                spec["loadBalancerSourceRanges"] = [f"192.0.2.{rnd.randrange(0, 256, 16)}/28"]
            out.lb_status[(NAMESPACE, name)] = {"ingress": [{"ip": f"203.0.113.{i % 250 + 1}"}]}
        if rnd.random() < 0.1:
            spec["externalIPs"] = [f"198.51.100.{i % 250 + 1}"]
        if rnd.random() < 0.15:
            spec["internalTrafficPolicy"] = "Local"
        if rnd.random() < 0.15:
            spec["sessionAffinity"] = "ClientIP"
            spec["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": rnd.choice([10800, 60])}}
        out.objects.append({"apiVersion": "v1", "kind": "Service",
                            "metadata": {"name": name, "namespace": NAMESPACE}, "spec": spec})  # fmt: skip
        if rnd.random() < 0.1:
            continue  # a Service without endpoints
        hints = rnd.random() < 0.1
        eps = []
        for e in range(rnd.randint(1, endpoints_per_service)):
            n = rnd.randrange(len(nodes))
            state = rnd.choices(["ready", "terminating", "notserving"], [0.8, 0.1, 0.1])[0]
            ep: dict[str, Any] = {
                "addresses": [f"10.244.{n + 1}.{(i * 7 + e) % 200 + 20}"], "nodeName": nodes[n],
                "conditions": {"ready": state == "ready", "serving": state != "notserving",
                               "terminating": state == "terminating"},
            }  # fmt: skip
            if hints:
                ep["zone"] = "zone-a"
                ep["hints"] = {"forZones": [{"name": "zone-a"}]}
            eps.append(ep)
        out.endpoints += len(eps)
        out.objects.append({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{name}-gen", "namespace": NAMESPACE,
                         "labels": {"kubernetes.io/service-name": name,
                                    "endpointslice.kubernetes.io/managed-by": "kpdoctor-lab"}},
            "addressType": "IPv4", "endpoints": eps,
            "ports": [{"name": p["name"], "port": p["targetPort"], "protocol": p["protocol"]} for p in ports],
        })  # fmt: skip

    return out
