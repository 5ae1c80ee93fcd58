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
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
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

HERE = Path(__file__).resolve().parents[1]  # tests/
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
def service_ports(draw: st.DrawFn, kind: str, i: int) -> list[dict[str, Any]]:
    """One or two ports (mostly TCP) of generated Service number `i`, with node ports unless it is a ClusterIP."""
    ports = []
    for p in range(draw(st.integers(1, 2))):
        proto = draw(st.sampled_from(["TCP", "TCP", "UDP"]))
        port: dict[str, Any] = {"name": f"p{p}", "port": 80 + p, "protocol": proto, "targetPort": 8080 + p}
        if kind != "ClusterIP":
            port["nodePort"] = 30000 + i * 10 + p
        ports.append(port)
    return ports


@st.composite
def _service(draw: st.DrawFn, nodes: tuple[str, ...], i: int) -> list[dict[str, Any]]:
    kind = draw(st.sampled_from(["ClusterIP", "NodePort", "LoadBalancer"]))
    ports = draw(service_ports(kind, i))
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
        ranges = draw(st.sampled_from([None, None, ["203.0.113.0/24"], ["10.77.0.0/16", "203.0.113.0/24"]]))
        if ranges:
            spec["loadBalancerSourceRanges"] = ranges
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


def apiserver_service() -> list[dict[str, Any]]:
    """default/kubernetes, which every cluster has (its endpoint is the API server, on no node)."""
    return [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"namespace": "default", "name": "kubernetes"},
         "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.1", "clusterIPs": ["10.96.0.1"], "ipFamilies": ["IPv4"],
                  "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}],
                  "sessionAffinity": "None"}},
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
         "metadata": {"namespace": "default", "name": "kubernetes", "labels": {"kubernetes.io/service-name": "kubernetes"}},
         "endpoints": [{"addresses": ["10.77.0.100"], "conditions": dict(READY)}],
         "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}]},
    ]


@st.composite
def cluster_objects(draw: st.DrawFn, mode: str) -> list[dict[str, Any]]:
    """Nodes n1..n{2,3}, kube-proxy in `mode`, default/kubernetes and 1-4 Services of mixed types/policies
    with their slices."""
    nodes = ALL_NODES[: draw(st.integers(2, 3))]
    objects: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Node",
         "metadata": {"name": n, "labels": {"kubernetes.io/hostname": n, "kubernetes.io/os": "linux"}},
         "spec": {"podCIDR": pod_cidr(n), "podCIDRs": [pod_cidr(n)]},
         "status": {"addresses": [{"type": "InternalIP", "address": node_ip(n)}, {"type": "Hostname", "address": n}],
                    "conditions": [{"type": "Ready", "status": "True"}]}}
        for n in nodes
    ]
    objects += kube_proxy_objects(mode, nodes) + apiserver_service()
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


# ----------------------------------------------------------------------------- perturbations
IPTABLES = "iptables-nft"  # the backend the lab restores into (iptables-nft-restore)
DEAD_ENDPOINT_HOST = 250  # 10.244.<n>.250 is never generated: a pod IP that backs nothing


@dataclass(frozen=True)
class Perturbation:
    """One change to a node's live dataplane (argv lists run inside the namespace, in order) and the one
    finding that must name it: check id, subject, and strings its message/evidence must mention."""

    kind: str
    what: str
    commands: tuple[tuple[str, ...], ...]
    check_id: str
    subject: str
    needles: tuple[str, ...]

    def apply(self, ns: str) -> None:
        for argv in self.commands:
            run(list(argv), ns)

    def __str__(self) -> str:  # what hypothesis prints for a failing example
        return f"{self.kind}: {self.what}"


def service_subject(service_port_name: str, protocol: str) -> str:
    return f"Service {service_port_name}/{protocol.upper()}"


def sysctl_perturbations(mode: str) -> list[Perturbation]:
    out = [Perturbation("sysctl", "net.ipv4.ip_forward=0", (("sysctl", "-qw", "net.ipv4.ip_forward=0"),),
                        "KP-SYSCTL-CONNTRACK", f"Node {LAB_NODE}", ("net.ipv4.ip_forward = 0",))]
    if mode == "iptables":  # localhost NodePorts (the v1.36 default) need it; kube-proxy set it at start
        out.append(Perturbation("sysctl", "net.ipv4.conf.all.route_localnet=0",
                                (("sysctl", "-qw", "net.ipv4.conf.all.route_localnet=0"),),
                                "KP-SYSCTL-CONNTRACK", f"Node {LAB_NODE}",
                                ("net.ipv4.conf.all.route_localnet = 0",)))
    return out


# ---- iptables
#
# Only faults that change what the SemanticView describes are drawn: the path of traffic that does not
# short-circuit (KUBE-SERVICES / KUBE-NODEPORTS -> KUBE-FW -> KUBE-EXT's unconditional jump -> KUBE-SVC/SVL
# -> KUBE-SEP -> DNAT). Faults outside it are known gaps of that model, listed in test_checks_vs_proxier.
_NOT_A_PATH = {"KUBE-MARK-MASQ", "KUBE-MARK-DROP", "RETURN", "ACCEPT", "DROP", "REJECT", "DNAT", "MARK",
               "MASQUERADE", "KUBE-NODEPORTS"}


@dataclass(frozen=True)
class IptRule:
    table: str
    chain: str
    words: tuple[str, ...]  # after `-A CHAIN`, quotes resolved
    index: int  # 1-based position in its chain

    def opt(self, name: str) -> str | None:
        w = self.words
        return next((w[i + 1] for i in range(len(w) - 1) if w[i] == name), None)

    @property
    def target(self) -> str:
        return self.opt("-j") or ""

    @property
    def comment(self) -> str:
        return self.opt("--comment") or ""

    @property
    def service(self) -> str:
        """The ServicePortName a kube-proxy comment starts with ("" for kube-proxy's own plumbing)."""
        first = self.comment.split(" ", 1)[0]
        return first if "/" in first and ":" in first else ""

    @property
    def dest(self) -> str:
        """`-d` without its /32 ("" when absent or negated)."""
        i = self.words.index("-d") if "-d" in self.words else -1
        if i < 0 or (i > 0 and self.words[i - 1] == "!"):
            return ""
        return self.words[i + 1].split("/", 1)[0]

    def frontend(self) -> tuple[str, str, str]:
        """(address or "*" for node ports, port, protocol) of a frontend rule."""
        return (self.dest or "*", self.opt("--dport") or "", (self.opt("-p") or "").upper())

    def delete(self) -> tuple[str, ...]:
        """By position: iptables-nft cannot delete some rules by their saved text (`-m recent --set ...`)."""
        return (IPTABLES, "-w", "5", "-t", self.table, "-D", self.chain, str(self.index))


def parse_save(text: str) -> list[IptRule]:
    import shlex

    rules: list[IptRule] = []
    table = ""
    counts: dict[tuple[str, str], int] = {}
    for line in text.splitlines():
        if line.startswith("*"):
            table = line[1:].strip()
        elif line.startswith("-A "):
            words = shlex.split(line)
            key = (table, words[1])
            counts[key] = counts.get(key, 0) + 1
            rules.append(IptRule(table, words[1], tuple(words[2:]), counts[key]))
    return rules


def _is_lb_jump(r: IptRule) -> bool:
    """A KUBE-SVC/SVL rule that load-balances to an endpoint (the `--rcheck` affinity rules only keep clients)."""
    return r.target.startswith("KUBE-SEP-") and "--rcheck" not in r.words


def _on_path(starts: list[str], by_chain: dict[str, list[IptRule]]) -> set[str]:
    seen: set[str] = set()
    todo = list(starts)
    while todo:
        chain = todo.pop()
        if chain in seen or chain in _NOT_A_PATH:
            continue
        seen.add(chain)
        rules = by_chain.get(chain, [])
        if chain.startswith("KUBE-EXT-"):  # only the jump without a source condition (no short-circuit)
            rules = [r for r in rules if r.target not in _NOT_A_PATH and "-s" not in r.words
                     and "--src-type" not in r.words and "-i" not in r.words][:1]
        elif chain.startswith(("KUBE-SVC-", "KUBE-SVL-")):
            rules = [r for r in rules if _is_lb_jump(r)]
        todo += [r.target for r in rules if r.target]
    return seen


def iptables_perturbations(save: str) -> list[Perturbation]:
    """Every single-rule/chain fault of kube-proxy's Service rules found in the live `iptables-save`."""
    rules = parse_save(save)
    nat: dict[str, list[IptRule]] = {}
    for r in rules:
        if r.table == "nat":
            nat.setdefault(r.chain, []).append(r)
    nat_fronts = [r for r in rules if r.table == "nat" and r.service and r.opt("--dport") and r.target
                  and r.chain in ("KUBE-SERVICES", "KUBE-NODEPORTS") and not r.dest.startswith("127.")]
    filter_fronts = [r for r in rules if r.table == "filter" and r.service and r.opt("--dport")
                     and r.chain in ("KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES") and r.target in ("REJECT", "DROP")]
    nat_keys = {r.frontend() for r in nat_fronts}
    filter_keys = {r.frontend() for r in filter_fronts}
    out: list[Perturbation] = []
    # a frontend's own rule: nat jump (DNAT frontends) or filter REJECT/DROP (frontends without endpoints)
    for r in [*nat_fronts, *filter_fronts]:
        other = filter_keys if r.table == "nat" else nat_keys
        if r.frontend() in other:
            continue  # eTP/iTP=Local without local endpoints: only short-circuited traffic uses the nat path
        addr, port, proto = r.frontend()
        out.append(Perturbation("delete-frontend-rule", f"{r.table} {r.chain} `{' '.join(r.words)}` deleted",
                                (r.delete(),), "KP-STALE-ENDPOINTS", service_subject(r.service, proto),
                                (f"{addr}:{port}",)))
    path = _on_path([r.target for r in nat_fronts if r.frontend() not in filter_keys], nat)
    for chain in sorted(c for c in path if c.startswith(("KUBE-SVC-", "KUBE-SVL-"))):
        jumps = [r for r in nat[chain] if _is_lb_jump(r)]
        if not jumps:
            continue
        svc = jumps[0].comment.partition(" -> ")[0]
        dnats = {j.target: next(x for x in nat[j.target] if x.target == "DNAT") for j in jumps}
        proto = (dnats[jumps[0].target].opt("-p") or "tcp").lower()
        subject = service_subject(svc, proto)
        for j in jumps:
            dest = dnats[j.target].opt("--to-destination") or ""
            out.append(Perturbation("drop-sep-jump", f"nat {chain}: jump to {j.target} ({dest}) deleted",
                                    (j.delete(),), "KP-STALE-ENDPOINTS", subject, (dest,)))
        first = dnats[jumps[0].target].opt("--to-destination") or ""
        dead = "10.244.{}.{}:{}".format(first.split(".")[2], DEAD_ENDPOINT_HOST, first.rsplit(":", 1)[1])
        stale_chain = "KUBE-SEP-STALE" + chain[-10:]
        ipt = (IPTABLES, "-w", "5", "-t", "nat")
        out.append(Perturbation(
            "stale-dnat", f"nat {chain}: jump to {stale_chain} (DNAT {dead}) inserted before the others",
            _stale_dnat_argvs(chain, jumps[0].index, stale_chain, svc, proto, dead),
            "KP-STALE-ENDPOINTS", subject, (dead,)))
        # the chain and every jump to it (last position first within a chain: earlier positions stay valid)
        to_it = sorted((x for x in rules if x.table == "nat" and x.target == chain), key=lambda x: (x.chain, -x.index))
        out.append(Perturbation(
            "delete-service-chain", f"nat {chain} and the {len(to_it)} jump(s) to it deleted",
            (*(x.delete() for x in to_it), (*ipt, "-F", chain), (*ipt, "-X", chain)),
            "KP-STALE-ENDPOINTS", subject, tuple(sorted({d.opt("--to-destination") or "" for d in dnats.values()}))))
    for chain in sorted(c for c in path if c.startswith("KUBE-SEP-")):
        dnat = next(x for x in nat[chain] if x.target == "DNAT")
        dest = dnat.opt("--to-destination") or ""
        out.append(Perturbation("drop-dnat", f"nat {chain}: its DNAT to {dest} deleted", (dnat.delete(),),
                                "KP-STALE-ENDPOINTS", service_subject(dnat.comment, dnat.opt("-p") or ""), (dest,)))
    return out + _iptables_model_paths(rules, nat, nat_keys, path)


def _stale_dnat_argvs(chain: str, index: int, stale_chain: str, svc: str, proto: str,
                      dead: str) -> tuple[tuple[str, ...], ...]:
    """iptables commands that add chain `stale_chain` (DNAT to `dead`) and jump to it from `chain` at `index`
    with probability 0.5, commented as kube-proxy comments its rules."""
    ipt = (IPTABLES, "-w", "5", "-t", "nat")
    return ((*ipt, "-N", stale_chain),
            (*ipt, "-A", stale_chain, "-m", "comment", "--comment", svc, "-p", proto, "-m", proto, "-j", "DNAT",
             "--to-destination", dead),
            (*ipt, "-I", chain, str(index), "-m", "comment", "--comment", f"{svc} -> {dead}", "-m",
             "statistic", "--mode", "random", "--probability", "0.5", "-j", stale_chain))


def _iptables_model_paths(rules: list[IptRule], nat: dict[str, list[IptRule]], nat_keys: set[tuple[str, str, str]],
                          path: set[str]) -> list[Perturbation]:
    """Faults on the paths outside the outside-traffic one: the short-circuit, the "no local endpoints" DROP
    of a node port whose nat rule exists, and the localhost NodePort tail rule."""
    out: list[Perturbation] = []
    ipt = (IPTABLES, "-w", "5", "-t", "nat")
    # a KUBE-SVC only pods and the node reach (eTP=Local short-circuit): a stale endpoint there
    shortcut = {r.target for chain, rs in nat.items() if chain.startswith("KUBE-EXT-") for r in rs
                if r.target.startswith("KUBE-SVC-") and ("-s" in r.words or "--src-type" in r.words)}
    for chain in sorted(shortcut - path):
        jumps = [r for r in nat.get(chain, []) if _is_lb_jump(r)]
        if not jumps:
            continue
        svc = jumps[0].comment.partition(" -> ")[0]
        dnat = next(x for x in nat[jumps[0].target] if x.target == "DNAT")
        first, proto = dnat.opt("--to-destination") or "", (dnat.opt("-p") or "tcp").lower()
        dead = "10.244.{}.{}:{}".format(first.split(".")[2], DEAD_ENDPOINT_HOST, first.rsplit(":", 1)[1])
        stale_chain = "KUBE-SEP-SHORT" + chain[-10:]
        out.append(Perturbation(
            "stale-short-circuit", f"nat {chain} (short-circuit only): jump to {stale_chain} (DNAT {dead}) inserted",
            _stale_dnat_argvs(chain, jumps[0].index, stale_chain, svc, proto, dead),
            "KP-STALE-ENDPOINTS", service_subject(svc, proto), (dead, "from pods/node (short-circuit)")))
    # eTP=Local without local endpoints: the node port's filter DROP, its nat rule kept for the short-circuit
    for r in rules:
        if (r.table == "filter" and r.chain == "KUBE-EXTERNAL-SERVICES" and r.target == "DROP" and r.service
                and "--dst-type" in r.words and r.frontend() in nat_keys):
            _, port, proto = r.frontend()
            out.append(Perturbation("delete-no-local-drop", f"filter {r.chain} `{' '.join(r.words)}` deleted",
                                    (r.delete(),), "KP-STALE-ENDPOINTS", service_subject(r.service, proto),
                                    (f"*:{port}", "answers 'reject' where the API says 'drop'")))
    # localhost NodePorts switched off in the rules (kube-proxy's tail rule with localhostNodePorts=false);
    # drawn when one service port has node ports, so that exactly one finding names it
    tail = [r for r in rules if r.table == "nat" and r.chain == "KUBE-SERVICES" and r.target == "KUBE-NODEPORTS"
            and "-d" not in r.words]
    nodeports = {(r.service, r.opt("--dport"), (r.opt("-p") or "").upper()) for r in rules
                 if r.table in ("nat", "filter") and r.chain in ("KUBE-NODEPORTS", "KUBE-EXTERNAL-SERVICES")
                 and r.service and r.opt("--dport") and (r.chain == "KUBE-NODEPORTS" or "--dst-type" in r.words)
                 and "health check node port" not in r.comment}
    if len(tail) == 1 and len(nodeports) == 1:
        (svc, port, proto), = nodeports
        out.append(Perturbation(
            "localhost-nodeports-off", "nat KUBE-SERVICES: the KUBE-NODEPORTS tail rule excludes 127.0.0.0/8",
            ((*ipt, "-R", "KUBE-SERVICES", str(tail[0].index), "-m", "comment", "--comment", tail[0].comment, "-m",
              "addrtype", "--dst-type", "LOCAL", "!", "-d", "127.0.0.0/8", "-j", "KUBE-NODEPORTS"),),
            "KP-STALE-ENDPOINTS", service_subject(svc, proto), (f"localhost NodePort 127.0.0.1:{port}",)))
    return out


# ---- nftables (same model: the path of traffic that does not short-circuit)
_NUMGEN = re.compile(r"numgen random mod (\d+) (v?map) \{ (.*) \}")
_HANDLE = re.compile(r"^\s*(.*?) # handle (\d+)$")
_PER_SERVICE = re.compile(r"^(service|local|external|endpoint|firewall)-[A-Z0-9]{8}-")
NFT_TABLE = ("ip", "kube-proxy")


def _svc_of_chain(chain: str) -> tuple[str, str]:
    """`service-HASH-ns/name/tcp/p0` (or endpoint-...__ip/port) -> ("ns/name:p0", "tcp")."""
    body = chain.split("-", 2)[2].split("__", 1)[0]
    ns, name, proto, port = body.split("/", 3)
    return (f"{ns}/{name}:{port}" if port else f"{ns}/{name}"), proto


def nft_chains(ns: str) -> dict[str, list[tuple[int, str]]]:
    """Chains of `table ip kube-proxy` with their rules as (handle, text), from `nft -a list table`."""
    text = run(["nft", "-a", "list", "table", *NFT_TABLE], ns)
    chains: dict[str, list[tuple[int, str]]] = {}
    current = ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("chain "):
            current = stripped.split()[1]
            chains[current] = []
        elif stripped == "}":
            current = ""
        elif current:
            m = _HANDLE.match(line)
            if m and not m.group(1).startswith(("type ", "comment ")):
                chains[current].append((int(m.group(2)), m.group(1)))
    return chains


def nft_map_elements(ns: str) -> dict[str, list[tuple[str, str, str]]]:
    """(key text, verdict text, comment) of kube-proxy's verdict maps, from `nft -j list table`."""
    doc = json.loads(run(["nft", "-j", "list", "table", *NFT_TABLE], ns))
    out: dict[str, list[tuple[str, str, str]]] = {}
    for item in doc["nftables"]:
        body = item.get("map")
        if not body:
            continue
        elems = []
        for key, value in body.get("elem", []):
            comment = ""
            if isinstance(key, dict) and "elem" in key:
                comment = key["elem"].get("comment", "")
                key = key["elem"]["val"]
            parts = key["concat"] if isinstance(key, dict) and "concat" in key else [key]
            verdict = next(iter(value)) if isinstance(value, dict) else str(value)
            target = value[verdict]["target"] if isinstance(value, dict) and isinstance(value[verdict], dict) else ""
            elems.append((" . ".join(str(p) for p in parts), f"{verdict} {target}".strip(), comment))
        out[body["name"]] = elems
    return out


def _nft_targets(text: str) -> list[str]:
    """Chains a rule sends every matching packet to (vmap entries, goto/jump); conditional rules excluded by
    the caller."""
    m = _NUMGEN.search(text)
    if m and m.group(2) == "vmap":
        return [v.split(" : ", 1)[1].split()[1] for v in m.group(3).split(", ")]
    words = text.split()
    return [words[1]] if len(words) == 2 and words[0] in ("goto", "jump") else []


def nftables_perturbations(ns: str) -> list[Perturbation]:
    """Every single-element/rule/chain fault of the live kube-proxy table, with the finding it must cause."""
    chains = nft_chains(ns)
    maps = nft_map_elements(ns)
    table = NFT_TABLE
    fronts = {(m, k): (v, c) for m in ("service-ips", "service-nodeports") for k, v, c in maps.get(m, [])}
    verdicts = {(m, k): (v, c) for m in ("no-endpoint-services", "no-endpoint-nodeports") for k, v, c in maps.get(m, [])}
    pair = {"service-ips": "no-endpoint-services", "service-nodeports": "no-endpoint-nodeports",
            "no-endpoint-services": "service-ips", "no-endpoint-nodeports": "service-nodeports"}
    out: list[Perturbation] = []
    for (map_name, key), (verdict, comment) in [*fronts.items(), *verdicts.items()]:
        if (pair[map_name], key) in fronts or (pair[map_name], key) in verdicts:
            continue  # Local policy without local endpoints: the goto only serves short-circuited traffic
        parts = key.split(" . ")
        target = verdict.split(" ", 1)[1] if " " in verdict else ""
        svc = _svc_of_chain(target)[0] if _PER_SERVICE.match(target) else comment
        needle = f"{parts[0]}:{parts[2]}" if len(parts) == 3 else f"*:{parts[1]}"
        out.append(Perturbation("delete-frontend-element", f"map {map_name}: element `{key} : {verdict}` deleted",
                                (("nft", "delete", "element", *table, map_name, f"{{ {key} }}"),),
                                "KP-STALE-ENDPOINTS", service_subject(svc, parts[-2]), (needle,)))
    # chains on the non-short-circuit path of a DNAT frontend
    todo = [v.split()[1] for (m, k), (v, _) in fronts.items() if (pair[m], k) not in verdicts and " " in v]
    path: set[str] = set()
    while todo:
        name = todo.pop()
        if name in path or name not in chains:
            continue
        path.add(name)
        for _, text in chains[name]:
            if name.startswith("external-") or not text.startswith("ip saddr @affinity-"):
                todo += _nft_targets(text)
    for name in sorted(path):
        if not name.startswith(("service-", "local-", "endpoint-")):
            continue
        svc, proto = _svc_of_chain(name)
        subject = service_subject(svc, proto)
        for handle, text in chains[name]:
            if name.startswith("endpoint-") and " dnat to " in text:
                dest = text.rsplit(" dnat to ", 1)[1].split()[0]
                out.append(Perturbation("drop-dnat", f"{name}: `{text}` deleted",
                                        (("nft", "delete", "rule", *table, name, "handle", str(handle)),),
                                        "KP-STALE-ENDPOINTS", subject, (dest,)))
            m = _NUMGEN.search(text)
            if m:
                out += _numgen_perturbations(name, handle, text, m, subject, proto)
        if not name.startswith("endpoint-"):
            out.append(_delete_nft_chain(name, chains, maps, subject))
    return out + _nft_model_paths(chains, maps, path)


def _nft_model_paths(chains: dict[str, list[tuple[int, str]]], maps: dict[str, list[tuple[str, str, str]]],
                     path: set[str]) -> list[Perturbation]:
    """The short-circuit's `service-` chain (a stale endpoint) and the "no local endpoints" drop element of a
    node port whose `service-nodeports` element exists."""
    out: list[Perturbation] = []
    shortcut = {words[words.index("goto") + 1] for name, rules in chains.items() if name.startswith("external-")
                for words in (text.split() for _, text in rules)  # `COND goto service-… comment "…"`
                if "goto" in words[1:-1] and words[words.index("goto") + 1].startswith("service-")}
    for name in sorted(shortcut - path):
        svc, proto = _svc_of_chain(name)
        for handle, text in chains.get(name, []):
            m = _NUMGEN.search(text)
            if m:
                out += [replace(p, kind="stale-short-circuit", needles=(*p.needles, "from pods/node (short-circuit)"))
                        for p in _numgen_perturbations(name, handle, text, m, service_subject(svc, proto), proto)
                        if p.kind == "stale-dnat"]
    table = NFT_TABLE
    nodeports = {k for k, _, _ in maps.get("service-nodeports", [])}
    for key, verdict, comment in maps.get("no-endpoint-nodeports", []):
        if key in nodeports and verdict == "drop":
            proto, port = key.split(" . ")
            out.append(Perturbation("delete-no-local-drop", f"map no-endpoint-nodeports: element `{key} : drop` deleted",
                                    (("nft", "delete", "element", *table, "no-endpoint-nodeports", f"{{ {key} }}"),),
                                    "KP-STALE-ENDPOINTS", service_subject(comment, proto),
                                    (f"*:{port}", "answers 'reject' where the API says 'drop'")))
    return out


def _endpoint_of(item: str, direct: bool) -> str:
    if direct:  # `IP . PORT`
        ip, port = item.split(" . ")
        return f"{ip}:{port}"
    return item.rsplit("__", 1)[1].replace("/", ":")  # `goto endpoint-HASH-ns/name/proto/port__IP/PORT`


def _numgen_perturbations(name: str, handle: int, text: str, m: re.Match[str], subject: str,
                          proto: str) -> list[Perturbation]:
    """Drop one endpoint from kube-proxy's `numgen random mod N (v)map {...}`, or add a dead one to it."""
    table = NFT_TABLE
    items = [v.split(" : ", 1)[1] for v in m.group(3).split(", ")]
    direct = m.group(2) == "map"  # `dnat ip to numgen ... map { 0 : IP . PORT }` (no endpoint chains)

    def rewrite(new_items: list[str]) -> str:
        body = ", ".join(f"{k} : {v}" for k, v in enumerate(new_items))
        return text[: m.start()] + f"numgen random mod {len(new_items)} {m.group(2)} {{ {body} }}" + text[m.end():]

    out = []
    for k, item in enumerate(items):
        dest = _endpoint_of(item, direct)
        rest = items[:k] + items[k + 1:]
        cmd = (("nft", "replace", "rule", *table, name, "handle", str(handle), rewrite(rest)) if rest
               else ("nft", "delete", "rule", *table, name, "handle", str(handle)))
        out.append(Perturbation("drop-endpoint", f"{name}: {dest} removed from `{text}`", (cmd,),
                                "KP-STALE-ENDPOINTS", subject, (dest,)))
    first = _endpoint_of(items[0], direct)
    dead = "10.244.{}.{}:{}".format(first.split(".")[2], DEAD_ENDPOINT_HOST, first.rsplit(":", 1)[1])
    cmds: list[tuple[str, ...]] = []
    if direct:
        new = [*items, dead.replace(":", " . ")]
    else:
        stale_chain = f"endpoint-STALE{handle:03d}-{name.split('-', 2)[2]}__{dead.replace(':', '/')}"
        cmds += [("nft", "add", "chain", *table, stale_chain),
                 ("nft", "add", "rule", *table, stale_chain, f"meta l4proto {proto} dnat to {dead}")]
        new = [*items, f"goto {stale_chain}"]
    cmds.append(("nft", "replace", "rule", *table, name, "handle", str(handle), rewrite(new)))
    out.append(Perturbation("stale-dnat", f"{name}: {dead} added to `{text}`", tuple(cmds),
                            "KP-STALE-ENDPOINTS", subject, (dead,)))
    return out


def _delete_nft_chain(name: str, chains: dict[str, list[tuple[int, str]]],
                      maps: dict[str, list[tuple[str, str, str]]], subject: str) -> Perturbation:
    """A service/local chain deleted for good: first every map element and rule that sends packets to it
    (nft refuses to delete a chain still referenced)."""
    table = NFT_TABLE
    cmds: list[tuple[str, ...]] = []
    for map_name, elems in sorted(maps.items()):
        for key, verdict, _ in elems:
            if verdict.split()[-1] == name:
                cmds.append(("nft", "delete", "element", *table, map_name, f"{{ {key} }}"))
    for other, rules in sorted(chains.items()):
        for handle, text in rules:
            if other != name and name in text.split():
                cmds.append(("nft", "delete", "rule", *table, other, "handle", str(handle)))
    cmds.append(("nft", "delete", "chain", *table, name))
    dests = sorted({_endpoint_of(v.split(" : ", 1)[1], m.group(2) == "map")
                    for _, text in chains[name] for m in [_NUMGEN.search(text)] if m
                    for v in m.group(3).split(", ")})
    return Perturbation("delete-service-chain", f"chain {name} and the {len(cmds) - 1} references to it deleted",
                        tuple(cmds), "KP-STALE-ENDPOINTS", subject, tuple(dests))
