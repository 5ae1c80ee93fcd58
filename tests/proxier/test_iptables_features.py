"""Per-feature behaviour of the iptables renderer that the golden scenarios do not vary.

Expectations come from kube-proxy v1.36's `pkg/proxy/iptables/proxier.go` (cited per test);
the root test at the end restores every variant into real netfilter to prove it is valid input.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from kpdoctor.cluster.config import parse_config_text
from kpdoctor.cluster.snapshot import load_objects
from kpdoctor.errors import InputError
from kpdoctor.proxier import render as render_module
from kpdoctor.proxier.context import ProxierInput, build_input
from kpdoctor.proxier.iptables import (
    IptablesOptions,
    nodeport_addresses,
    render_iptables,
    render_restore_payload,
    sync_rules,
)
from kpdoctor.proxier.names import svc_chain
from kpdoctor.proxier.render import render, renderer_for
from tests.support.iptables import kernel_round_trip
from tests.support.upstream_objects import TEST_NODE, eps, svc


def make_input(objects: list[dict[str, Any]], config: str = "", *, family: str = "IPv4",
               node_addresses: tuple[str, ...] = ("192.168.0.2",), pod_cidr: str = "10.0.1.0/24") -> ProxierInput:
    node = {"kind": "Node", "metadata": {"name": TEST_NODE}, "spec": {"podCIDRs": [pod_cidr]},
            "status": {"addresses": [{"type": "InternalIP", "address": a} for a in node_addresses]}}
    cluster = load_objects(((o, "t") for o in [*objects, node]), source="t")
    cfg = parse_config_text("kind: KubeProxyConfiguration\nmode: iptables\nclusterCIDR: 10.0.0.0/8\n" + config,
                            source="t")
    return build_input(cluster, TEST_NODE, config=cfg, family=family)


NP = [svc("ns", "np", "172.30.0.10", type_="NodePort", node_port=30010), eps("ns", "np", ("10.0.1.5", None))]


def nat_lines(inp: ProxierInput, chain: str, options: IptablesOptions | None = None) -> list[str]:
    return [ln for ln in sync_rules(inp, options).nat_rules if ln.startswith(f"-A {chain} ")]


def test_default_nodeports_tail_call_and_localhost() -> None:
    inp = make_input(NP)
    tail = nat_lines(inp, "KUBE-SERVICES")[-1]
    assert tail.endswith("-m addrtype --dst-type LOCAL -j KUBE-NODEPORTS")
    assert any("127.0.0.0/8" in ln and "nfacct" in ln for ln in nat_lines(inp, "KUBE-NODEPORTS"))


def test_localhost_nodeports_off() -> None:
    inp = make_input(NP, "iptables:\n  localhostNodePorts: false\n")
    assert nat_lines(inp, "KUBE-SERVICES")[-1].endswith("--dst-type LOCAL ! -d 127.0.0.0/8 -j KUBE-NODEPORTS")
    assert not any("127.0.0.0/8" in ln for ln in nat_lines(inp, "KUBE-NODEPORTS"))
    assert not any("KUBE-FIREWALL" in ln for ln in sync_rules(inp).filter_rules)


def test_nfacct_missing_drops_the_accounting_matches() -> None:
    rs = sync_rules(make_input(NP), IptablesOptions(nfacct=False))
    assert not any("nfacct" in ln for ln in rs.nat_rules + rs.filter_rules)
    assert "-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP" in rs.filter_rules


def test_conntrack_liberal_omits_invalid_drop() -> None:
    rs = sync_rules(make_input(NP, "conntrack:\n  tcpBeLiberal: true\n"))
    assert not any("INVALID" in ln for ln in rs.filter_rules)


@pytest.mark.parametrize(
    ("addresses", "expected"),
    [
        ('["primary"]', ["-d 192.168.0.2 -j KUBE-NODEPORTS"]),
        ('["192.168.0.0/24"]', ["-d 192.168.0.2 -j KUBE-NODEPORTS"]),
        ('["192.168.0.0/24", "127.0.0.1/32"]', ["-d 192.168.0.2 -j KUBE-NODEPORTS", "-d 127.0.0.1 -j KUBE-NODEPORTS"]),
        ('["10.99.0.0/16"]', []),  # no local address in the CIDR: no tail call at all
        # nothing IPv4: the zero CIDR, i.e. every address, loopback (and localhost node ports) included
        ('["fd00::/64"]', ["-m addrtype --dst-type LOCAL -j KUBE-NODEPORTS"]),
    ],
)
def test_node_port_addresses(addresses: str, expected: list[str]) -> None:
    inp = make_input(NP, f"nodePortAddresses: {addresses}\n")
    tails = [ln for ln in nat_lines(inp, "KUBE-SERVICES") if "kubernetes service nodeports" in ln]
    assert len(tails) == len(expected)
    for line, end in zip(tails, expected, strict=True):
        assert line.endswith(end)


def test_primary_on_ipv6_and_ipv6_rules() -> None:
    objs = [svc("ns", "v6", "fd00:30::10", type_="NodePort", node_port=30011),
            {**eps("ns", "v6", ("fd00:10::5", TEST_NODE)), "addressType": "IPv6"}]
    inp = make_input(objs, "clusterCIDR: 10.0.0.0/8,fd00:10::/64\nnodePortAddresses: [primary]\n", family="IPv6",
                     node_addresses=("192.168.0.2", "fd00:1::2"))
    assert nodeport_addresses(inp).cidrs[0].with_prefixlen == "fd00:1::2/128"
    text = render_restore_payload(inp)
    assert "-j DNAT --to-destination [fd00:10::5]:80" in text
    assert "-s fd00:10::5 -j KUBE-MARK-MASQ" in text
    assert "! -s fd00:10::/64 -j KUBE-MARK-MASQ" in text
    assert "-d fd00:1::2 -j KUBE-NODEPORTS" in text
    assert "127.0.0.0/8" not in text and "KUBE-FIREWALL" not in text


@pytest.mark.parametrize(
    ("config", "if_not_local"),
    [
        ("detectLocalMode: NodeCIDR\n", "! -s 10.0.1.0/24"),
        ("detectLocalMode: BridgeInterface\ndetectLocal:\n  bridgeInterface: cbr0\n", "! -i cbr0"),
        ("detectLocalMode: InterfaceNamePrefix\ndetectLocal:\n  interfaceNamePrefix: veth\n", "! -i veth+"),
    ],
)
def test_detect_local_modes(config: str, if_not_local: str) -> None:
    chain = svc_chain("ns/np:p80", "tcp")
    masq = [ln for ln in nat_lines(make_input(NP, config), chain) if ln.endswith("-j KUBE-MARK-MASQ")]
    assert len(masq) == 1 and f"{if_not_local} -j KUBE-MARK-MASQ" in masq[0]


def test_no_cluster_cidr_means_no_local_detection() -> None:
    inp = make_input(NP)
    inp = replace(inp, config=replace(inp.config, cluster_cidr=""), _service_ports=[])
    text = render_restore_payload(inp)
    assert "-j KUBE-MARK-MASQ" not in "\n".join(ln for ln in text.splitlines() if ln.startswith("-A KUBE-SVC-"))


def test_large_cluster_threshold_is_strictly_above_1000() -> None:
    def with_endpoints(n: int) -> str:
        ips = [(f"10.1.{i // 250}.{i % 250 + 1}", None) for i in range(n)]
        return render_restore_payload(make_input([svc("ns", "big", "172.30.0.20"), eps("ns", "big", *ips)]))

    assert '"ns/big:p80 -> ' in with_endpoints(1000)
    big = with_endpoints(1001)
    assert '"ns/big:p80 -> ' not in big and "--comment ns/big:p80" not in big
    assert '"ns/big:p80 cluster IP"' in big  # service-level comments stay


def test_udp_and_sctp_protocol_matches() -> None:
    objs = [{**svc("ns", "dns", "172.30.0.53"), "spec": {"clusterIP": "172.30.0.53", "ports": [
        {"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "s", "port": 9, "protocol": "SCTP"}]}},
        {**eps("ns", "dns", ("10.0.1.53", None)), "ports": [{"name": "dns", "port": 53, "protocol": "UDP"},
                                                           {"name": "s", "port": 9, "protocol": "SCTP"}]}]
    text = render_restore_payload(make_input(objs))
    assert '-m comment --comment "ns/dns:dns cluster IP" -m udp -p udp -d 172.30.0.53 --dport 53' in text
    assert "-m sctp -p sctp -j DNAT --to-destination 10.0.1.53:9" in text


def test_lb_source_range_containing_the_node_allows_the_vip() -> None:
    objs = [svc("ns", "lb", "172.30.0.30", type_="LoadBalancer", node_port=30030, lb_ip="5.6.7.8",
                source_ranges=["192.168.0.0/16", "203.0.113.7/24"]), eps("ns", "lb", ("10.0.1.30", None))]
    fw = [ln for ln in sync_rules(make_input(objs)).nat_rules if ln.startswith("-A KUBE-FW-")]
    assert [ln.split(" -s ")[1].split()[0] for ln in fw[:-1]] == ["192.168.0.0/16", "203.0.113.0/24", "5.6.7.8"]


def test_dispatch() -> None:
    assert renderer_for("iptables") is render_iptables
    assert render(make_input(NP)) == render_iptables(make_input(NP))
    with pytest.raises(InputError, match="unknown proxy mode"):
        renderer_for("userspace")


def test_dispatch_of_a_missing_mode_module(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(render_module._LAZY, "ipvs", ("kpdoctor.proxier.no_such_module", "render_ipvs"))
    with pytest.raises(InputError, match="mode ipvs not supported yet"):
        renderer_for("ipvs")


@pytest.mark.root("iptables-nft-restore", "ip6tables-nft-restore", "nfacct")
def test_feature_variants_restore_into_real_netfilter() -> None:
    variants = [
        make_input(NP, "detectLocalMode: BridgeInterface\ndetectLocal:\n  bridgeInterface: cbr0\n"),
        make_input(NP, "detectLocalMode: InterfaceNamePrefix\ndetectLocal:\n  interfaceNamePrefix: veth\n"),
        make_input(NP, 'nodePortAddresses: ["192.168.0.0/24", "127.0.0.1/32"]\niptables:\n  masqueradeAll: true\n'),
        make_input(NP, "iptables:\n  localhostNodePorts: false\n  masqueradeBit: 3\n"),
    ]
    for inp in variants:
        saved = kernel_round_trip(render_iptables(inp))
        assert "KUBE-NODEPORTS" in saved
    objs = [svc("ns", "v6", "fd00:30::10", type_="NodePort", node_port=30011),
            {**eps("ns", "v6", ("fd00:10::5", TEST_NODE)), "addressType": "IPv6"}]
    v6 = make_input(objs, "clusterCIDR: 10.0.0.0/8,fd00:10::/64\n", family="IPv6", node_addresses=("fd00:1::2",))
    saved = kernel_round_trip(render_iptables(v6), family="IPv6")
    assert "--to-destination [fd00:10::5]:80" in saved


def test_addresses_are_canonicalized_like_go_net_ip() -> None:
    """kube-proxy prints net.IP.String(): `fd00:10:0::05` -> `fd00:10::5`; dotted quads stay as they are."""
    objs = [svc("ns", "v6", "fd00:30:0::10"), {**eps("ns", "v6", ("fd00:10:0::05", None)), "addressType": "IPv6"}]
    text = render_restore_payload(make_input(objs, "clusterCIDR: fd00:10::/64\n", family="IPv6",
                                             node_addresses=("fd00:1::2",)))
    assert "-d fd00:30::10 --dport 80" in text and "--to-destination [fd00:10::5]:80" in text
    assert "fd00:10:0::05" not in text
