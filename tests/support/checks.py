"""Plumbing for the check tests (no tests here): load real bundles, run checks, build lab namespaces.

Bundles are read into NodeState exactly as the bundle layout defines them (one
fact per file under nodes/<node>/, absent file = absent fact). Lab namespaces
are real: rules are loaded with the real iptables-restore / nft inside a fresh
network namespace and the node facts are collected by running the same commands
a collector runs, inside that namespace.
"""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import secrets
import subprocess
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import kpdoctor.checks as checks
from kpdoctor.checks_api import Check, CheckContext, Scope
from kpdoctor.cluster.model import Service, ServicePort
from kpdoctor.cluster.snapshot import load_snapshot
from kpdoctor.cluster.state import ClusterState
from kpdoctor.findings import Finding, Severity
from kpdoctor.node.state import Fact, NodeState
from kpdoctor.scan_options import ScanOptions
from kpdoctor.scanner import DEMO_BUNDLE

HERE = Path(__file__).resolve().parents[1]  # tests/
BUNDLES = HERE / "fixtures" / "bundles"
GOLDEN = HERE / "fixtures" / "kube-proxy-v1.36"


# ------------------------------------------------------------------------------ bundles


def node_from_dir(name: str, root: Path, transport: str = "bundle") -> NodeState:
    facts: dict[str, Fact] = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            rel = path.relative_to(root).as_posix()
            facts[rel] = Fact(key=rel, content=path.read_text(encoding="utf-8", errors="replace"), source=rel,
                              exit_code=0)
    return NodeState(name=name, transport=transport, facts=MappingProxyType(facts))


def load_bundle(scenario: str) -> tuple[ClusterState, dict[str, NodeState]]:
    return load_bundle_dir(BUNDLES / scenario / "bundle")


def load_bundle_dir(root: Path) -> tuple[ClusterState, dict[str, NodeState]]:
    """A bundle directory (cluster/ and nodes/<name>/): tests/fixtures/bundles/*/bundle or the demo's."""
    cluster = load_snapshot(root / "cluster")
    nodes = {d.name: node_from_dir(d.name, d) for d in sorted((root / "nodes").iterdir()) if d.is_dir()}
    return cluster, nodes


def load_demo() -> tuple[ClusterState, dict[str, NodeState]]:
    """The demo bundle shipped inside kpdoctor (`kpdoctor scan --demo`)."""
    return load_bundle_dir(DEMO_BUNDLE)


def load_shape(name: str) -> ClusterState:
    """A real-world cluster shape (tests/fixtures/realworld/shapes/<name>/cluster; sources in its SOURCE.md)."""
    return load_snapshot(HERE / "fixtures" / "realworld" / "shapes" / name / "cluster")


def with_many_services(cluster: ClusterState, n: int) -> ClusterState:
    """`cluster` plus n ClusterIP Services in namespace bulk (a cluster at scale; the objects are generated)."""
    extra = tuple(Service("bulk", f"svc-{i}", cluster_ips=(f"10.97.{i // 250}.{i % 250 + 1}",),
                          ports=(ServicePort("http", "TCP", 80, 8080),)) for i in range(n))
    return replace(cluster, services=cluster.services + extra)


def with_service_copies(cluster: ClusterState, key: str, n: int) -> ClusterState:
    """`cluster` plus n copies of Service `key` ("ns/name") and its EndpointSlices (same endpoints, same
    nodes), named <name>-copy-<i> with their own cluster IP, NodePorts and health-check node port. Generated
    objects (a hand-made shape, from a real one): many Services that behave alike on every node."""
    ns, name = key.split("/", 1)
    [svc] = [s for s in cluster.services if s.namespace == ns and s.name == name]
    slices = [sl for sl in cluster.endpoint_slices if sl.namespace == ns and sl.service_name == name]
    services, copies = list(cluster.services), list(cluster.endpoint_slices)
    for i in range(n):
        copy = f"{name}-copy-{i}"
        services.append(replace(
            svc, name=copy, cluster_ips=(f"10.96.250.{i + 1}",), load_balancer_ingress=(),
            health_check_node_port=svc.health_check_node_port and 32000 + i,
            ports=tuple(replace(p, node_port=p.node_port and 31500 + 10 * i + j) for j, p in enumerate(svc.ports))))
        copies += [replace(sl, name=f"{copy}-{sl.name}", service_name=copy) for sl in slices]
    return replace(cluster, services=tuple(services), endpoint_slices=tuple(copies))


def with_facts(node: NodeState, **changes: str | None) -> NodeState:
    """A copy of `node` with facts replaced (key with '__' for '/'); None removes the fact."""
    for raw_key, content in changes.items():
        node = replace_fact(node, raw_key.replace("__", "/"), content)
    return node


def replace_fact(node: NodeState, key: str, content: str | None) -> NodeState:
    facts = dict(node.facts)
    if content is None:
        facts.pop(key, None)
    else:
        facts[key] = Fact(key=key, content=content, source=key, exit_code=0)
    return NodeState(name=node.name, transport=node.transport, facts=MappingProxyType(facts))


def without_kube_proxy(cluster: ClusterState) -> ClusterState:
    """kube-proxy's DaemonSets, ConfigMaps and pods deleted; the other kube-system pods stay (the pod list was
    collected and shows no kube-proxy: deleted, not unknown). B1's kube-system holds only kube-proxy pods; a real
    one also runs CoreDNS, added here (a hand-made object): without any kube-system pod the pod list would read
    as "not collected" and kube-proxy as unknown."""
    from dataclasses import replace

    from kpdoctor.cluster.parse import parse_pod

    coredns = parse_pod({"metadata": {"name": "coredns-5d78c9869d-x2x7q", "namespace": "kube-system"},
                         "spec": {"nodeName": "edge-1"}, "status": {"phase": "Running"}})
    return replace(cluster, daemonsets=(), logs={},
                   pods=(*(p for p in cluster.pods if not p.name.startswith("kube-proxy")), coredns),
                   configmaps=tuple(c for c in cluster.configmaps if not c.name.startswith("kube-proxy")))


def not_answering(nodes: Mapping[str, NodeState]) -> dict[str, NodeState]:
    """The nodes after kube-proxy was deleted: its rules stay frozen, nothing answers on :10256/:10249."""
    return {name: without_kube_proxy_facts(n) for name, n in nodes.items()}


def without_kube_proxy_facts(node: NodeState) -> NodeState:
    return NodeState(node.name, node.transport, MappingProxyType(
        {k: f for k, f in node.facts.items() if not k.startswith("kube-proxy/")}))


# ------------------------------------------------------------------------------- checks


def all_checks() -> list[Check]:
    found = []
    for info in sorted(pkgutil.iter_modules(checks.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"kpdoctor.checks.{info.name}")
        found.append(module.CHECK)
    return found


RunFn = Callable[[Check, CheckContext], Iterable[Finding]]


def _runs_clean(check: Check, ctx: CheckContext) -> Iterable[Finding]:
    return ()


def hand_made_check(check_id: str, run: RunFn = _runs_clean, *, scope: Scope = "cluster",
                    severity: Severity = Severity.WARNING, title: str = "", **attrs: Any) -> type[Check]:
    """A hand-made check class (said so: engine, registry and report tests that need known findings, not a
    built-in): the plugin API's metadata class attributes (`attrs`: tags, requires, remediation, ...) plus `run`,
    which is called as a method (`run(self, ctx)`). Without `run` it finds nothing."""
    body: dict[str, Any] = {"id": check_id, "title": title or check_id, "scope": scope, "severity": severity,
                            "run": run, **attrs}
    return type(check_id.replace("-", "_").title(), (Check,), body)


def run_check(
    check: Check,
    cluster: ClusterState,
    nodes: Mapping[str, NodeState] | None = None,
    *,
    node: str | None = None,
    options: ScanOptions | None = None,
) -> list[Finding]:
    """Run one check: cluster scope once, node scope on `node` (or every node)."""
    nodes = dict(nodes or {})
    view = MappingProxyType(nodes)
    opts = options if options is not None else ScanOptions()
    cache: dict[tuple[str, str], Any] = {}
    if check.scope == "cluster":
        return list(check.run(CheckContext(cluster=cluster, nodes=view, options=opts, _cache=cache)))
    out: list[Finding] = []
    for name in [node] if node else sorted(nodes):
        ctx = CheckContext(cluster=cluster, node=nodes[name], nodes=view, options=opts, _cache=cache)
        out += list(check.run(ctx))
    return out


def run_on_node(check: Check, cluster: ClusterState, nodes: Mapping[str, NodeState], state: NodeState) -> list[Finding]:
    """Run a node check on `state`, standing in for the node of the same name among `nodes` (the other nodes
    stay visible to the check, as in a real scan)."""
    return run_check(check, cluster, {**nodes, state.name: state}, node=state.name)


def scan(cluster: ClusterState, nodes: Mapping[str, NodeState], **kw: Any) -> list[Finding]:
    out: list[Finding] = []
    for check in all_checks():
        out += run_check(check, cluster, nodes, **kw)
    return out


def at_least(findings: Iterable[Finding], severity: Severity) -> list[Finding]:
    return [f for f in findings if f.severity >= severity]


def describe(findings: Iterable[Finding]) -> str:
    return "\n".join(f"[{f.severity.label}] {f.check_id} {f.scope} {f.subject}: {f.message}" for f in findings)


# ---------------------------------------------------------------------------------- lab


def sh(args: list[str], *, netns: str | None = None, input: str | None = None, check: bool = True,
       timeout: float = 30) -> subprocess.CompletedProcess[str]:
    argv = ["ip", "netns", "exec", netns, *args] if netns else args
    proc = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


@contextmanager
def netns(prefix: str = "kpd") -> Iterator[str]:
    """A fresh, uniquely named network namespace (loopback up), always deleted afterwards."""
    name = f"{prefix}-{secrets.token_hex(3)}"
    sh(["ip", "netns", "add", name])
    try:
        sh(["ip", "link", "set", "lo", "up"], netns=name)
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], capture_output=True, timeout=30)


def prepare_nfacct(ns: str) -> None:
    """kube-proxy's rules reference these nfacct objects; iptables-restore fails without them."""
    for counter in ("ct_state_invalid_dropped_pkts", "localhost_nps_accepted_pkts"):
        subprocess.run(["ip", "netns", "exec", ns, "nfacct", "add", counter], capture_output=True, timeout=10)


SYSCTL_KEYS = (
    "net.ipv4.ip_forward",
    "net.ipv4.conf.all.route_localnet",
    "net.bridge.bridge-nf-call-iptables",
    "net.netfilter.nf_conntrack_max",
    "net.netfilter.nf_conntrack_count",
    "net.netfilter.nf_conntrack_tcp_be_liberal",
)

# fact file -> command run inside the namespace (what a collector runs on a node)
_COMMANDS: dict[str, list[str]] = {
    "uname-r.txt": ["uname", "-r"],
    "iptables-version.txt": ["iptables", "--version"],
    "iptables-save.txt": ["iptables-save"],
    "iptables-nft-save.txt": ["iptables-nft-save"],
    "iptables-legacy-save.txt": ["iptables-legacy-save"],
    "ip6tables-save.txt": ["ip6tables-save"],
    "nft-ruleset.json": ["nft", "-j", "list", "ruleset"],
    "ipvsadm-save.txt": ["ipvsadm", "--save", "-n"],
    "ipset-list.txt": ["ipset", "list"],
    "ip-addr.json": ["ip", "-j", "addr"],
    "conntrack-stats.txt": ["conntrack", "-S"],
}
_FILES = {
    "proc-modules.txt": "/proc/modules",
    "proc-net-ip_vs.txt": "/proc/net/ip_vs",
    "ip_tables_names.txt": "/proc/net/ip_tables_names",
    "ip_tables_matches.txt": "/proc/net/ip_tables_matches",
    "ip_tables_targets.txt": "/proc/net/ip_tables_targets",
}


def collect_facts(ns: str, name: str, *, conntrack_dst: Iterable[str] = (),
                  extra: Mapping[str, str] | None = None) -> NodeState:
    """Run the collector's commands inside `ns`; a failing command is an absent fact, a missing file a fact
    without content that says why (as the real collector records both)."""
    facts: dict[str, Fact] = {}
    for key, argv in _COMMANDS.items():
        proc = sh(argv, netns=ns, check=False)
        if proc.returncode == 0:
            facts[key] = Fact(key, proc.stdout, source=" ".join(argv), exit_code=0)
    for key, path in _FILES.items():
        proc = sh(["cat", path], netns=ns, check=False)
        if proc.returncode == 0:
            facts[key] = Fact(key, proc.stdout, source=path, exit_code=0)
        else:  # as the collector records it: read and missing, with the reason (not "not collected")
            facts[key] = Fact(key, None, source=path, exit_code=proc.returncode,
                              error=proc.stderr.strip() or f"cat {path} failed")
    release = os.uname().release
    builtin = Path(f"/lib/modules/{release}/modules.builtin")
    if builtin.is_file():
        facts["modules-builtin.txt"] = Fact("modules-builtin.txt", builtin.read_text(), source=str(builtin))
    lines = []
    for key in SYSCTL_KEYS:
        proc = sh(["sysctl", key], netns=ns, check=False)
        if proc.returncode == 0:
            lines.append(proc.stdout.strip())
    facts["sysctl.txt"] = Fact("sysctl.txt", "\n".join(lines) + "\n", source="sysctl", exit_code=0)
    entries = []
    for dst in conntrack_dst:
        proc = sh(["conntrack", "-L", "--orig-dst", dst], netns=ns, check=False)
        entries += [line for line in proc.stdout.splitlines() if line.strip()]
    facts["conntrack-services.txt"] = Fact("conntrack-services.txt", "".join(e + "\n" for e in entries),
                                           source="conntrack -L", exit_code=0)
    for key, content in (extra or {}).items():
        facts[key] = Fact(key, content, source=key, exit_code=0)
    return NodeState(name=name, transport="local", facts=MappingProxyType(facts))


def golden_text(scenario: str, *parts: str) -> str:
    return (GOLDEN / scenario).joinpath(*parts).read_text(encoding="utf-8")


def golden_cluster(scenario: str) -> ClusterState:
    return load_snapshot(GOLDEN / scenario / "cluster")


def json_dump(obj: Any) -> str:
    return json.dumps(obj)


# ------------------------------------------------------------------------------ lab nodes (bundle B1's rules in a netns)

B1 = BUNDLES / "B1-healthy" / "bundle" / "nodes"
EDGE1_RULES = (B1 / "edge-1" / "iptables-save.txt").read_text()
EDGE2_NFT = (B1 / "edge-2" / "nft-ruleset.json").read_text()
B1_NODE_IPS = {"edge-1": "10.81.0.2", "edge-2": "10.82.0.2"}
KUBE_PROXY_FACTS = ("healthz.json", "metrics.txt", "proxyMode.txt", "configz.json")


def make_node(ns: str, ip: str) -> None:
    """An 'eth0' with the node's InternalIP (nodePortAddresses: [primary] and ip-addr.json need it)."""
    sh(["ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0-peer"], netns=ns)
    sh(["ip", "link", "set", "eth0-peer", "up"], netns=ns)
    sh(["ip", "addr", "add", f"{ip}/24", "dev", "eth0"], netns=ns)
    sh(["ip", "link", "set", "eth0", "up"], netns=ns)
    sh(["ip", "route", "add", "default", "via", ip.rsplit(".", 1)[0] + ".1"], netns=ns)
    sh(["sysctl", "-qw", "net.ipv4.ip_forward=1"], netns=ns)


def restore(ns: str, rules: str, tool: str = "iptables-restore") -> None:
    prepare_nfacct(ns)
    sh([tool], netns=ns, input=rules)


def lab_node(ns: str, name: str, *, conntrack_dst: tuple[str, ...] = ()) -> NodeState:
    extra = {f"kube-proxy/{f}": (B1 / name / "kube-proxy" / f).read_text() for f in KUBE_PROXY_FACTS}
    return collect_facts(ns, name, conntrack_dst=conntrack_dst, extra=extra)


def verdicts(check: Check, cluster: ClusterState, nodes: Mapping[str, NodeState], *,
             at: Severity = Severity.INFO, node: str | None = None) -> list[tuple[str, str, Severity]]:
    """(scope, subject, severity) of `check`'s findings at or above `at`: what a per-check test asserts."""
    return sorted(((f.scope, f.subject, f.severity) for f in run_check(check, cluster, nodes, node=node)
                   if f.severity >= at), key=lambda v: (v[0], v[1]))


@dataclass(frozen=True)
class LabEdge:
    """A namespace set up as one of bundle B1's nodes; `findings` collects its facts for real each time."""

    ns: str
    name: str
    cluster: ClusterState
    nodes: Mapping[str, NodeState]

    def node(self, *, conntrack_dst: tuple[str, ...] = ()) -> NodeState:
        return lab_node(self.ns, self.name, conntrack_dst=conntrack_dst)

    def findings(self, check: Check, cluster: ClusterState | None = None, *,
                 conntrack_dst: tuple[str, ...] = ()) -> list[Finding]:
        """`check` on freshly collected facts (against `cluster`, default B1's API objects)."""
        state = self.node(conntrack_dst=conntrack_dst)
        return run_on_node(check, cluster or self.cluster, self.nodes, state)

    def run_shell(self, command: str) -> None:
        """One remediation command (its `# ...` comment cut) run by `sh -c` inside the namespace."""
        sh(["sh", "-c", command.split("#")[0]], netns=self.ns)


@contextmanager
def b1_edge(prefix: str, *, name: str = "edge-1", rules: str | None = EDGE1_RULES) -> Iterator[LabEdge]:
    """A fresh namespace made like B1's `name` (its InternalIP on eth0), with `rules` restored by the real
    iptables-restore (None: no rules; nft rulesets are loaded by the test)."""
    cluster, nodes = load_bundle("B1-healthy")
    with netns(prefix) as ns:
        make_node(ns, B1_NODE_IPS[name])
        if rules is not None:
            restore(ns, rules)
        yield LabEdge(ns, name, cluster, nodes)
