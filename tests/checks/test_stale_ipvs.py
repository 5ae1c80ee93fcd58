"""KP-STALE-ENDPOINTS on an IPVS-mode node: remediation commands name real addresses, never `<node-ip>`.

IPVS cannot run here (this kernel has no ip_vs; see tests/fixtures/kube-proxy-v1.36/ipvs-unavailable), so
the node's IPVS state is not captured from a kernel: it is what kpdoctor's reference IPVS proxier
(`kpdoctor.proxier.ipvs.render_ipvs`) renders for the lab cluster's node - `ipvsadm --save -n` text, the
`ipset save` of kube-proxy's sets and its iptables rules - read back by the node-output parsers
(`kpdoctor.dataplane.ipvs`) exactly as a collected `ipvsadm-save.txt` / `ipset-list.txt` would be. The
drift (a stale real server on the NodePort virtual server only) is planted in that text.

A NodePort virtual server exists once per node address and the semantic view folds them into one frontend
with address "", so the check must take the address from the Node's InternalIP, or give no command.
"""

from __future__ import annotations

import json
from dataclasses import replace
from types import MappingProxyType

import kpdoctor.checks.stale_endpoints as stale
from kpdoctor.cluster.model import NodeAddress
from kpdoctor.cluster.state import ClusterState
from kpdoctor.dataplane.ipvs_document import parse_ipvs_document, split_ipvs_document
from kpdoctor.dataplane.semantic import CLUSTER_IP, NODE_PORT, Frontend
from kpdoctor.findings import Finding
from kpdoctor.lab.cluster import LabService, lab_cluster
from kpdoctor.lab.topology import NODE_IP, pod_ip
from kpdoctor.node.state import Fact, NodeState
from kpdoctor.proxier.context import build_input
from kpdoctor.proxier.ipvs import render_ipvs
from tests.support.checks import describe, run_check

NODE = "lab-node"
WEB = LabService("web", "10.96.0.10", 80, 8080, endpoints=(pod_ip(0), pod_ip(2)), node_port=30080)
GONE = f"{pod_ip(1)}:8080"  # a pod deleted before the last sync, still a real server on the NodePort VS


def _ip_addr_json(vips: tuple[str, ...]) -> str:
    """`ip -j addr` of the node: eth0 with the InternalIP, kube-ipvs0 holding the Service VIPs."""
    return json.dumps([
        {"ifindex": 1, "ifname": "lo", "addr_info": [{"family": "inet", "local": "127.0.0.1", "prefixlen": 8,
                                                      "scope": "host"}]},
        {"ifindex": 2, "ifname": "eth0", "addr_info": [{"family": "inet", "local": NODE_IP, "prefixlen": 24,
                                                        "scope": "global"}]},
        {"ifindex": 3, "ifname": "kube-ipvs0", "addr_info": [{"family": "inet", "local": v, "prefixlen": 32,
                                                              "scope": "global"} for v in vips]},
    ])


def ipvs_node(cluster: ClusterState, *, extra_real_server: str = "") -> NodeState:
    """The node's facts as collected from an IPVS-mode kube-proxy that synced `cluster`."""
    document = render_ipvs(build_input(cluster, NODE, mode="ipvs"))
    parts = split_ipvs_document(document)
    parsed = parse_ipvs_document(document)  # the rendered text reads back with the node-output parsers
    assert any(vs.port == 30080 and vs.address == NODE_IP for vs in parsed.table.virtual_servers), parts
    ipvsadm = parts["ipvsadm --save -n"]
    if extra_real_server:
        ipvsadm += f"-a -t {NODE_IP}:30080 -r {extra_real_server} -m -w 1\n"
    facts = {
        "ipvsadm-save.txt": ipvsadm,
        "ipset-list.txt": parts["ipset save"],
        "iptables-save.txt": parts["iptables-restore"],
        "ip-addr.json": _ip_addr_json(parsed.addresses),
    }
    return NodeState(name=NODE, transport="bundle", facts=MappingProxyType(
        {k: Fact(k, v, source=k, exit_code=0) for k, v in facts.items()}))


def ipvs_cluster() -> ClusterState:
    return lab_cluster([WEB], node_name=NODE, mode="ipvs")


def _commands(findings: list[Finding]) -> list[str]:
    return [c for f in findings for c in (f.remediation.commands if f.remediation else ())]


def test_in_sync_ipvs_node_is_silent() -> None:
    cluster = ipvs_cluster()
    found = run_check(stale.CHECK, cluster, {NODE: ipvs_node(cluster)}, node=NODE)
    assert found == [], describe(found)


def test_stale_real_server_on_nodeport_names_the_node_internal_ip() -> None:
    cluster = ipvs_cluster()
    node = ipvs_node(cluster, extra_real_server=GONE)
    found = run_check(stale.CHECK, cluster, {NODE: node}, node=NODE)
    assert len(found) == 1, describe(found)
    f = found[0]
    assert f.subject == "Service lab/web:tcp/TCP"
    assert GONE in f.message and "node-port" in f.message
    commands = _commands(found)
    assert f"ipvsadm -Ln -t {NODE_IP}:30080   # on {NODE}" in commands, commands
    assert f"conntrack -D -p tcp --orig-port-dst 30080 --dst-nat {pod_ip(1)}   # on {NODE}" in commands
    assert not any("<" in c and ">" in c for c in commands), commands  # no placeholder of any kind


def test_without_an_internal_ip_the_ipvsadm_command_is_left_out() -> None:
    cluster = ipvs_cluster()
    node = ipvs_node(cluster, extra_real_server=GONE)
    api_node = cluster.node_by_name[NODE]
    hostname_only = replace(api_node, addresses=(NodeAddress("Hostname", NODE),))
    unnamed = replace(cluster, nodes=tuple(hostname_only if n.name == NODE else n for n in cluster.nodes))
    assert unnamed.node_by_name[NODE].internal_ips == ()
    found = run_check(stale.CHECK, unnamed, {NODE: node}, node=NODE)
    commands = _commands(found)
    assert len(found) == 1, describe(found)
    assert not any(c.startswith("ipvsadm") for c in commands), commands
    assert not any("<node-ip>" in c for c in commands), commands
    assert any(c.startswith("conntrack -D -p tcp --orig-port-dst 30080") for c in commands), commands


def test_verify_command_per_mode() -> None:
    np = Frontend(NODE_PORT, "", 30080, "TCP")
    udp_np = Frontend(NODE_PORT, "", 30053, "UDP")
    cip = Frontend(CLUSTER_IP, "10.96.0.10", 80, "TCP")
    assert stale._verify("ipvs", np, [GONE], "ipvsadm-save.txt", NODE_IP) == f"ipvsadm -Ln -t {NODE_IP}:30080"
    assert stale._verify("ipvs", udp_np, [GONE], "ipvsadm-save.txt", "fd00::2") == "ipvsadm -Ln -u '[fd00::2]:30053'"
    assert stale._verify("ipvs", np, [GONE], "ipvsadm-save.txt") is None
    assert stale._verify("ipvs", cip, [GONE], "ipvsadm-save.txt") == "ipvsadm -Ln -t 10.96.0.10:80"
    assert stale._verify("iptables", np, [GONE], "iptables-legacy-save.txt") == \
        f"iptables-legacy-save -t nat | grep -E -- {pod_ip(1)}"
