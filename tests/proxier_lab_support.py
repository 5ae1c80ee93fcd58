"""Plumbing for test_checks_vs_proxier (no tests here): generated clusters, a lab node, collection, scan.

The cluster generator follows the one in test_cross_mode.py (same Service mix, same address plan), plus
what a scan needs to treat the cluster as a real one: a kube-proxy ConfigMap with the mode under test, the
kube-proxy DaemonSet and one ready kube-proxy pod per node, and 2-3 nodes with pod CIDRs.

The lab node is a fresh network namespace with the Node's InternalIP on an `eth0` and the sysctls kube-proxy
relies on; the reference proxier's rules for that node are loaded with the real iptables-nft-restore or
`nft -f` (`kpdoctor.lab.apply`). Its facts are collected by kpdoctor's own collector (`collect_node`, local
transport) running *inside* the namespace under `ip netns exec`, exactly as `kpdoctor collect --transport
local` runs on a node, written as a bundle and read back with `read_bundle`.

kube-proxy itself does not run in the lab, so its HTTP surfaces answer "connection refused" there. They are
replaced by the real ones recorded from kube-proxy v1.36.2 in bundle B1 (edge-1 for iptables mode, edge-2
for nftables mode); the per-Service health-check node port answers (served by kube-proxy too) cannot be
replayed for generated Services and are left out.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml
from hypothesis import strategies as st

from kpdoctor.cluster.snapshot import load_objects
from kpdoctor.cluster.state import ClusterState
from kpdoctor.engine import run_checks
from kpdoctor.findings import Finding, Severity
from kpdoctor.lab import netns as labns
from kpdoctor.node.bundle import read_bundle
from kpdoctor.node.state import Fact, NodeState
from kpdoctor.registry import discover

HERE = Path(__file__).parent
REPO = HERE.parent
B1_NODES = HERE / "fixtures" / "bundles" / "B1-healthy" / "bundle" / "nodes"
RECORDED_KUBE_PROXY = {"iptables": "edge-1", "nftables": "edge-2"}  # B1 node whose kube-proxy ran in that mode
KUBE_PROXY_HTTP_FACTS = ("healthz.json", "metrics.txt", "proxyMode.txt", "configz.json")
HEALTH_CHECK_FACT = "kube-proxy/healthcheck-nodeports.json"

LAB_NODE = "n1"  # the node whose rules are rendered and loaded into the lab namespace
ALL_NODES = ("n1", "n2", "n3")
CLUSTER_CIDR = "10.244.0.0/16"


def node_ip(name: str) -> str:
    return f"10.77.0.{ALL_NODES.index(name) + 1}"


def pod_cidr(name: str) -> str:
    return f"10.244.{ALL_NODES.index(name) + 1}.0/24"


# ----------------------------------------------------------------------------- cluster generator
READY = {"ready": True, "serving": True, "terminating": False}
TERMINATING = {"ready": False, "serving": True, "terminating": True}
NOT_READY = {"ready": False, "serving": False, "terminating": False}


@st.composite
def _endpoint(draw: st.DrawFn, nodes: tuple[str, ...], svc: int, k: int) -> dict[str, Any]:
    node = draw(st.sampled_from(nodes))
    conditions = draw(st.sampled_from([READY, READY, TERMINATING, NOT_READY]))
    return {"addresses": [f"10.244.{ALL_NODES.index(node) + 1}.{svc * 10 + k + 2}"], "nodeName": node,
            "conditions": dict(conditions)}


@st.composite
def _service(draw: st.DrawFn, nodes: tuple[str, ...], i: int) -> list[dict[str, Any]]:
    kind = draw(st.sampled_from(["ClusterIP", "NodePort", "LoadBalancer"]))
    ports = []
    for p in range(draw(st.integers(1, 2))):
        proto = draw(st.sampled_from(["TCP", "TCP", "UDP"]))
        port: dict[str, Any] = {"name": f"p{p}", "port": 80 + p, "protocol": proto, "targetPort": 8080 + p}
        if kind != "ClusterIP":
            port["nodePort"] = 30000 + i * 10 + p
        ports.append(port)
    spec: dict[str, Any] = {"type": kind, "clusterIP": f"10.96.{i}.10", "clusterIPs": [f"10.96.{i}.10"],
                            "ipFamilies": ["IPv4"], "ports": ports, "sessionAffinity": "None"}
    if draw(st.booleans()):
        spec["externalIPs"] = [f"198.51.100.{i + 1}"]
    if kind != "ClusterIP":
        spec["externalTrafficPolicy"] = draw(st.sampled_from(["Cluster", "Local"]))
        if kind == "LoadBalancer" and spec["externalTrafficPolicy"] == "Local":
            spec["healthCheckNodePort"] = 32000 + i
    spec["internalTrafficPolicy"] = draw(st.sampled_from(["Cluster", "Local"]))
    if draw(st.booleans()):
        spec["sessionAffinity"] = "ClientIP"
        spec["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": draw(st.sampled_from([10, 300, 10800]))}}
    obj: dict[str, Any] = {"apiVersion": "v1", "kind": "Service",
                           "metadata": {"namespace": "shop", "name": f"svc{i}"}, "spec": spec}
    if kind == "LoadBalancer":
        obj["status"] = {"loadBalancer": {"ingress": [{"ip": f"192.0.2.{i + 1}"}]}}
    eps = [draw(_endpoint(nodes, i, k)) for k in range(draw(st.integers(0, 4)))]
    slice_ = {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
        "metadata": {"namespace": "shop", "name": f"svc{i}-x1", "labels": {"kubernetes.io/service-name": f"svc{i}"}},
        "endpoints": eps,
        "ports": [{"name": p["name"], "port": p["targetPort"], "protocol": p["protocol"]} for p in ports],
    }
    return [obj, slice_]


def kube_proxy_objects(mode: str, nodes: tuple[str, ...]) -> list[dict[str, Any]]:
    """ConfigMap, DaemonSet (all ready) and one running kube-proxy pod per node, as kubeadm lays them out."""
    config = {"apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
              "clusterCIDR": CLUSTER_CIDR, "mode": mode}
    labels = {"k8s-app": "kube-proxy"}
    container = {"name": "kube-proxy", "image": "registry.k8s.io/kube-proxy:v1.36.2",
                 "command": ["/usr/local/bin/kube-proxy", "--config=/var/lib/kube-proxy/config.conf",
                             "--hostname-override=$(NODE_NAME)"],
                 "volumeMounts": [{"mountPath": "/var/lib/kube-proxy", "name": "kube-proxy"}]}
    volumes = [{"name": "kube-proxy", "configMap": {"name": "kube-proxy"}}]
    n = len(nodes)
    objects: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"namespace": "kube-system", "name": "kube-proxy"},
         "data": {"config.conf": yaml.safe_dump(config, sort_keys=False)}},
        {"apiVersion": "apps/v1", "kind": "DaemonSet",
         "metadata": {"namespace": "kube-system", "name": "kube-proxy", "uid": "ds-kube-proxy", "labels": labels,
                      "generation": 1},
         "spec": {"selector": {"matchLabels": labels},
                  "template": {"metadata": {"labels": labels},
                               "spec": {"hostNetwork": True, "containers": [container], "volumes": volumes,
                                        "nodeSelector": {"kubernetes.io/os": "linux"}}}},
         "status": {"currentNumberScheduled": n, "desiredNumberScheduled": n, "numberAvailable": n,
                    "numberMisscheduled": 0, "numberReady": n, "observedGeneration": 1,
                    "updatedNumberScheduled": n}},
    ]
    for k, node in enumerate(nodes):
        objects.append({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"namespace": "kube-system", "name": f"kube-proxy-{k}abcd", "labels": labels,
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "kube-proxy",
                                              "uid": "ds-kube-proxy", "controller": True}]},
            "spec": {"nodeName": node, "hostNetwork": True, "containers": [container], "volumes": volumes},
            "status": {"phase": "Running",
                       "conditions": [{"type": "Ready", "status": "True"}],
                       "containerStatuses": [{"name": "kube-proxy", "ready": True, "restartCount": 0,
                                              "image": container["image"],
                                              "state": {"running": {"startedAt": "2026-11-26T09:05:03Z"}}}]},
        })
    return objects


@st.composite
def cluster_objects(draw: st.DrawFn, mode: str) -> list[dict[str, Any]]:
    """Nodes n1..n{2,3}, kube-proxy in `mode`, 1-4 Services of mixed types/policies with their slices."""
    nodes = ALL_NODES[: draw(st.integers(2, 3))]
    objects: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Node",
         "metadata": {"name": n, "labels": {"kubernetes.io/hostname": n, "kubernetes.io/os": "linux"}},
         "spec": {"podCIDR": pod_cidr(n), "podCIDRs": [pod_cidr(n)]},
         "status": {"addresses": [{"type": "InternalIP", "address": node_ip(n)}, {"type": "Hostname", "address": n}],
                    "conditions": [{"type": "Ready", "status": "True"}]}}
        for n in nodes
    ]
    objects += kube_proxy_objects(mode, nodes)
    for i in range(draw(st.integers(1, 4))):
        objects += draw(_service(nodes, i))
    return objects


def to_cluster(objects: list[dict[str, Any]]) -> ClusterState:
    return load_objects([(o, "generated") for o in objects], source="generated")


# ----------------------------------------------------------------------------- the lab node
def run(args: list[str], ns: str, *, input: str | None = None, check: bool = True) -> str:
    return labns.run(args, netns=ns, input=input, check=check, timeout=60).stdout


@contextmanager
def lab_node(mode: str, name: str = LAB_NODE) -> Iterator[str]:
    """A fresh namespace standing for node `name`: eth0 with its InternalIP, forwarding on, and - in iptables
    mode - route_localnet=1, which kube-proxy sets itself at start for localhost NodePorts."""
    ns = labns.unique_prefix("kpd-h9")
    labns.create(ns)
    try:
        run(["ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0-peer"], ns)
        run(["ip", "link", "set", "eth0-peer", "up"], ns)
        run(["ip", "addr", "add", f"{node_ip(name)}/24", "dev", "eth0"], ns)
        run(["ip", "link", "set", "eth0", "up"], ns)
        run(["ip", "route", "add", "default", "via", "10.77.0.254"], ns)
        labns.sysctl(ns, "net.ipv4.ip_forward", "1")
        if mode == "iptables":
            labns.sysctl(ns, "net.ipv4.conf.all.route_localnet", "1")
        yield ns
    finally:
        labns.delete(ns)


_COLLECT = r"""
import json, sys
from kpdoctor.cluster.snapshot import load_objects
from kpdoctor.node.bundle import write_bundle
from kpdoctor.node.collect import CollectOptions, collect_node
objects = json.load(open(sys.argv[2]))
cluster = load_objects([(o, "generated") for o in objects], source="generated")
state = collect_node(sys.argv[3], cluster=cluster, options=CollectOptions(transport="local", timeout=60))
write_bundle(sys.argv[1], nodes={sys.argv[3]: state})
"""


def collect(ns: str, objects: list[dict[str, Any]], mode: str, name: str = LAB_NODE) -> NodeState:
    """kpdoctor's collector run inside `ns`; kube-proxy's HTTP facts replaced by the recorded real ones."""
    with tempfile.TemporaryDirectory(prefix="kpd-h9-") as tmp:
        objects_file = Path(tmp) / "objects.json"
        objects_file.write_text(json.dumps(objects))
        env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        proc = subprocess.run(
            ["ip", "netns", "exec", ns, sys.executable, "-c", _COLLECT, str(Path(tmp) / "bundle"), str(objects_file),
             name], capture_output=True, text=True, timeout=120, env=env, check=False)
        assert proc.returncode == 0, f"collector failed in {ns}: {proc.stderr[-3000:]}"
        state = read_bundle(Path(tmp) / "bundle").node_state(name)
    facts = dict(state.facts)
    for key in [k for k in facts if k.startswith("kube-proxy/")]:
        fact = facts.pop(key)
        if key == HEALTH_CHECK_FACT and fact.content is not None:  # one answer per port: all must have failed
            answers = json.loads(fact.content)
            assert all("error" in a for a in answers.values()), f"{key}: {fact.content}"
        else:
            assert not fact.present, f"{key} answered in the lab although no kube-proxy runs there"
    recorded = B1_NODES / RECORDED_KUBE_PROXY[mode] / "kube-proxy"
    for fname in KUBE_PROXY_HTTP_FACTS:
        key = f"kube-proxy/{fname}"
        facts[key] = Fact(key, (recorded / fname).read_text(), source=f"recorded: B1 {recorded.parent.name}/{key}",
                          exit_code=0)
    return NodeState(name=state.name, transport=state.transport, facts=MappingProxyType(facts),
                     address=state.address, error=state.error, collected_at=state.collected_at)


# ----------------------------------------------------------------------------- scan
@dataclass(frozen=True)
class Scan:
    findings: tuple[Finding, ...]

    def at_least(self, severity: Severity = Severity.WARNING) -> list[Finding]:
        return [f for f in self.findings if f.severity >= severity]


def scan(cluster: ClusterState, node: NodeState) -> Scan:
    """Every registered check (node and cluster scope) through the scan engine, on the one lab node."""
    registry = discover(entry_points=False)
    result = run_checks(registry.select(), cluster, [node])
    return Scan(tuple(result.findings))


def describe(findings: list[Finding] | tuple[Finding, ...]) -> str:
    out = []
    for f in findings:
        out.append(f"[{f.severity.label}] {f.check_id} {f.scope} {f.subject}: {f.message}")
        out += [f"      evidence: {e}" for e in f.evidence[:6]]
    return "\n".join(out) or "(none)"
