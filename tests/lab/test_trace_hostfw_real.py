"""Real public host firewalls under kube-proxy's rules: the trace's verdicts against the kernel's.

The host firewalls are other people's, not ours (tests/fixtures/realworld/firewalls/*/SOURCE):
- `ufw-docker-iptables-S`: the filter table of a real ufw + Docker host (`iptables -S`: INPUT and FORWARD policy
  DROP, ufw's full chain set, Docker's DOCKER-USER / DOCKER-ISOLATION chains), and `docker-nat-save`, Docker's
  nat table from another real host (DNAT of published port 80, MASQUERADE), restored with
  `iptables-nft-restore --noflush` after kube-proxy's captured iptables rules (edge-1), so kube-proxy's jumps
  come first in PREROUTING, INPUT and FORWARD as on a real node (kube-proxy prepends them); a `docker0` veth
  holds Docker's 172.17.0.0/16;
- `calico-aks-kubenet-S`: the filter table of a real Calico + kube-proxy node (AKS), in place of the filter table's
  built-in chains of kube-proxy's captured iptables rules (edge-1); the pod sends through a cali* workload veth;
- `firewalld-centos8-nft`: a real CentOS 8 `table inet firewalld` (zones by iifname, input and forward ending in
  `reject with icmpx type admin-prohibited`), loaded with `nft -f` beside kube-proxy's captured nftables table
  (edge-2).
Real packets go from a client outside the node (NodePorts, ClusterIPs, the node's own ports that the firewall
allows or not), from a pod address behind the node, and from the node itself; the kernel's answer is the node's
conntrack table (see tests/lab/test_trace_kernel.py). The trace runs on what the kernel dumps in the namespace.
Every mismatch fails. Bounded: a fixed list of packets per ruleset plus MAX_EXAMPLES hypothesis-chosen ones.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kpdoctor.lab import netns
from kpdoctor.lab.apply import apply_iptables
from kpdoctor.trace.render import explain
from tests.support.trace_kernel import (
    CALICO_POD_IF,
    GOOD_CLIENT,
    KERNEL_TOOLS,
    NFT_RULES,
    NODE_IPS,
    POD_SRC,
    REAL_FIREWALLS,
    RULES,
    kernel_outcome,
    kube_proxy_table_only,
    load_calico_aks,
    load_ufw_docker,
    start_listener,
    trace_in_lab,
    wire_pod_source,
    wire_trace_lab,
)

pytestmark = pytest.mark.root(*KERNEL_TOOLS, "ipset")
FIREWALLD = REAL_FIREWALLS / "firewalld-centos8-nft" / "dump.txt"
NODE = "NODE"  # placeholder: the node's own address (differs per mode)
# (source kind, destination, port, protocol): kind "external" (client netns, arrives on n0), "pod" (arrives on
# pods0), "node" (locally generated)
PACKETS = [
    ("external", "10.96.150.30", 80, "tcp"),  # payments/ledger ClusterIP from outside
    ("external", "10.96.150.33", 53, "udp"),  # payments/pay-dns
    ("external", NODE, 31130, "tcp"),  # billing NodePort (eTP Cluster: masqueraded)
    ("external", NODE, 31131, "tcp"),  # pay-gateway NodePort (eTP Local: not masqueraded)
    ("external", NODE, 22, "tcp"),  # allowed by both firewalls
    ("external", NODE, 443, "tcp"),  # ufw allows it, firewalld does not
    ("external", NODE, 9090, "tcp"),  # firewalld allows it (cockpit), ufw does not
    ("external", NODE, 8080, "tcp"),  # neither allows it
    ("external", NODE, 443, "udp"),
    ("external", "10.99.7.7", 80, "tcp"),  # no rule names it: plain forwarding
    ("external", NODE, 80, "tcp"),  # Docker publishes 80 -> 172.17.0.2:8080 (ufw: DNAT, then FORWARD policy DROP)
    ("node", NODE, 80, "tcp"),  # node-local to Docker's published port (OUTPUT -> DOCKER)
    ("pod", "10.96.150.31", 443, "tcp"),  # pod -> ClusterIP (payments/billing)
    ("pod", "10.96.150.34", 8125, "udp"),  # pod -> ClusterIP (payments/audit-udp)
    ("pod", NODE, 8080, "tcp"),  # pod -> a node port no one allows
    ("node", "10.96.150.30", 80, "tcp"),  # node-local -> ClusterIP
    ("node", NODE, 31130, "tcp"),  # node-local -> its own NodePort
    ("pod", "10.244.52.11", 8080, "tcp"),  # pod -> pod (Calico: from-workload and to-workload chains)
    ("pod", "10.244.52.11", 4789, "udp"),  # VXLAN from a pod (Calico's workload chain drops it)
]
NODE_PORTS = [22, 80, 443, 6379, 8080, 9090, 31130, 31131, 31999]  # every TCP port sent to the node's address
SAMPLES = 60
MAX_EXAMPLES = 12


@dataclass
class FwNode:
    firewall: str
    mode: str
    node_ip: str
    node: str
    client: str
    pods: str
    dump: str
    ip_addr: str
    pod_if: str
    ipset_list: str | None

    def __repr__(self) -> str:
        return f"FwNode({self.firewall}, {self.node!r})"


@pytest.fixture(scope="module", params=["ufw", "firewalld", "calico"])
def fw(request: pytest.FixtureRequest) -> Iterator[FwNode]:
    from conftest import require_root

    require_root(*KERNEL_TOOLS, "ipset")
    firewall = request.param
    mode = "nftables" if firewall == "firewalld" else "iptables"
    node_ip = NODE_IPS[mode]
    prefix = netns.unique_prefix("kpd-hf")
    node, client, pods = f"{prefix}-node", f"{prefix}-cli", f"{prefix}-pods"
    listener = None
    try:
        wire_trace_lab(node, client, pods, node_ip)
        wire_pod_source(node, pods)
        if firewall == "ufw":
            apply_iptables(node, RULES.read_text())
            load_ufw_docker(node, pods)
            dump = netns.run(["iptables-nft-save"], netns=node).stdout
        elif firewall == "calico":
            apply_iptables(node, RULES.read_text())
            load_calico_aks(node)
            dump = netns.run(["iptables-nft-save"], netns=node).stdout
        else:
            netns.run(["nft", "-j", "-f", "-"], netns=node, input=kube_proxy_table_only(NFT_RULES.read_text()))
            netns.run(["nft", "-f", "-"], netns=node, input=FIREWALLD.read_text())
            dump = netns.run(["nft", "-j", "list", "ruleset"], netns=node).stdout
        ip_addr = netns.run(["ip", "-j", "addr"], netns=node).stdout
        ipset_list = netns.run(["ipset", "list"], netns=node).stdout if firewall == "calico" else None
        listener = start_listener(node, NODE_PORTS)
        yield FwNode(firewall, mode, node_ip, node, client, pods, dump, ip_addr,
                     CALICO_POD_IF if firewall == "calico" else "pods0", ipset_list)
    finally:
        if listener is not None:
            listener.kill()
            listener.wait(timeout=10)
        netns.delete(client)
        netns.delete(pods)
        netns.delete(node)


def _where(fw: FwNode, kind: str) -> tuple[str, str, str]:
    """(source address, the namespace that sends, the interface the packet arrives on at the node)."""
    if kind == "external":
        return GOOD_CLIENT, fw.client, "n0"
    if kind == "pod":
        return POD_SRC, fw.pods, fw.pod_if
    return fw.node_ip, fw.node, ""


def _check(fw: FwNode, kind: str, dst: str, dport: int, proto: str) -> None:
    dst = fw.node_ip if dst == NODE else dst
    src, sender, iif = _where(fw, kind)
    result, predicted, possible = trace_in_lab(fw.mode, fw.dump, fw.ip_addr, src, dst, dport, proto, iif,
                                               ipset_list=fw.ipset_list)
    assert not result.error, result.error
    many = len(possible) > 1
    observed = kernel_outcome(fw.node, sender, src, dst, dport, proto, SAMPLES if many else 3)
    case = f"{fw.firewall}: {kind} {src} -> {dst}:{dport}/{proto}"
    if not possible:
        assert observed == [], f"{case}: trace predicts no delivery ({explain(result)}), kernel confirmed {observed}"
        return
    assert observed, f"{case}: trace predicts {possible}, the kernel confirmed nothing"
    assert set(observed) <= possible, f"{case}: kernel used {set(observed) - possible}, trace allows only {possible}"
    if many and set(predicted) == possible:
        assert set(observed) == set(predicted), f"{case}: {SAMPLES} connections reached only {set(observed)}"


@pytest.mark.parametrize("packet", PACKETS, ids=[f"{k}-{d}:{p}/{t}" for k, d, p, t in PACKETS])
def test_listed_packets_match_kernel(fw: FwNode, packet: tuple[str, str, int, str]) -> None:
    _check(fw, *packet)


@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(["external", "pod", "node"]),
       dst=st.sampled_from([NODE, "10.96.150.30", "10.96.150.31", "10.96.150.35", "10.99.7.7"]),
       dport=st.sampled_from([22, 80, 443, 6379, 9090, 31130, 31131, 31999]),
       proto=st.sampled_from(["tcp", "udp"]))
def test_hypothesis_packets_match_kernel(fw: FwNode, kind: str, dst: str, dport: int, proto: str) -> None:
    _check(fw, kind, dst, dport, proto)


def test_explain_names_the_host_firewall(fw: FwNode) -> None:
    """On the kernel's own dump: a NodePort the host firewall stops (ufw's FORWARD policy DROP for an eTP=Local
    NodePort, which kube-proxy does not mark for masquerade so KUBE-FORWARD does not accept it; firewalld's forward
    reject for any NodePort) is explained as the firewall's doing, and the kernel agrees nothing got through."""
    if fw.firewall == "calico":
        _explain_calico_workload_drop(fw)
        return
    port = 31131 if fw.firewall == "ufw" else 31130
    result, _, possible = trace_in_lab(fw.mode, fw.dump, fw.ip_addr, GOOD_CLIENT, fw.node_ip, port, "tcp", "n0")
    assert possible == set()
    lines = explain(result)
    assert lines and all(f"host firewall {fw.firewall}" in line for line in lines), lines
    if fw.firewall == "ufw":
        assert all("filter FORWARD (policy DROP)" in line and "ufw-user-forward" in line for line in lines), lines
    else:
        assert all("inet firewalld filter_FORWARD (reject with icmpx admin-prohibited)" in line for line in lines)
    assert kernel_outcome(fw.node, fw.client, GOOD_CLIENT, fw.node_ip, port, "tcp", 3) == []


def _explain_calico_workload_drop(fw: FwNode) -> None:
    """Calico's workload chain drops VXLAN (UDP 4789) sent by a pod: explained as Calico's doing, at its rule."""
    result, _, possible = trace_in_lab(fw.mode, fw.dump, fw.ip_addr, POD_SRC, "10.244.52.11", 4789, "udp", fw.pod_if,
                                       ipset_list=fw.ipset_list)
    assert possible == set()
    lines = explain(result)
    assert lines and all("host firewall Calico" in line for line in lines), lines
    assert all(f"cali-fw-{CALICO_POD_IF}" in line for line in lines), lines
    assert kernel_outcome(fw.node, fw.pods, POD_SRC, "10.244.52.11", 4789, "udp", 3) == []
