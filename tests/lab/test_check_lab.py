"""Checks against real netfilter: rules loaded into fresh network namespaces, facts collected inside them.

Each test loads a real kube-proxy v1.36.2 ruleset (bundle B1: edge-1's iptables-save,
edge-2's nft ruleset) into a namespace named like edge-1/edge-2, plants a fault with
the real tools (iptables, nft, sysctl, conntrack), collects the node facts by running
the collector's commands inside the namespace, and runs the check: once with the
fault (reported, right subject and evidence) and once without (silent). kube-proxy
itself does not run in the lab; its HTTP surfaces (healthz/metrics/proxyMode/configz)
are the real recorded ones from the bundle.
"""

from __future__ import annotations

import json
import re
import shlex
import time
from dataclasses import replace
from pathlib import Path

import pytest

import kpdoctor.checks.backend_split as backend_split
import kpdoctor.checks.kernel_modules as kernel_modules
import kpdoctor.checks.leftover_rules as leftover
import kpdoctor.checks.nodeport_firewall as firewall
import kpdoctor.checks.stale_endpoints as stale
import kpdoctor.checks.sysctl_conntrack as sysctls
from kpdoctor.cluster.model import Endpoint
from kpdoctor.cluster.state import ClusterState
from kpdoctor.findings import Severity
from kpdoctor.scan_options import ScanOptions
from tests.support.checks import (
    EDGE1_RULES,
    EDGE2_NFT,
    b1_edge,
    describe,
    load_bundle,
    replace_fact,
    restore,
    run_check,
    run_on_node,
    sh,
    with_facts,
    without_kube_proxy,
    without_kube_proxy_facts,
)


def nft_loadable(ruleset_json: str) -> str:
    """`nft -j list ruleset` output in an order `nft -j -f` accepts (chains before the maps that jump to them)."""
    order = {"metainfo": 0, "table": 1, "chain": 2, "set": 3, "map": 3, "element": 4, "rule": 5}
    items = sorted(json.loads(ruleset_json)["nftables"], key=lambda x: order.get(next(iter(x)), 9))
    for item in items:
        body = next(iter(item.values()))
        if isinstance(body, dict):
            body.pop("handle", None)
    return json.dumps({"nftables": items})


def load_nft(ns: str, ruleset_json: str, tmp_path: Path) -> None:
    path = tmp_path / "ruleset.json"
    path.write_text(nft_loadable(ruleset_json))
    sh(["nft", "-j", "-f", str(path)], netns=ns)


def move_endpoint(cluster: ClusterState, old: str, new: str) -> ClusterState:
    """The API after a pod was replaced: EndpointSlices list `new` where they listed `old`."""
    slices = []
    for sl in cluster.endpoint_slices:
        eps = tuple(replace(ep, addresses=tuple(new if a == old else a for a in ep.addresses))
                    for ep in sl.endpoints)
        slices.append(replace(sl, endpoints=eps))
    return replace(cluster, endpoint_slices=tuple(slices))


def drop_endpoint(cluster: ClusterState, ip: str) -> ClusterState:
    slices = []
    for sl in cluster.endpoint_slices:
        eps: tuple[Endpoint, ...] = tuple(ep for ep in sl.endpoints if ip not in ep.addresses)
        slices.append(replace(sl, endpoints=eps))
    return replace(cluster, endpoint_slices=tuple(slices))


# ----------------------------------------------------------------------------- stale endpoints


@pytest.mark.root("iptables-restore", "iptables-save", "nfacct")
def test_stale_endpoints_iptables_lab_both_ways() -> None:
    with b1_edge("kpd-se") as lab:
        cluster, nodes = lab.cluster, lab.nodes
        node = lab.node()
        assert run_on_node(stale.CHECK, cluster, nodes, node) == []
        # fault 1: the API moved catalog's edge-1 endpoint 10.244.50.11 -> 10.244.50.19; the rules did not follow
        moved = move_endpoint(cluster, "10.244.50.11", "10.244.50.19")
        found = run_on_node(stale.CHECK, moved, nodes, node)
        assert [(f.subject, f.severity) for f in found] == [("Service storefront/catalog:http/TCP", Severity.ERROR)]
        assert "10.244.50.11:8080" in found[0].message and "10.244.50.19:8080" in found[0].message
        assert any("--to-destination 10.244.50.11:8080" in e for e in found[0].evidence)
        # fault 2: a Service's rules deleted in the kernel (its KUBE-SERVICES jump removed for real)
        line = next(x for x in EDGE1_RULES.splitlines() if x.startswith("-A KUBE-SERVICES -d 10.96.150.15/32"))
        sh(["iptables", "-t", "nat", *shlex.split(line.replace("-A ", "-D ", 1))], netns=lab.ns)
        node = lab.node()
        found = run_on_node(stale.CHECK, cluster, nodes, node)
        assert [(f.subject, f.message.split(":")[0]) for f in found] == [
            ("Service storefront/sessions:redis/TCP", "on node edge-1, storefront/sessions")
        ], describe(found)
        assert "no rule for cluster-ip 10.96.150.15:6379/TCP" in found[0].message
        # fault 3: a Service deleted from the API while its rules stay (rules for a deleted Service)
        gone = replace(cluster, services=tuple(s for s in cluster.services if s.name != "statsd"))
        found = run_on_node(stale.CHECK, gone, nodes, node)
        extra = [f for f in found if f.subject == "Service storefront/statsd:statsd/UDP"]
        assert extra and extra[0].severity == Severity.WARNING and "no longer exists" in extra[0].message


@pytest.mark.root("nft")
def test_stale_endpoints_nftables_lab_both_ways(tmp_path: Path) -> None:
    with b1_edge("kpd-sn", name="edge-2", rules=None) as lab:
        load_nft(lab.ns, EDGE2_NFT, tmp_path)
        node = lab.node()
    assert run_on_node(stale.CHECK, lab.cluster, lab.nodes, node) == []
    # plant: the nft ruleset still DNATs catalog to 10.244.51.12 while the API moved it to .22
    moved = move_endpoint(lab.cluster, "10.244.51.12", "10.244.51.22")
    found = run_on_node(stale.CHECK, moved, lab.nodes, node)
    assert [(f.scope, f.subject) for f in found] == [("edge-2", "Service storefront/catalog:http/TCP")]
    assert "10.244.51.12:8080" in found[0].message
    assert found[0].remediation is not None
    assert any(c.startswith("nft list table ip kube-proxy | grep") for c in found[0].remediation.commands)


@pytest.mark.root("iptables-restore", "conntrack", "nfacct")
def test_udp_conntrack_to_dead_endpoint_and_the_exact_delete_command() -> None:
    """Real UDP flow through kube-proxy's rules, then the endpoint moves: the entry stays NATed to the old IP."""
    statsd = ("10.96.150.14",)
    with b1_edge("kpd-ct") as lab:
        # statsd 10.96.150.14:8125/UDP -> 10.244.51.51 (on edge-2): send a few datagrams from this node
        code = ("import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('10.81.0.2',40125))\n"
                "for _ in range(3): s.sendto(b'x:1|c',('10.96.150.14',8125))\n")
        sh(["python3", "-c", code], netns=lab.ns)
        before = lab.node(conntrack_dst=statsd)
        assert "dst=10.96.150.14" in (before.text("conntrack-services.txt") or "")
        assert run_on_node(stale.CHECK, lab.cluster, lab.nodes, before) == []
        # the endpoint moves to 10.244.51.52 and the rules follow (as kube-proxy would); conntrack does not
        restore(lab.ns, EDGE1_RULES.replace("10.244.51.51", "10.244.51.52"))
        moved = move_endpoint(lab.cluster, "10.244.51.51", "10.244.51.52")
        found = lab.findings(stale.CHECK, moved, conntrack_dst=statsd)
        assert [(f.subject, f.severity) for f in found] == [("Service storefront/statsd:statsd/UDP", Severity.WARNING)]
        assert "still NATed to 10.244.51.51" in found[0].message
        assert any("dst=10.96.150.14" in e and "src=10.244.51.51" in e for e in found[0].evidence)
        assert found[0].remediation is not None
        cmd = found[0].remediation.commands[0].split("#")[0].strip()
        assert cmd == "conntrack -D -p udp --orig-dst 10.96.150.14 --orig-port-dst 8125 --dst-nat 10.244.51.51"
        # the command does exactly that, for real; afterwards the check is silent
        sh(cmd.split(), netns=lab.ns)
        after = lab.node(conntrack_dst=statsd)
        assert "10.244.51.51" not in (after.text("conntrack-services.txt") or "")
        assert run_on_node(stale.CHECK, moved, lab.nodes, after) == []


# ----------------------------------------------------------------------------- backend split / leftovers


@pytest.mark.root("iptables-restore", "iptables-legacy-restore", "nfacct")
def test_backend_split_lab_both_ways() -> None:
    with b1_edge("kpd-bs") as lab:
        assert lab.findings(backend_split.CHECK) == []
        restore(lab.ns, EDGE1_RULES, tool="iptables-legacy-restore")
        found = lab.findings(backend_split.CHECK)
        assert [(f.subject, f.severity) for f in found] == [("Node edge-1", Severity.ERROR)]
        assert any(e.startswith("iptables-legacy-save.txt: kube-proxy chains") for e in found[0].evidence)
        # the remediation's cleanup, run for real, clears the split
        assert found[0].remediation is not None
        for cmd in found[0].remediation.commands[1:3]:
            lab.run_shell(cmd.replace("/root/", "/tmp/"))
        assert lab.findings(backend_split.CHECK) == []


@pytest.mark.root("iptables-restore", "nft", "nfacct")
def test_leftover_nft_table_on_iptables_node_both_ways(tmp_path: Path) -> None:
    with b1_edge("kpd-lo") as lab:
        assert lab.findings(leftover.CHECK) == []
        load_nft(lab.ns, EDGE2_NFT, tmp_path)  # a previous nftables-mode kube-proxy's table left behind
        found = lab.findings(leftover.CHECK)
        assert [(f.subject, f.severity) for f in found] == [("Node edge-1", Severity.WARNING)]
        assert "leftover kube-proxy nftables state" in found[0].message
        assert "nft-ruleset.json: table ip kube-proxy, table ip6 kube-proxy" in found[0].evidence
        assert found[0].remediation is not None
        for cmd in found[0].remediation.commands[1:3]:
            lab.run_shell(cmd)
        assert lab.findings(leftover.CHECK) == []


@pytest.mark.root("iptables-restore", "nfacct")
def test_leftover_iptables_rules_after_kube_proxy_removed() -> None:
    """kube-proxy gone from the cluster (DaemonSets and pods deleted), its rules still on the node."""
    with b1_edge("kpd-lr") as lab:
        removed = without_kube_proxy(lab.cluster)
        node = without_kube_proxy_facts(lab.node())  # kube-proxy is gone: nothing answers
        found = run_on_node(leftover.CHECK, removed, lab.nodes, node)
        assert [(f.subject, f.severity) for f in found] == [("Node edge-1", Severity.ERROR)]
        assert found[0].remediation is not None
        cleanup = found[0].remediation.commands[1].split("#")[0]
        assert cleanup.strip() == "iptables-save | grep -v KUBE | iptables-restore"
        lab.run_shell(cleanup)
        node = without_kube_proxy_facts(lab.node())
        assert run_on_node(leftover.CHECK, removed, lab.nodes, node) == []


# ----------------------------------------------------------------------------- NodePort firewall


@pytest.mark.root("iptables-restore", "iptables", "nfacct")
def test_nodeport_firewall_lab_both_ways() -> None:
    with b1_edge("kpd-fw") as lab:
        ns = lab.ns
        assert lab.findings(firewall.CHECK) == []
        # a host firewall dropping the NodePort range in raw PREROUTING (before kube-proxy's DNAT)
        sh(["iptables", "-t", "raw", "-A", "PREROUTING", "-p", "tcp", "--dport", "30000:32767", "-j", "DROP"],
           netns=ns)
        found = lab.findings(firewall.CHECK)
        assert [(f.subject, f.severity) for f in found] == [("Node edge-1", Severity.ERROR)], describe(found)
        assert "31110/TCP" in found[0].message and "31111/TCP" in found[0].message
        assert re.search(r"iptables-save.txt:\d+: -A PREROUTING -p tcp -m tcp --dport 30000:32767 -j DROP",
                         found[0].evidence[0])
        sh(["iptables", "-t", "raw", "-F", "PREROUTING"], netns=ns)
        # FORWARD policy DROP and kube-proxy's KUBE-FORWARD jump gone
        sh(["iptables", "-P", "FORWARD", "DROP"], netns=ns)
        sh(["iptables", "-D", "FORWARD", "-m", "comment", "--comment", "kubernetes forwarding rules",
            "-j", "KUBE-FORWARD"], netns=ns)
        found = lab.findings(firewall.CHECK)
        assert [f.subject for f in found] == ["Node edge-1"]
        assert "FORWARD policy is DROP" in found[0].message and "KUBE-FORWARD" in found[0].message
        assert "iptables-save.txt: :FORWARD DROP" in found[0].evidence
        # a health-check node port rejected on INPUT before kube-proxy's accept
        sh(["iptables", "-P", "FORWARD", "ACCEPT"], netns=ns)
        sh(["iptables", "-I", "INPUT", "1", "-p", "tcp", "--dport", "31119", "-j", "REJECT"], netns=ns)
        found = lab.findings(firewall.CHECK)
        assert len(found) == 1 and "31119/TCP" in found[0].message and "health-check" in found[0].message


def test_nodeport_probe_results_interpreted() -> None:
    """The probe results' shape (documented in docs/checks/KP-NODEPORT-FIREWALL.md) on bundle B1."""
    cluster, nodes = load_bundle("B1-healthy")
    probe = [
        {"node": "edge-1", "address": "10.81.0.2", "port": 31110, "protocol": "TCP", "kind": "node-port",
         "result": "timeout", "elapsed": 3.0},
        {"node": "edge-2", "address": "10.82.0.2", "port": 31111, "protocol": "TCP", "kind": "node-port",
         "result": "timeout", "elapsed": 3.0},
        {"node": "edge-1", "address": "10.81.0.2", "port": 31111, "protocol": "TCP", "kind": "node-port",
         "result": "open", "elapsed": 0.01},
    ]
    found = run_check(firewall.CHECK, cluster, nodes, options=ScanOptions(probe=probe))
    errors = [f for f in found if f.severity == Severity.ERROR]
    assert [(f.scope, f.subject) for f in errors] == [("edge-1", "Service storefront/checkout:https/TCP")]
    assert "filtered" in errors[0].message and "security group" in errors[0].message
    infos = {(f.scope, f.subject) for f in found if f.severity == Severity.INFO}
    assert ("edge-2", "Service storefront/gateway:http/TCP") in infos
    assert run_check(firewall.CHECK, cluster, nodes, options=ScanOptions(probe=probe[2:])) == [
        f for f in run_check(firewall.CHECK, cluster, nodes) if f.severity == Severity.INFO
    ]


# ----------------------------------------------------------------------------- sysctls


@pytest.mark.root("sysctl")
def test_ip_forward_lab_both_ways() -> None:
    with b1_edge("kpd-sy", rules=None) as lab:
        assert lab.findings(sysctls.CHECK) == []
        sh(["sysctl", "-qw", "net.ipv4.ip_forward=0"], netns=lab.ns)
        found = lab.findings(sysctls.CHECK)
        assert [(f.subject, f.severity) for f in found] == [("Node edge-1", Severity.CRITICAL)]
        assert found[0].evidence == ("sysctl.txt: net.ipv4.ip_forward = 0",)
        assert found[0].remediation is not None
        assert found[0].remediation.commands[0].startswith("sysctl -w net.ipv4.ip_forward=1")


@pytest.mark.root("sysctl")
def test_bridge_nf_call_iptables_only_matters_with_a_pod_bridge() -> None:
    with b1_edge("kpd-br", rules=None) as lab:
        ns = lab.ns
        sh(["sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=0"], netns=ns)
        assert lab.findings(sysctls.CHECK) == []  # no bridge: irrelevant, silent
        sh(["ip", "link", "add", "cni0", "type", "bridge"], netns=ns)
        sh(["ip", "link", "add", "veth1a2b", "type", "veth", "peer", "name", "vpod1"], netns=ns)
        sh(["ip", "link", "set", "veth1a2b", "master", "cni0"], netns=ns)
        found = lab.findings(sysctls.CHECK)
        assert [(f.subject, f.severity) for f in found] == [("Node edge-1", Severity.ERROR)]
        assert "cni0" in found[0].message
        sh(["sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1"], netns=ns)
        assert lab.findings(sysctls.CHECK) == []


@pytest.mark.root("sysctl")
def test_conntrack_fill_ratio() -> None:
    """Real sysctl output of a namespace; the fill level is planted in the text (a real table cannot be filled
    safely here), the rest of the facts are real."""
    with b1_edge("kpd-cf", rules=None) as lab:
        node = lab.node()
    text = node.text("sysctl.txt") or ""
    limit = int(re.search(r"nf_conntrack_max = (\d+)", text).group(1))  # type: ignore[union-attr]
    full = re.sub(r"nf_conntrack_count = \d+", f"nf_conntrack_count = {int(limit * 0.95)}", text)
    found = run_on_node(sysctls.CHECK, lab.cluster, lab.nodes, replace_fact(node, "sysctl.txt", full))
    assert [(f.subject, f.severity) for f in found] == [("Node edge-1", Severity.ERROR)]
    assert "95% full" in found[0].message
    assert run_on_node(sysctls.CHECK, lab.cluster, lab.nodes, node) == []


# ----------------------------------------------------------------------------- kernel modules


@pytest.mark.root("iptables", "nft")
def test_this_kernel_fails_for_ipvs_only() -> None:
    """Facts of this machine's kernel (no /proc/modules, no IPVS), collected for real inside a namespace."""
    with b1_edge("kpd-km", rules=None) as lab:
        node = lab.node()
    cluster = lab.cluster
    assert node.text("proc-modules.txt") is None and node.text("proc-net-ip_vs.txt") is None
    verdicts = {}
    for mode in ("iptables", "nftables", "ipvs"):
        cms = tuple(
            replace(c, data={**c.data, "config.conf": re.sub(r"(?m)^mode: .*$", f"mode: {mode}",
                                                             c.data["config.conf"])})
            if c.name == "kube-proxy" else c for c in cluster.configmaps)
        found = run_on_node(kernel_modules.CHECK, replace(cluster, configmaps=cms), lab.nodes, node)
        verdicts[mode] = [f.severity for f in found if f.severity >= Severity.WARNING]
        if mode == "ipvs":
            assert "IPVS (ip_vs)" in found[0].message
            assert "proc-net-ip_vs.txt: absent" in found[0].evidence
    assert verdicts == {"iptables": [], "nftables": [], "ipvs": [Severity.ERROR]}


def test_everything_built_in_without_proc_modules_passes_ipvs() -> None:
    """A monolithic kernel: no /proc/modules, everything in modules.builtin, /proc/net/ip_vs present (the file
    formats are the kernel's; the content is written for this test since this machine has no IPVS)."""
    cluster, nodes = load_bundle("B4-ipvs-unavailable")
    builtin = "".join(f"kernel/net/netfilter/ipvs/{m}.ko\n" for m in ("ip_vs", "ip_vs_rr", "ip_vs_wrr", "ip_vs_sh"))
    builtin += "kernel/net/netfilter/nf_conntrack.ko\nkernel/net/netfilter/ipset/ip_set.ko\n"
    ip_vs = "IP Virtual Server version 1.2.1 (size=4096)\nProt LocalAddress:Port Scheduler Flags\n"
    node = with_facts(nodes["edge-1"], **{"modules-builtin.txt": builtin, "proc-net-ip_vs.txt": ip_vs})
    assert node.text("proc-modules.txt") is None
    assert run_on_node(kernel_modules.CHECK, cluster, nodes, node) == []
    assert time.time() > 0
