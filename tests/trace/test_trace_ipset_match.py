"""kpdoctor.trace.ipset_match on kube-proxy's IPVS-mode sets as a real kernel listed them (`ipset list` inside the
User-Mode-Linux guest of tests/lab/test_trace_ipvs_kernel.py: tests/fixtures/ipvs/uml-kpnode1/README.md). The
kernel's own answers for the same sets and packets are what that lab test checks; here each dimension rule is
pinned without root."""

from __future__ import annotations

from pathlib import Path

from kpdoctor.dataplane.ipset import IPSet, parse_ipset_list
from kpdoctor.trace.ipset_match import SetIndex
from kpdoctor.trace.model import Packet

CAPTURE = Path(__file__).resolve().parents[1] / "fixtures" / "ipvs" / "uml-kpnode1" / "ipset-list.txt"
SETS = parse_ipset_list(CAPTURE.read_text(), "ipset-list.txt")


def _in(name: str, dirs: str, src: str, dst: str, dport: int, proto: str = "tcp") -> bool | None:
    found = SETS.get(name)
    assert found is not None, name
    return SetIndex(found).contains(dirs.split(","), Packet(src, dst, 40000, dport, proto))


def test_bitmap_port_sets_match_the_port_for_any_protocol_with_ports() -> None:
    assert _in("KUBE-NODE-PORT-TCP", "dst", "203.0.113.10", "10.77.0.2", 30100) is True
    assert _in("KUBE-NODE-PORT-TCP", "dst", "203.0.113.10", "10.77.0.2", 30105) is False
    assert _in("KUBE-NODE-PORT-LOCAL-TCP", "dst", "203.0.113.10", "10.77.0.2", 30101) is True
    assert _in("KUBE-NODE-PORT-LOCAL-TCP", "dst", "203.0.113.10", "10.77.0.2", 30100) is False
    # bitmap:port stores no protocol (ip_set_bitmap_port.c: get_port accepts TCP, UDP, SCTP, UDPLITE)
    assert _in("KUBE-HEALTH-CHECK-NODE-PORT", "dst", "203.0.113.10", "10.77.0.2", 32100, "udp") is True
    assert _in("KUBE-HEALTH-CHECK-NODE-PORT", "dst", "203.0.113.10", "10.77.0.2", 32100, "icmp") is False


def test_hash_ip_port_net_matches_a_source_inside_the_members_prefix() -> None:
    """KUBE-LOAD-BALANCER-SOURCE-CIDR dst,dst,src: the LB's loadBalancerSourceRanges (203.0.113.0/24,
    198.51.100.128/25); the old evaluator compared the source address as text with the CIDR and dropped every
    allowed client, which the kernel accepted."""
    for src in ("203.0.113.10", "203.0.113.254", "198.51.100.200", "198.51.100.128"):
        assert _in("KUBE-LOAD-BALANCER-SOURCE-CIDR", "dst,dst,src", src, "192.0.2.102", 443) is True, src
    for src in ("198.51.100.20", "198.51.100.127", "10.244.3.7"):
        assert _in("KUBE-LOAD-BALANCER-SOURCE-CIDR", "dst,dst,src", src, "192.0.2.102", 443) is False, src
    assert _in("KUBE-LOAD-BALANCER-SOURCE-CIDR", "dst,dst,src", "203.0.113.10", "192.0.2.102", 80) is False
    assert _in("KUBE-LOAD-BALANCER-SOURCE-CIDR", "dst,dst,src", "203.0.113.10", "192.0.2.102", 443, "udp") is False


def test_hash_ip_port_and_hash_ip_port_ip() -> None:
    assert _in("KUBE-CLUSTER-IP", "dst,dst", "203.0.113.10", "10.96.20.10", 80) is True
    assert _in("KUBE-CLUSTER-IP", "dst,dst", "203.0.113.10", "10.96.20.10", 80, "udp") is False
    assert _in("KUBE-CLUSTER-IP", "dst,dst", "203.0.113.10", "10.96.20.10", 81) is False
    assert _in("KUBE-LOOP-BACK", "dst,dst,src", "10.244.1.20", "10.244.1.20", 8080) is True
    assert _in("KUBE-LOOP-BACK", "dst,dst,src", "10.244.1.21", "10.244.1.20", 8080) is False
    assert _in("KUBE-IPVS-IPS", "dst", "203.0.113.10", "10.96.20.15", 80) is True
    assert _in("KUBE-IPVS-IPS", "dst", "203.0.113.10", "10.96.20.16", 80) is False


def test_flags_and_types_it_does_not_evaluate_answer_none() -> None:
    pkt = Packet("10.0.0.1", "10.0.0.2", 40000, 80)
    cluster_ip = SETS.get("KUBE-CLUSTER-IP")
    assert cluster_ip is not None
    assert SetIndex(cluster_ip).contains(["dst"], pkt) is None  # fewer flags than dimensions
    # hand-made shapes (no capture has them): an iface dimension; a member this index cannot read
    assert SetIndex(IPSet("X", "hash:net,iface", members=frozenset({"10.0.0.0/8,eth0"}))).contains(
        ["src", "src"], pkt) is None
    odd = SetIndex(IPSet("Y", "hash:ip", members=frozenset({"not-an-address"})))
    assert odd.contains(["dst"], pkt) is None  # a miss proves nothing when a member was unreadable


def test_nomatch_member_excludes_what_it_covers() -> None:
    """`ipset list` prints a nomatch entry as `10.1.2.0/24 nomatch` (hand-made shape, from ipset(8))."""
    s = SetIndex(IPSet("Z", "hash:net", members=frozenset({"10.0.0.0/8", "10.1.2.0/24 nomatch"})))
    assert s.contains(["src"], Packet("10.9.9.9", "1.1.1.1", 1, 2)) is True
    assert s.contains(["src"], Packet("10.1.2.3", "1.1.1.1", 1, 2)) is False
    inner = SetIndex(IPSet("W", "hash:net", members=frozenset({"10.1.0.0/16 nomatch", "10.1.2.0/24"})))
    assert inner.contains(["src"], Packet("10.1.2.3", "1.1.1.1", 1, 2)) is True  # the longer prefix decides
    assert inner.contains(["src"], Packet("10.1.3.3", "1.1.1.1", 1, 2)) is False
