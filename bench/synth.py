"""Synthetic clusters for benchmarks: N Services x M endpoints x K nodes, with a realistic mix.

The objects are Kubernetes API dicts (as `kubectl get -o json` serves them) so
the same generator feeds the snapshot loader, the reference proxier and a real
kube-apiserver alike. Deterministic for a given `SynthSpec` (seeded).

Function API:
    spec = SynthSpec(services=10_000, endpoints=10, nodes=10)
    objs = synth_objects(spec)         # {"services": [...], "endpointslices": [...], "nodes": [...], ...}
    cluster = synth_cluster(spec)      # kpdoctor ClusterState
    write_snapshot(spec, "/tmp/snap")  # one List file per kind

CLI:
    python3 bench/synth.py --services 10000 --endpoints 10 --nodes 10 --out /tmp/snap
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SERVICE_BASE = int(ipaddress.ip_address("10.96.0.10"))  # cluster IPs 10.96.0.0/12
POD_BASE = int(ipaddress.ip_address("10.64.0.10"))  # pod IPs from 10.64.0.0/10 (4M addresses)
POD_CIDR = "10.64.0.0/10"
NODE_BASE = int(ipaddress.ip_address("172.20.0.10"))
LB_BASE = int(ipaddress.ip_address("198.18.0.10"))  # RFC 2544 benchmarking range
EXTERNAL_BASE = int(ipaddress.ip_address("198.19.0.10"))
NODE_PORT_FIRST, NODE_PORT_LAST = 30000, 32767
SLICE_MAX = 100  # the EndpointSlice controller's default maxEndpointsPerSlice


@dataclass(frozen=True)
class SynthSpec:
    services: int = 1000
    endpoints: int = 10  # per Service
    nodes: int = 10
    namespaces: int = 20
    nodeport_fraction: float = 0.15  # type NodePort
    loadbalancer_fraction: float = 0.05  # type LoadBalancer (with an ingress IP)
    local_fraction: float = 0.3  # of NodePort/LoadBalancer Services: externalTrafficPolicy Local
    affinity_fraction: float = 0.05  # sessionAffinity ClientIP
    external_ip_fraction: float = 0.01
    terminating_fraction: float = 0.0  # endpoints that are terminating (serving, not ready)
    seed: int = 1
    cluster_cidr: str = POD_CIDR

    def node_name(self, k: int) -> str:
        return f"node-{k:04d}"


def _ip(value: int) -> str:
    return str(ipaddress.ip_address(value))


def _nodes(spec: SynthSpec) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": spec.node_name(k),
                "labels": {"kubernetes.io/hostname": spec.node_name(k), "topology.kubernetes.io/zone": f"zone-{k % 3}"},
            },
            "spec": {"podCIDR": f"10.{64 + (k // 256) % 64}.{k % 256}.0/24"},
            "status": {"addresses": [{"type": "InternalIP", "address": _ip(NODE_BASE + k)},
                                     {"type": "Hostname", "address": spec.node_name(k)}]},
        }
        for k in range(spec.nodes)
    ]


def _kube_proxy_configmap(spec: SynthSpec) -> dict[str, Any]:
    config = (
        "apiVersion: kubeproxy.config.k8s.io/v1alpha1\n"
        "kind: KubeProxyConfiguration\n"
        f"clusterCIDR: {spec.cluster_cidr}\n"
        "mode: \"\"\n"
    )
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"namespace": "kube-system", "name": "kube-proxy"},
        "data": {"config.conf": config},
    }


def synth_objects(spec: SynthSpec) -> dict[str, list[dict[str, Any]]]:
    """API objects by kind: services, endpointslices, nodes, configmaps."""
    rng = random.Random(spec.seed)
    services: list[dict[str, Any]] = []
    slices: list[dict[str, Any]] = []
    next_node_port = NODE_PORT_FIRST
    pod = 0
    lb = 0
    ext = 0
    for i in range(spec.services):
        ns = f"ns-{i % spec.namespaces:03d}"
        name = f"svc-{i:06d}"
        roll = rng.random()
        svc_type = "ClusterIP"
        if roll < spec.loadbalancer_fraction:
            svc_type = "LoadBalancer"
        elif roll < spec.loadbalancer_fraction + spec.nodeport_fraction:
            svc_type = "NodePort"
        if svc_type != "ClusterIP" and next_node_port > NODE_PORT_LAST:
            svc_type = "ClusterIP"  # the node port range is exhausted
        port: dict[str, Any] = {"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080}
        svc_spec: dict[str, Any] = {"type": svc_type, "clusterIP": _ip(SERVICE_BASE + i),
                                    "clusterIPs": [_ip(SERVICE_BASE + i)], "ports": [port],
                                    "sessionAffinity": "None", "internalTrafficPolicy": "Cluster"}
        status: dict[str, Any] = {"loadBalancer": {}}
        if svc_type != "ClusterIP":
            port["nodePort"] = next_node_port
            next_node_port += 1
            local = rng.random() < spec.local_fraction
            svc_spec["externalTrafficPolicy"] = "Local" if local else "Cluster"
            if svc_type == "LoadBalancer":
                status["loadBalancer"] = {"ingress": [{"ip": _ip(LB_BASE + lb), "ipMode": "VIP"}]}
                lb += 1
                if local and next_node_port <= NODE_PORT_LAST:
                    svc_spec["healthCheckNodePort"] = next_node_port
                    next_node_port += 1
        if rng.random() < spec.external_ip_fraction:
            svc_spec["externalIPs"] = [_ip(EXTERNAL_BASE + ext)]
            ext += 1
        if rng.random() < spec.affinity_fraction:
            svc_spec["sessionAffinity"] = "ClientIP"
            svc_spec["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": 10800}}
        services.append({"apiVersion": "v1", "kind": "Service", "metadata": {"namespace": ns, "name": name},
                         "spec": svc_spec, "status": status})
        endpoints = []
        for _ in range(spec.endpoints):
            terminating = rng.random() < spec.terminating_fraction
            endpoints.append({
                "addresses": [_ip(POD_BASE + pod)],
                "conditions": {"ready": not terminating, "serving": True, "terminating": terminating},
                "nodeName": spec.node_name(pod % spec.nodes),
            })
            pod += 1
        for s, start in enumerate(range(0, len(endpoints), SLICE_MAX)):
            slices.append({
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {"namespace": ns, "name": f"{name}-{s:02d}",
                             "labels": {"kubernetes.io/service-name": name}},
                "addressType": "IPv4",
                "endpoints": endpoints[start:start + SLICE_MAX],
                "ports": [{"name": "http", "protocol": "TCP", "port": 8080}],
            })
    return {"services": services, "endpointslices": slices, "nodes": _nodes(spec),
            "configmaps": [_kube_proxy_configmap(spec)]}


def synth_cluster(spec: SynthSpec) -> Any:
    """A kpdoctor `ClusterState` of the synthetic cluster (through the real object parser)."""
    from kpdoctor.cluster.snapshot import load_objects

    objs = synth_objects(spec)
    return load_objects(((o, f"synth:{kind}") for kind, items in objs.items() for o in items), source="synth")


def write_snapshot(spec: SynthSpec, directory: str | Path) -> Path:
    """Write one `kubectl get -o json`-style List per kind into `directory`."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    for kind, items in synth_objects(spec).items():
        with open(out / f"{kind}.json", "w", encoding="utf-8") as handle:
            json.dump({"apiVersion": "v1", "kind": "List", "items": items}, handle)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--endpoints", type=int, default=10)
    parser.add_argument("--nodes", type=int, default=10)
    parser.add_argument("--nodeport-fraction", type=float, default=SynthSpec.nodeport_fraction)
    parser.add_argument("--loadbalancer-fraction", type=float, default=SynthSpec.loadbalancer_fraction)
    parser.add_argument("--local-fraction", type=float, default=SynthSpec.local_fraction)
    parser.add_argument("--affinity-fraction", type=float, default=SynthSpec.affinity_fraction)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", required=True, help="snapshot directory to write")
    args = parser.parse_args(argv)
    spec = SynthSpec(services=args.services, endpoints=args.endpoints, nodes=args.nodes,
                     nodeport_fraction=args.nodeport_fraction, loadbalancer_fraction=args.loadbalancer_fraction,
                     local_fraction=args.local_fraction, affinity_fraction=args.affinity_fraction, seed=args.seed)
    path = write_snapshot(spec, args.out)
    print(f"wrote {spec.services} Services x {spec.endpoints} endpoints x {spec.nodes} nodes to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
