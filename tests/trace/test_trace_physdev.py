"""`-m physdev` in a trace (kpdoctor.trace.ipt_match): decided for a packet that was not bridged (generated on the
node, or arriving on an interface that is no interface's master in ip-addr.json), as xt_physdev.c decides when
the packet has no bridge facts (any positive option fails, a negated one holds); forked otherwise. The kernel's
answer for kube-proxy's `-m physdev ! --physdev-is-in` (the external IP rule) is checked by
tests/lab/test_trace_ipvs_kernel.py."""

from __future__ import annotations

from kpdoctor.trace.context import TraceContext, local_addresses
from kpdoctor.trace.ipt_match import compile_spec
from kpdoctor.trace.model import Fork, Packet

PKT = Packet("203.0.113.10", "198.51.100.10", 40000, 8080, iif="eth0")
KUBE_PROXY = "-m physdev ! --physdev-is-in -j ACCEPT"  # pkg/proxy/ipvs/proxier.go, external IPs


def _ctx(bridges: frozenset[str] | None) -> TraceContext:
    return TraceContext(local_addresses([("eth0", "10.81.0.2")], ["10.81.0.2"]), bridges=bridges)


def _match(spec: str, pkt: Packet, bridges: frozenset[str] | None) -> object:
    (fn, _), = compile_spec(spec).matches
    return fn(pkt, _ctx(bridges))


def test_not_bridged_packets_are_decided() -> None:
    no_bridge = frozenset({"cni0"})  # cni0 has ports; eth0 is not a bridge
    assert _match(KUBE_PROXY, PKT, no_bridge) is True
    assert _match("-m physdev --physdev-is-in -j ACCEPT", PKT, no_bridge) is False
    assert _match("-m physdev --physdev-in veth1 -j ACCEPT", PKT, no_bridge) is False
    assert _match("-m physdev --physdev-is-bridged -j DROP", PKT, no_bridge) is False
    assert _match("-m physdev ! --physdev-is-in ! --physdev-is-bridged -j ACCEPT", PKT, no_bridge) is True
    local = PKT.evolve(iif="")  # generated on the node
    assert _match(KUBE_PROXY, local, None) is True


def test_a_bridge_or_an_unknown_interface_forks() -> None:
    assert isinstance(_match(KUBE_PROXY, PKT.evolve(iif="cni0"), frozenset({"cni0"})), Fork)
    assert isinstance(_match(KUBE_PROXY, PKT, None), Fork)  # ip-addr.json not collected
    assert isinstance(_match(KUBE_PROXY, PKT.evolve(iif=None), frozenset()), Fork)  # interface not known
    # output-side options are not evaluated (bridge-layer hooks the trace does not follow)
    assert isinstance(_match("-m physdev --physdev-is-out -j ACCEPT", PKT, frozenset()), Fork)
