"""IPVS in a trace, on tests/fixtures/ipvs/v2-kpnode1 (ipvsadm text shaped exactly as ipvsadm prints it for
node kpnode1 of the real V2 scenario; this kernel has no IPVS, so it is not a capture: see that README).
There is no kernel proof here for the same reason."""

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
