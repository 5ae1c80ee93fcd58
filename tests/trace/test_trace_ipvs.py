"""IPVS in a trace, on tests/fixtures/ipvs/v2-kpnode1 (ipvsadm text shaped exactly as ipvsadm prints it for
node kpnode1 of the real V2 scenario; this kernel has no IPVS, so it is not a capture: see that README), and on
tests/fixtures/ipvs/uml-kpnode1 (the same node's state as a real kernel listed it, in a User-Mode-Linux guest). The
kernel proof is tests/lab/test_trace_ipvs_kernel.py."""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType

from kpdoctor.node.state import Fact, NodeState
from kpdoctor.trace.addresses import Endpoint
from kpdoctor.trace.run import TraceRequest, endpoint_set, outcomes, run_trace

IPVS = Path(__file__).resolve().parents[1] / "fixtures" / "ipvs" / "v2-kpnode1"


def _state() -> NodeState:
    facts = {
        "ipvsadm-save.txt": Fact("ipvsadm-save.txt", (IPVS / "ipvsadm-save.txt").read_text(), "ipvsadm", 0),
        "ipset-list.txt": Fact("ipset-list.txt", (IPVS / "ipset-list.txt").read_text(), "ipset", 0),
        "iptables-save.txt": Fact("iptables-save.txt", "", "iptables-save", 0),  # ran, no rules
        "kube-proxy/proxyMode.txt": Fact("kube-proxy/proxyMode.txt", "ipvs\n", "curl", 0),
    }
    return NodeState("kpnode1", "bundle", MappingProxyType(facts))


def _trace(dst: str, port: int) -> object:
    req = TraceRequest("kpnode1", Endpoint("203.0.113.10", None, None, ""), Endpoint(dst, port, None, ""))
    return run_trace(req, _state(), None)


def test_virtual_server_spreads_over_its_real_servers_and_ipvs_sends_it_on() -> None:
    result = _trace("192.0.2.101", 443)
    assert "ipvs" in result.backends  # type: ignore[attr-defined]
    assert endpoint_set(result) == {"10.244.4.22:8443": 0.5, "10.244.5.22:8443": 0.5}  # type: ignore[arg-type]
    for o in outcomes(result):  # type: ignore[arg-type]
        assert o["verdict"] == "accept"
        assert o["steps"][-1]["text"] == "sent to the real server by IPVS"
        assert any(s["source"] == "kpnode1/ipvsadm-save.txt" for s in o["steps"] if s["kind"] == "nat")


def test_virtual_server_without_real_servers_rejects() -> None:
    outs = outcomes(_trace("10.96.20.15", 80))  # type: ignore[arg-type]
    assert [o["verdict"] for o in outs] == ["reject"]
    assert "no real server" in outs[0]["decided_by"]["detail"]


def test_no_virtual_server_is_not_translated() -> None:
    eps = endpoint_set(_trace("10.96.0.1", 80))  # type: ignore[arg-type]
    assert eps == {"": 1.0}  # the VIP is bound locally (kube-ipvs0): delivered to the node, untranslated


UML = Path(__file__).resolve().parents[1] / "fixtures" / "ipvs" / "uml-kpnode1"  # a real kernel's dumps


def _uml_trace(src: str, dst: str, port: int, on_node: bool = False) -> object:
    from tests.support.ipvs_guest import node_state

    facts = {p.name: p.read_text() for p in UML.iterdir() if p.name != "README.md"}
    req = TraceRequest("kpnode1", Endpoint(src, None, None, ""), Endpoint(dst, port, None, ""),
                       iif=None if on_node else "n0")
    return run_trace(req, node_state("kpnode1", facts), None)


def test_the_nodes_own_packet_is_scheduled_at_output_and_skips_filter_input() -> None:
    """On the UML capture (tests/lab/test_trace_ipvs_kernel.py saw the kernel do this): the node's own connection
    to the LoadBalancer with loadBalancerSourceRanges reaches its real servers, masqueraded; a client outside the
    ranges is dropped by KUBE-SOURCE-RANGES-FIREWALL (filter INPUT), one inside them is not."""
    own = outcomes(_uml_trace("10.77.0.2", "192.0.2.102", 443, on_node=True))  # type: ignore[arg-type]
    assert {(o["verdict"], o["dnat_to"], o["masquerade"]) for o in own} == {
        ("accept", "10.244.2.24:8443", True), ("accept", "10.244.4.24:8443", True)}
    for o in own:
        assert any(s["where"] == "IPVS" and "priority -98" in s["text"] for s in o["steps"] if s["kind"] == "hook")
    outside = outcomes(_uml_trace("198.51.100.20", "192.0.2.102", 443))  # type: ignore[arg-type]
    assert [o["verdict"] for o in outside] == ["drop"]
    assert "KUBE-SOURCE-RANGES-FIREWALL" in outside[0]["decided_by"]["where"]
    inside = endpoint_set(_uml_trace("203.0.113.10", "192.0.2.102", 443))  # type: ignore[arg-type]
    assert inside == {"10.244.2.24:8443": 0.5, "10.244.4.24:8443": 0.5}
