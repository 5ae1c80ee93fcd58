"""Upstream IPVS proxier expectations (kubernetes `pkg/proxy/ipvs/proxier_test.go`), ported.

This kernel has no IPVS (no /proc/net/ip_vs; kube-proxy v1.36.2 refuses IPVS mode here, see
tests/fixtures/kube-proxy-v1.36/ipvs-unavailable), so the virtual servers cannot be applied and
read back. Each test here rebuilds the inputs of one upstream test case (Services and
EndpointSlices as API dicts, the fake proxier's node name `test-node`, its node IPs and
nodePortAddresses) and asserts the expectations the upstream test asserts against its fake
IPVS / ipset / iptables handles: virtual servers and real servers, ipset entries, and the
per-chain (jump target, matched set) order that upstream's `checkIptables` compares.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from kpdoctor.addresses import IPV4, IPV6
from kpdoctor.cluster.config import KubeProxyConfig
from kpdoctor.cluster.snapshot import load_objects
from kpdoctor.dataplane.ipvs import RealServer, VirtualServer
from kpdoctor.proxier.context import build_input
from kpdoctor.proxier.ipvs import IPVSState, ipvs_state, render_ipvs, set_name

NODE = "test-node"


# ----------------------------------------------------------------- builders (upstream's makeTest* helpers)
def svc(ns: str, name: str, *, type_: str = "ClusterIP", cluster_ip: str, ports: list[dict[str, Any]],
        **spec: Any) -> dict[str, Any]:
    lb_ips = spec.pop("lb_ips", ())
    body: dict[str, Any] = {"type": type_, "clusterIP": cluster_ip, "ports": ports, **spec}
    obj: dict[str, Any] = {"kind": "Service", "metadata": {"namespace": ns, "name": name}, "spec": body}
    if lb_ips:
        obj["status"] = {"loadBalancer": {"ingress": [{"ip": ip} for ip in lb_ips]}}
    return obj


def port(name: str, number: int, proto: str = "TCP", node_port: int = 0) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "port": number, "protocol": proto}
    if node_port:
        out["nodePort"] = node_port
    return out


def eps(ns: str, svc_name: str, n: int, endpoints: list[dict[str, Any]], ports: list[dict[str, Any]],
        family: str = "IPv4") -> dict[str, Any]:
    return {
        "kind": "EndpointSlice",
        "metadata": {"namespace": ns, "name": f"{svc_name}-{n}", "labels": {"kubernetes.io/service-name": svc_name}},
        "addressType": family,
        "endpoints": endpoints,
        "ports": ports,
    }


def ep(ip: str, node: str | None = None, **conditions: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"addresses": [ip]}
    if node:
        out["nodeName"] = node
    if conditions:
        out["conditions"] = conditions
    return out


def node(ips: tuple[str, ...]) -> dict[str, Any]:
    return {"kind": "Node", "metadata": {"name": NODE},
            "status": {"addresses": [{"type": "InternalIP", "address": ip} for ip in ips]}}


def state(objects: list[dict[str, Any]], *, node_ips: tuple[str, ...] = (), family: str = IPV4,
          npa: tuple[str, ...] | None = None, **cfg: Any) -> IPVSState:
    """The fake proxier: NoOpLocalDetector (no clusterCIDR), scheduler rr, masqueradeAll false."""
    cluster = load_objects([(o, "test") for o in [*objects, node(node_ips)]])
    config = replace(KubeProxyConfig(mode="ipvs", node_port_addresses=npa), **cfg)
    return ipvs_state(build_input(cluster, NODE, config=config, family=family))


def vs_map(st: IPVSState) -> dict[tuple[str, str, int], tuple[str, ...]]:
    return {vs.key: tuple(rs.key for rs in vs.real_servers) for vs in st.virtual_servers}


def members(st: IPVSState, name: str) -> set[str]:
    return set(st.ipset(name).members)


def chains(st: IPVSState) -> dict[str, list[tuple[str, str]]]:
    """Per chain, (jump target, matched set) in order: nat rules first, then filter (upstream's GetRules)."""
    out: dict[str, list[tuple[str, str]]] = {}
    table = ""
    for line in st.iptables.splitlines():
        if line.startswith("*"):
            table = line[1:]
        if not line.startswith("-A ") or "EnsureRule" in line:
            continue
        words = line.split()
        chain = words[1]
        if chain in ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING", "FORWARD"):
            continue  # kube-proxy's EnsureRule jumps, not part of upstream's restore data
        jump = words[words.index("-j") + 1]
        matched = words[words.index("--match-set") + 1] if "--match-set" in words else ""
        source = words[words.index("-s") + 1] if "-s" in words and "!" not in words[words.index("-s") - 1] else ""
        out.setdefault(chain, []).append((jump, matched or source))
    assert table == "filter"
    return out


# ----------------------------------------------------------------- TestNodePortIPv4
def test_node_port_ipv4_two_endpoint_families() -> None:
    """TestNodePortIPv4 "1 service with node port, has 2 endpoints": only the IPv4 slice and node IP count."""
    st = state([
        svc("ns1", "svc1", type_="NodePort", cluster_ip="10.20.30.41", ports=[port("p80", 80, node_port=3001)]),
        eps("ns1", "svc1", 1, [ep("10.180.0.1")], [port("p80", 80)]),
        eps("ns1", "svc1", 2, [ep("1002:ab8::2:10")], [port("p80", 80)], family="IPv6"),
    ], node_ips=("100.101.102.103", "2001:db8::1:1"), npa=())
    assert vs_map(st) == {
        ("TCP", "10.20.30.41", 80): ("10.180.0.1:80",),
        ("TCP", "100.101.102.103", 3001): ("10.180.0.1:80",),
    }
    assert all(vs.scheduler == "rr" and vs.persistent == 0 for vs in st.virtual_servers)
    assert all(rs == RealServer(rs.address, rs.port, 1, "Masq") for vs in st.virtual_servers for rs in vs.real_servers)


def test_node_port_ipv4_udp() -> None:
    """TestNodePortIPv4 "1 UDP service with node port, has endpoints" (nodePortAddresses 0.0.0.0/0)."""
    st = state([
        svc("ns1", "svc1", type_="NodePort", cluster_ip="10.20.30.41", ports=[port("p80", 80, "UDP", 3001)]),
        eps("ns1", "svc1", 1, [ep("10.180.0.1")], [port("p80", 80, "UDP")]),
    ], node_ips=("100.101.102.103",), npa=("0.0.0.0/0",))
    assert vs_map(st) == {
        ("UDP", "10.20.30.41", 80): ("10.180.0.1:80",),
        ("UDP", "100.101.102.103", 3001): ("10.180.0.1:80",),
    }
    assert members(st, "KUBE-NODE-PORT-UDP") == {"3001"}
    got = chains(st)
    assert got["KUBE-NODE-PORT"] == [("KUBE-MARK-MASQ", "KUBE-NODE-PORT-UDP"), ("ACCEPT", "KUBE-HEALTH-CHECK-NODE-PORT")]
    assert got["KUBE-SERVICES"] == [
        ("RETURN", "127.0.0.0/8"), ("KUBE-MARK-MASQ", "KUBE-CLUSTER-IP"), ("KUBE-NODE-PORT", ""),
        ("ACCEPT", "KUBE-CLUSTER-IP"),
    ]


def test_node_port_no_endpoints() -> None:
    """TestNodePortIPv4 "service has node port but no endpoints": virtual servers without real servers."""
    st = state([
        svc("ns1", "svc1", type_="NodePort", cluster_ip="10.20.30.41", ports=[port("p80", 80, node_port=3001)]),
    ], node_ips=("100.101.102.103",), npa=())
    assert vs_map(st) == {("TCP", "10.20.30.41", 80): (), ("TCP", "100.101.102.103", 3001): ()}


def test_node_port_sctp_multiple_node_ips() -> None:
    """TestNodePortIPv4 "node port service with protocol sctp on a node with multiple nodeIPs"."""
    ips = ("100.101.102.103", "100.101.102.104", "100.101.102.105", "2001:db8::1:1", "2001:db8::1:2")
    st = state([
        svc("ns1", "svc1", type_="NodePort", cluster_ip="10.20.30.41", ports=[port("p80", 80, "SCTP", 3001)]),
        eps("ns1", "svc1", 1, [ep("10.180.0.1")], [port("p80", 80, "SCTP")]),
    ], node_ips=ips, npa=())
    assert vs_map(st) == {("SCTP", "10.20.30.41", 80): ("10.180.0.1:80",)} | {
        ("SCTP", ip, 3001): ("10.180.0.1:80",) for ip in ips[:3]
    }
    assert members(st, "KUBE-NODE-PORT-SCTP-HASH") == {f"{ip},sctp:3001" for ip in ips[:3]}


def test_node_port_sctp_local() -> None:
    """TestNodePortIPv4 "node port service with protocol sctp and externalTrafficPolicy local"."""
    st = state([
        svc("ns1", "svc1", type_="NodePort", cluster_ip="10.20.30.41", ports=[port("p80", 80, "SCTP", 3001)],
            externalTrafficPolicy="Local"),
        eps("ns1", "svc1", 1, [ep("10.180.0.1", NODE), ep("10.180.1.1", "other-node")], [port("p80", 80, "SCTP")]),
    ], node_ips=("100.101.102.103",), npa=())
    assert vs_map(st) == {
        ("SCTP", "10.20.30.41", 80): ("10.180.0.1:80", "10.180.1.1:80"),
        ("SCTP", "100.101.102.103", 3001): ("10.180.0.1:80",),
    }
    assert members(st, "KUBE-NODE-PORT-SCTP-HASH") == {"100.101.102.103,sctp:3001"}
    assert members(st, "KUBE-NODE-PORT-LOCAL-SCTP-HASH") == {"100.101.102.103,sctp:3001"}
    assert chains(st)["KUBE-NODE-PORT"] == [
        ("RETURN", "KUBE-NODE-PORT-LOCAL-SCTP-HASH"), ("KUBE-MARK-MASQ", "KUBE-NODE-PORT-SCTP-HASH"),
        ("ACCEPT", "KUBE-HEALTH-CHECK-NODE-PORT"),
    ]


# ----------------------------------------------------------------- IPv6 / TestIPv4Proxier / TestIPv6Proxier
def test_node_port_ipv6() -> None:
    """TestNodePortIPv6 "1 service with node port, has 2 endpoints": the IPv6 proxier; sets are KUBE-6-*."""
    st = state([
        svc("ns1", "svc1", type_="NodePort", cluster_ip="2020::1", ports=[port("p80", 80, node_port=3001)]),
        eps("ns1", "svc1", 1, [ep("10.180.0.1")], [port("p80", 80)]),
        eps("ns1", "svc1", 2, [ep("1002:ab8::2:10")], [port("p80", 80)], family="IPv6"),
    ], node_ips=("100.101.102.103", "2001:db8::1:1"), npa=(), family=IPV6)
    assert vs_map(st) == {
        ("TCP", "2001:db8::1:1", 3001): ("[1002:ab8::2:10]:80",),
        ("TCP", "2020::1", 80): ("[1002:ab8::2:10]:80",),
    }
    assert st.ipset("KUBE-CLUSTER-IP").name == "KUBE-6-CLUSTER-IP"
    assert members(st, "KUBE-CLUSTER-IP") == {"2020::1,tcp:80"}
    assert set_name("KUBE-LOAD-BALANCER-SOURCE-CIDR", IPV6) == "KUBE-6-LOAD-BALANCER-SOURCE-CID"  # 31 chars
    assert "-A KUBE-SERVICES -s ::1/128 -j RETURN" in st.iptables


def test_ipv6_udp_service_on_ipv4_only_cluster_does_nothing() -> None:
    """TestNodePortIPv6 "1 UDP service with node port, has endpoints (no action on IPv6 Proxier)"."""
    st = state([
        svc("ns1", "svc1", type_="NodePort", cluster_ip="10.20.30.41", ports=[port("p80", 80, "UDP", 3001)]),
        eps("ns1", "svc1", 1, [ep("10.180.0.1")], [port("p80", 80, "UDP")], family="IPv6"),
    ], node_ips=("100.101.102.103",), npa=("0.0.0.0/0",), family=IPV6)
    assert st.virtual_servers == ()


@pytest.mark.parametrize("family", [IPV4, IPV6])
def test_cluster_ip_per_family(family: str) -> None:
    """TestIPv4Proxier / TestIPv6Proxier "2 services with Cluster IP, each with endpoints" and "no endpoints"."""
    objects = [
        svc("ns1", "svc1", cluster_ip="10.20.30.41", ports=[port("p80", 80)]),
        svc("ns2", "svc2", cluster_ip="1002:ab8::2:1", ports=[port("p8080", 8080)]),
        svc("ns3", "svc3", cluster_ip="2001::1" if family == IPV6 else "10.20.30.42", ports=[port("p80", 80)]),
        eps("ns1", "svc1", 1, [ep("10.180.0.1")], [port("p80", 80)]),
        eps("ns2", "svc2", 1, [ep("1009:ab8::5:6")], [port("p8080", 8080)], family="IPv6"),
    ]
    st = state(objects, family=family)
    if family == IPV4:
        assert vs_map(st) == {("TCP", "10.20.30.41", 80): ("10.180.0.1:80",), ("TCP", "10.20.30.42", 80): ()}
    else:
        assert vs_map(st) == {("TCP", "1002:ab8::2:1", 8080): ("[1009:ab8::5:6]:8080",), ("TCP", "2001::1", 80): ()}


# ----------------------------------------------------------------- external IPs
def test_external_ips_no_endpoint() -> None:
    """TestExternalIPsNoEndpoint: 2 virtual servers, the external one without destinations."""
    st = state([svc("ns1", "svc1", cluster_ip="10.20.30.41", ports=[port("p80", 80)], externalIPs=["50.60.70.81"])])
    assert vs_map(st) == {("TCP", "10.20.30.41", 80): (), ("TCP", "50.60.70.81", 80): ()}


def test_external_ips() -> None:
    """TestExternalIPs: 3 virtual servers ("ipvs filters out by ipfamily": 2012::51 dropped, 127.0.0.1 kept)."""
    st = state([
        svc("ns1", "svc1", cluster_ip="10.20.30.41", ports=[port("p80", 80)],
            externalIPs=["50.60.70.81", "2012::51", "127.0.0.1"]),
        eps("ns1", "svc1", 1, [ep("10.180.0.1")], [port("p80", 80)]),
    ])
    assert set(vs_map(st)) == {("TCP", "10.20.30.41", 80), ("TCP", "50.60.70.81", 80), ("TCP", "127.0.0.1", 80)}
    assert vs_map(st)[("TCP", "50.60.70.81", 80)] == ("10.180.0.1:80",)
    assert members(st, "KUBE-EXTERNAL-IP") == {"50.60.70.81,tcp:80", "127.0.0.1,tcp:80"}
    assert "127.0.0.1" in st.addresses and "50.60.70.81" in st.addresses


def test_only_local_external_ips() -> None:
    """TestOnlyLocalExternalIPs: eTP=Local external IPs get only the local endpoint."""
    st = state([
        svc("ns1", "svc1", type_="NodePort", cluster_ip="10.20.30.41", ports=[port("p80", 80)],
            externalIPs=["50.60.70.81", "2012::51", "127.0.0.1"], externalTrafficPolicy="Local"),
        eps("ns1", "svc1", 1, [ep("10.180.0.1", NODE), ep("10.180.1.1", "other-node")], [port("p80", 80)]),
    ])
    assert len(st.virtual_servers) == 3
    assert vs_map(st)[("TCP", "50.60.70.81", 80)] == ("10.180.0.1:80",)
    assert vs_map(st)[("TCP", "10.20.30.41", 80)] == ("10.180.0.1:80", "10.180.1.1:80")
    assert members(st, "KUBE-EXTERNAL-IP-LOCAL") == {"50.60.70.81,tcp:80", "127.0.0.1,tcp:80"}
    assert members(st, "KUBE-EXTERNAL-IP") == set()


def test_accept_ipvs_traffic() -> None:
    """TestAcceptIPVSTraffic: KUBE-SERVICES order with cluster IPs, an LB, and external IPs."""
    objects = []
    for typ, ip, name, epip in (("ClusterIP", "10.20.30.40", "svc1", "10.180.0.1"),
                                ("LoadBalancer", "10.20.30.41", "svc2", "10.180.0.2"),
                                ("NodePort", "10.20.30.42", "svc3", "10.180.0.3")):
        extra: dict[str, Any] = {}
        if typ == "LoadBalancer":
            extra["lb_ips"] = ("1.2.3.4",)
        if typ == "ClusterIP":
            extra["externalIPs"] = ["5.6.7.8"]
        objects.append(svc("ns1", name, type_=typ, cluster_ip=ip,
                           ports=[port("p80", 80, node_port=80 if typ != "ClusterIP" else 0)], **extra))
        objects.append(eps("ns1", name, 1, [ep(epip)], [port("p80", 80)]))
    st = state(objects)
    assert chains(st)["KUBE-SERVICES"] == [
        ("RETURN", "127.0.0.0/8"), ("KUBE-LOAD-BALANCER", "KUBE-LOAD-BALANCER"),
        ("KUBE-MARK-MASQ", "KUBE-CLUSTER-IP"), ("KUBE-MARK-MASQ", "KUBE-EXTERNAL-IP"),
        ("ACCEPT", "KUBE-EXTERNAL-IP"), ("ACCEPT", "KUBE-EXTERNAL-IP"), ("KUBE-NODE-PORT", ""),
        ("ACCEPT", "KUBE-CLUSTER-IP"), ("ACCEPT", "KUBE-LOAD-BALANCER"),
    ]


# ----------------------------------------------------------------- load balancers
def test_load_balancer() -> None:
    """TestLoadBalancer: 2 virtual servers (no node IPs), KUBE-LOAD-BALANCER entry, chain order."""
    st = state([
        svc("ns1", "svc1", type_="LoadBalancer", cluster_ip="10.20.30.41", ports=[port("p80", 80, node_port=3001)],
            lb_ips=("1.2.3.4",)),
        eps("ns1", "svc1", 1, [ep("10.180.0.1")], [port("p80", 80)]),
    ])
    assert len(st.virtual_servers) == 2
    assert members(st, "KUBE-LOAD-BALANCER") == {"1.2.3.4,tcp:80"}
    got = chains(st)
    assert got["KUBE-SERVICES"] == [
        ("RETURN", "127.0.0.0/8"), ("KUBE-LOAD-BALANCER", "KUBE-LOAD-BALANCER"),
        ("KUBE-MARK-MASQ", "KUBE-CLUSTER-IP"), ("KUBE-NODE-PORT", ""),
        ("ACCEPT", "KUBE-CLUSTER-IP"), ("ACCEPT", "KUBE-LOAD-BALANCER"),
    ]
    assert got["KUBE-LOAD-BALANCER"] == [("KUBE-MARK-MASQ", "")]


def test_only_local_load_balancing() -> None:
    """TestOnlyLocalLoadBalancing: the LB VIP gets only the local endpoint; KUBE-LOAD-BALANCER-LOCAL RETURNs."""
    st = state([
        svc("ns1", "svc1", type_="LoadBalancer", cluster_ip="10.20.30.41", ports=[port("p80", 80, node_port=3001)],
            lb_ips=("1.2.3.4",), externalTrafficPolicy="Local"),
        eps("ns1", "svc1", 1, [ep("10.180.0.1", NODE), ep("10.180.1.1", "other-node")], [port("p80", 80)]),
    ])
    assert len(st.virtual_servers) == 2
    assert vs_map(st)[("TCP", "1.2.3.4", 80)] == ("10.180.0.1:80",)
    assert members(st, "KUBE-LOAD-BALANCER") == {"1.2.3.4,tcp:80"}
    assert members(st, "KUBE-LOAD-BALANCER-LOCAL") == {"1.2.3.4,tcp:80"}
    assert chains(st)["KUBE-LOAD-BALANCER"] == [
        ("RETURN", "KUBE-LOAD-BALANCER-LOCAL"), ("KUBE-MARK-MASQ", ""),
    ]


def test_load_balancer_source_ranges() -> None:
    """TestLoadBalancerSourceRanges: FW + SOURCE-CIDR sets, KUBE-PROXY-FIREWALL / KUBE-SOURCE-RANGES-FIREWALL.

    The fake proxier has no node IP, so the node is not inside the range and kube-proxy adds the
    KUBE-IPVS-OUT-FILTER drop for node-originated traffic to the VIP (kubernetes#119656)."""
    st = state([
        svc("ns1", "svc1", type_="LoadBalancer", cluster_ip="10.20.30.41", ports=[port("p80", 80)],
            lb_ips=("1.2.3.4",), loadBalancerSourceRanges=["10.0.0.0/8"]),
        eps("ns1", "svc1", 1, [ep("10.180.0.1")], [port("p80", 80)]),
    ])
    assert len(st.virtual_servers) == 2
    assert vs_map(st)[("TCP", "1.2.3.4", 80)] == ("10.180.0.1:80",)
    assert members(st, "KUBE-LOAD-BALANCER") == {"1.2.3.4,tcp:80"}
    assert members(st, "KUBE-LOAD-BALANCER-FW") == {"1.2.3.4,tcp:80"}
    assert members(st, "KUBE-LOAD-BALANCER-SOURCE-CIDR") == {"1.2.3.4,tcp:80,10.0.0.0/8"}
    got = chains(st)
    assert got["KUBE-PROXY-FIREWALL"] == [("KUBE-SOURCE-RANGES-FIREWALL", "KUBE-LOAD-BALANCER-FW")]
    assert got["KUBE-SOURCE-RANGES-FIREWALL"] == [("RETURN", "KUBE-LOAD-BALANCER-SOURCE-CIDR"), ("DROP", "")]
    assert got["KUBE-IPVS-OUT-FILTER"] == [("DROP", "1.2.3.4")]
    assert "-A KUBE-IPVS-OUT-FILTER -s 1.2.3.4 -m ipvs --vaddr 1.2.3.4 --vproto tcp --vport 80 -j DROP" in st.iptables


def test_load_balancer_source_ranges_node_inside() -> None:
    """proxier.go: a node IP inside a source range adds LB-IP,proto:port,LB-IP to KUBE-LOAD-BALANCER-SOURCE-IP
    ("allowFromNode") and no KUBE-IPVS-OUT-FILTER drop."""
    st = state([
        svc("ns1", "svc1", type_="LoadBalancer", cluster_ip="10.20.30.41", ports=[port("p80", 80)],
            lb_ips=("1.2.3.4",), loadBalancerSourceRanges=["100.101.0.0/16", "203.0.113.9/32"]),
        eps("ns1", "svc1", 1, [ep("10.180.0.1")], [port("p80", 80)]),
    ], node_ips=("100.101.102.103",))
    assert members(st, "KUBE-LOAD-BALANCER-SOURCE-IP") == {"1.2.3.4,tcp:80,1.2.3.4"}
    # ipset prints a /32 net without its prefix (ipset 7.17, checked on this machine)
    assert members(st, "KUBE-LOAD-BALANCER-SOURCE-CIDR") == {"1.2.3.4,tcp:80,100.101.0.0/16", "1.2.3.4,tcp:80,203.0.113.9"}
    assert "KUBE-IPVS-OUT-FILTER" not in chains(st)


# ----------------------------------------------------------------- node ports with addresses / health checks
def test_only_local_node_ports() -> None:
    """TestOnlyLocalNodePorts: nodePortAddresses 100.101.102.0/24; the node port VS has only the local endpoint."""
    st = state([
        svc("ns1", "svc1", type_="NodePort", cluster_ip="10.20.30.41", ports=[port("p80", 80, node_port=3001)],
            externalTrafficPolicy="Local"),
        eps("ns1", "svc1", 1, [ep("10.180.0.1", NODE), ep("10.180.1.1", "other-node")], [port("p80", 80)]),
    ], node_ips=("100.101.102.103", "2001:db8::"), npa=("100.101.102.0/24",))
    assert len(st.virtual_servers) == 2
    assert vs_map(st)[("TCP", "100.101.102.103", 3001)] == ("10.180.0.1:80",)
    assert members(st, "KUBE-NODE-PORT-TCP") == {"3001"} == members(st, "KUBE-NODE-PORT-LOCAL-TCP")
    got = chains(st)
    assert got["KUBE-SERVICES"] == [
        ("RETURN", "127.0.0.0/8"), ("KUBE-MARK-MASQ", "KUBE-CLUSTER-IP"), ("KUBE-NODE-PORT", ""),
        ("ACCEPT", "KUBE-CLUSTER-IP"),
    ]
    assert got["KUBE-NODE-PORT"] == [
        ("RETURN", "KUBE-NODE-PORT-LOCAL-TCP"), ("KUBE-MARK-MASQ", "KUBE-NODE-PORT-TCP"),
        ("ACCEPT", "KUBE-HEALTH-CHECK-NODE-PORT"),
    ]


def test_health_check_node_port() -> None:
    """TestHealthCheckNodePort: only eTP=Local LoadBalancers' health check ports enter the set."""
    objects = []
    for name, hc, policy in (("valid-svc1", 30000, "Local"), ("valid-svc2", 30001, "Local"),
                             ("invalid-svc3", 30002, "Cluster")):
        objects.append(svc("ns1", name, type_="LoadBalancer", cluster_ip="10.20.30.41",
                           ports=[port("p80", 80, node_port=3000)], externalTrafficPolicy=policy,
                           healthCheckNodePort=hc))
    st = state(objects, node_ips=("100.101.102.103", "2001:db8::"), npa=("100.101.102.0/24",))
    assert members(st, "KUBE-HEALTH-CHECK-NODE-PORT") == {"30000", "30001"}
    assert chains(st)["KUBE-NODE-PORT"] == [
        ("RETURN", "KUBE-NODE-PORT-LOCAL-TCP"), ("KUBE-MARK-MASQ", "KUBE-NODE-PORT-TCP"),
        ("ACCEPT", "KUBE-HEALTH-CHECK-NODE-PORT"),
    ]


# ----------------------------------------------------------------- behaviour read from proxier.go (not a test case)
def test_session_affinity_is_persistence() -> None:
    """proxier.go: ClientIP affinity sets FlagPersistent with Timeout = stickyMaxAgeSeconds on every VS of the port."""
    st = state([
        svc("ns1", "svc1", type_="NodePort", cluster_ip="10.20.30.41", ports=[port("p80", 80, node_port=3001)],
            sessionAffinity="ClientIP", sessionAffinityConfig={"clientIP": {"timeoutSeconds": 600}},
            externalIPs=["50.60.70.81"]),
        eps("ns1", "svc1", 1, [ep("10.180.0.1")], [port("p80", 80)]),
    ], node_ips=("100.101.102.103",))
    assert {vs.persistent for vs in st.virtual_servers} == {600}
    assert len(st.virtual_servers) == 3


def test_scheduler_from_config_and_mh_flag() -> None:
    """proxier.go: the configured scheduler on every VS; "mh" adds FlagSourceHash (ipvsadm shows mh-port)."""
    objects = [svc("ns1", "svc1", cluster_ip="10.20.30.41", ports=[port("p80", 80)])]
    assert state(objects, ipvs_scheduler="wrr").virtual_servers[0].scheduler == "wrr"
    mh = state(objects, ipvs_scheduler="mh").virtual_servers[0]
    assert (mh.scheduler, mh.sched_flags) == ("mh", ("mh-port",))


def test_internal_traffic_policy_local_without_local_endpoints() -> None:
    """syncEndpoint: iTP=Local with no local endpoints leaves the ClusterIP VS empty (refused), while for a
    Service that is also a NodePort the cluster endpoints are kept (kubernetes#97081)."""
    st = state([
        svc("ns1", "a", cluster_ip="10.20.30.41", ports=[port("p80", 80)], internalTrafficPolicy="Local"),
        svc("ns1", "b", type_="NodePort", cluster_ip="10.20.30.42", ports=[port("p80", 80, node_port=3001)],
            internalTrafficPolicy="Local"),
        eps("ns1", "a", 1, [ep("10.180.1.1", "other-node")], [port("p80", 80)]),
        eps("ns1", "b", 1, [ep("10.180.1.2", "other-node")], [port("p80", 80)]),
    ], node_ips=("100.101.102.103",))
    assert vs_map(st)[("TCP", "10.20.30.41", 80)] == ()
    assert vs_map(st)[("TCP", "10.20.30.42", 80)] == ("10.180.1.2:80",)


def test_loop_back_set_and_local_detector() -> None:
    """proxier.go: KUBE-LOOP-BACK holds every local endpoint (ip,proto:port,ip); with a clusterCIDR the
    KUBE-CLUSTER-IP masquerade rule becomes `dst,dst ! -s <clusterCIDR>`; masqueradeAll drops the condition."""
    objects = [
        svc("ns1", "svc1", cluster_ip="10.20.30.41", ports=[port("p80", 80)]),
        eps("ns1", "svc1", 1, [ep("10.180.0.1", NODE), ep("10.180.0.2", NODE, ready=False),
                               ep("10.180.1.1", "other-node")], [port("p80", 80)]),
    ]
    st = state(objects, cluster_cidr="10.180.0.0/16")
    assert members(st, "KUBE-LOOP-BACK") == {"10.180.0.1,tcp:80,10.180.0.1", "10.180.0.2,tcp:80,10.180.0.2"}
    assert ("-A KUBE-SERVICES -m comment --comment \"Kubernetes service cluster ip + port for masquerade purpose\" "
            "-m set --match-set KUBE-CLUSTER-IP dst,dst ! -s 10.180.0.0/16 -j KUBE-MARK-MASQ") in st.iptables
    st_all = state(objects, cluster_cidr="10.180.0.0/16", iptables_masquerade_all=True)
    assert "--match-set KUBE-CLUSTER-IP dst,dst -j KUBE-MARK-MASQ" in st_all.iptables
    assert vs_map(st)[("TCP", "10.20.30.41", 80)] == ("10.180.0.1:80", "10.180.1.1:80")  # not-ready excluded


def test_render_document_sections_and_format() -> None:
    """The rendered document: `ipvsadm --save -n` lines, `ip addr add .../32 dev kube-ipvs0`, `ipset save`,
    iptables-restore text; the kube-ipvs0 addresses equal KUBE-IPVS-IPS (syncProxyRules sets it so)."""
    objects = [
        svc("ns1", "svc1", type_="LoadBalancer", cluster_ip="10.20.30.41", ports=[port("p80", 80, node_port=3001)],
            lb_ips=("1.2.3.4",), sessionAffinity="ClientIP"),
        eps("ns1", "svc1", 1, [ep("10.180.0.1")], [port("p80", 80)]),
    ]
    cluster = load_objects([(o, "test") for o in [*objects, node(("100.101.102.103",))]])
    inp = build_input(cluster, NODE, config=KubeProxyConfig(mode="ipvs"))
    text = render_ipvs(inp)
    assert "-A -t 10.20.30.41:80 -s rr -p 10800\n-a -t 10.20.30.41:80 -r 10.180.0.1:80 -m -w 1\n" in text
    assert "-A -t 100.101.102.103:3001 -s rr -p 10800\n" in text
    assert "ip addr add 1.2.3.4/32 dev kube-ipvs0\n" in text
    assert "create KUBE-NODE-PORT-TCP bitmap:port range 0-65535\nadd KUBE-NODE-PORT-TCP 3001\n" in text
    assert "create KUBE-CLUSTER-IP hash:ip,port family inet hashsize 1024 maxelem 65536\n" in text
    assert text.index("#### ipvsadm --save -n") < text.index("#### kube-ipvs0 addresses") < \
        text.index("#### ipset save") < text.index("#### iptables-restore")
    st = ipvs_state(inp)
    assert set(st.addresses) == set(st.ipset("KUBE-IPVS-IPS").members) == {"10.20.30.41", "1.2.3.4"}
    assert st.virtual_servers == tuple(sorted(st.virtual_servers, key=VirtualServer.sort_key))
