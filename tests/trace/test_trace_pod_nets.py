"""Without ip-addr.json the trace decides "local address?" from the cluster's facts (kpdoctor/trace/pod_nets.py):
the Node's status.addresses (local), the Nodes' podCIDRs (pod addresses, not local, except the traced node's
CNI gateway). Real data: the demo bundle is capture B2's cluster state and edge-1/edge-2 dumps; "without
ip-addr.json" is that bundle with the collected ip-addr.json taken out, so the answer can be compared with the
one the real ip-addr.json gives."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import MappingProxyType

import pytest

from kpdoctor.cluster.model import Node, NodeAddress
from kpdoctor.cluster.state import ClusterState
from kpdoctor.node.bundle import read_bundle
from kpdoctor.node.state import NodeState
from kpdoctor.trace.addresses import Endpoint
from kpdoctor.trace.context import local_addresses
from kpdoctor.trace.inputs import trace_cluster_state
from kpdoctor.trace.ipnet import ip_int
from kpdoctor.trace.matrix import matrix
from kpdoctor.trace.pod_nets import pod_nets
from kpdoctor.trace.run import MAX_ASSUMED_NOTES, TraceRequest, endpoint_set, run_trace

DEMO = Path(__file__).resolve().parents[2] / "kpdoctor" / "demo" / "bundle"


def _without_ip_addr(state: NodeState) -> NodeState:
    facts = {k: v for k, v in state.facts.items() if k != "ip-addr.json"}
    return dataclasses.replace(state, facts=MappingProxyType(facts))


@pytest.fixture(scope="module")
def demo() -> tuple[ClusterState, dict[str, NodeState]]:
    b = read_bundle(DEMO)
    cluster = trace_cluster_state(b)
    assert cluster is not None
    states = b.node_states()
    assert all(s.text("ip-addr.json") for s in states.values())  # the real collection has it: we take it out
    return cluster, states


def _cluster(*nodes: tuple[str, str, str]) -> ClusterState:
    return ClusterState(nodes=tuple(Node(name, (NodeAddress("InternalIP", ip),), pod_cidrs=(cidr,))
                                    for name, ip, cidr in nodes))


def _reason(nets: tuple, addr: str) -> str | None:  # type: ignore[type-arg]
    found = ip_int(addr)
    assert found is not None
    return next((r for n in nets if (r := n.reason(*found)) is not None), None)


def test_pod_cidrs_decide_pod_addresses_but_not_this_nodes_cni_gateway() -> None:
    nets = pod_nets(_cluster(("b", "10.0.0.3", "10.244.2.0/24"), ("a", "10.0.0.2", "10.244.1.0/24")), "a")
    assert [n.node for n in nets] == ["a", "b"]  # the traced node's own first
    assert _reason(nets, "10.244.2.8") == "a pod address (b's podCIDR 10.244.2.0/24), not local"
    assert _reason(nets, "10.244.2.1") is not None  # another node's gateway is not on this node
    assert _reason(nets, "10.244.1.15") == "a pod address (this node's podCIDR 10.244.1.0/24), not local"
    assert _reason(nets, "10.244.1.1") is None and _reason(nets, "10.244.1.0") is None  # cni0 / flannel.1 here
    assert _reason(nets, "10.99.7.7") is None and _reason(nets, "fd00::1") is None


def test_a_zero_length_or_broken_pod_cidr_claims_nothing() -> None:
    assert pod_nets(_cluster(("a", "10.0.0.2", "0.0.0.0/0"), ("b", "10.0.0.3", "not-a-cidr")), "a") == ()
    assert pod_nets(None, "a") == ()


def test_order_node_addresses_then_pod_cidrs_then_unknown() -> None:
    nets = pod_nets(_cluster(("a", "10.244.1.9", "10.244.1.0/24")), "a")  # an InternalIP inside the podCIDR
    local = local_addresses(None, {"10.244.1.9": "10.244.1.9 is in Node a's status.addresses"}, nets)
    assert local.is_local("10.244.1.9") is True and local.why("10.244.1.9").startswith("10.244.1.9 is in Node a")
    assert local.is_local("10.244.1.20") is False
    assert local.why("10.244.1.20") == "assumed: 10.244.1.20 is a pod address (this node's podCIDR 10.244.1.0/24), not local"
    assert local.assumed == {"10.244.1.20": "a pod address (this node's podCIDR 10.244.1.0/24), not local"}
    assert local.is_local("10.244.1.1") is None and local.is_local("192.0.2.1") is None  # still forks
    local.reset()
    assert local.assumed == {}


def test_ip_addr_json_wins_over_pod_cidrs() -> None:
    nets = pod_nets(_cluster(("a", "10.0.0.2", "10.244.1.0/24")), "a")
    local = local_addresses([("cni0", "10.244.1.1"), ("eth0", "10.0.0.2")], ["10.0.0.2"], nets)
    assert local.is_local("10.244.1.1") is True and local.is_local("10.244.1.20") is False
    assert local.pod_nets == () and local.assumed == {} and local.why("10.244.1.20") == ""


# edge-1: iptables mode, a packet from outside; edge-2: nftables mode, from the node itself (its planted fault,
# ip_forward = 0, drops every forwarded packet)
@pytest.mark.parametrize(("node", "src"), [("edge-1", Endpoint("203.0.113.10", None, None, "external client")),
                                           ("edge-2", Endpoint("10.82.0.2", None, None, "node edge-2", "edge-2"))])
def test_without_ip_addr_the_endpoints_equal_the_ones_with_it(demo: tuple[ClusterState, dict[str, NodeState]],
                                                              node: str, src: Endpoint) -> None:
    cluster, states = demo
    req = TraceRequest(node, src, Endpoint("10.96.150.30", 80, "tcp", "svc payments/ledger"))
    with_addr = run_trace(req, states[node], cluster)
    without = run_trace(req, _without_ip_addr(states[node]), cluster)
    assert endpoint_set(without) == endpoint_set(with_addr) and endpoint_set(without)
    assert not any(leaf.assumptions for leaf in without.leaves)  # nothing forked on "local?"
    where = "this node's" if node == "edge-1" else "edge-1's"
    assert f"assumed: 10.244.52.11 is a pod address ({where} podCIDR 10.244.52.0/24), not local" in without.notes
    details = {s.detail for leaf in without.leaves for s in leaf.steps if s.text.startswith("route lookup")}
    assert any("(assumed: 10.244.52.11 is a pod address (" in d for d in details)
    assert not any(n.startswith("assumed:") for n in with_addr.notes)


def test_without_cluster_state_it_still_forks(demo: tuple[ClusterState, dict[str, NodeState]]) -> None:
    _, states = demo
    req = TraceRequest("edge-1", Endpoint("203.0.113.10", None, None, "external client"),
                       Endpoint("10.96.150.30", 80, "tcp", ""))
    result = run_trace(req, _without_ip_addr(states["edge-1"]), None)
    assert endpoint_set(result) == {}  # every endpoint rests on "is it local?": no unconditional delivery
    assert any("local address" in a for leaf in result.leaves for a in leaf.assumptions)


def test_matrix_without_ip_addr_equals_the_matrix_with_it(demo: tuple[ClusterState, dict[str, NodeState]]) -> None:
    """Every cell whose addresses the facts decide (ClusterIP, the node's own NodePort; sources: outside, a pod,
    the node) is the same as with ip-addr.json; a LoadBalancer IP no fact places is "followed both ways" where
    the rules ask, and the outcome ip-addr.json gives is one of the possibilities."""
    cluster, states = demo
    bare = {name: _without_ip_addr(s) for name, s in states.items()}
    decided = forked = 0
    for key in ("payments/ledger", "payments/pay-gateway", "payments/billing"):
        svc = cluster.service_by_key[key]
        with_addr = matrix(cluster, svc, None, states)
        without = matrix(cluster, svc, None, bare)
        assert [(c.node, c.frontend, c.client) for c in without] == [(c.node, c.frontend, c.client) for c in with_addr]
        for w, b in zip(with_addr, without, strict=True):
            assert b.complete == w.complete
            if w.frontend.startswith(("clusterIP", "nodePort")):
                assert b.summary == w.summary, (key, w.node, w.frontend, w.client)
                decided += 1
            elif b.summary != w.summary:  # where the rules ask whether the LoadBalancer IP is the node's
                assert b.summary.startswith("if assumed"), (key, w.node, w.frontend, w.client)
                assert w.summary.split("% ", 1)[1] in b.summary
                forked += 1
    assert decided >= 20 and forked >= 1


def test_assumed_notes_are_bounded() -> None:
    nets = pod_nets(_cluster(("b", "10.0.0.3", "10.244.2.0/24")), "a")
    local = local_addresses(None, [], nets)
    for i in range(2, 40):
        assert local.is_local(f"10.244.2.{i}") is False
    from kpdoctor.trace.run import _assumed_notes

    notes = _assumed_notes(local.assumed)
    assert len(notes) == MAX_ASSUMED_NOTES + 1 and notes[-1] == "assumed the same for 28 more addresses in the Nodes' podCIDRs"


def test_hostile_node_fields_are_canonical_and_bounded() -> None:
    """A podCIDR with stray whitespace or host bits is printed as the network it is; a name is bounded (the
    renderers escape it)."""
    nets = pod_nets(_cluster(("x" * 400, "10.0.0.3", " 10.244.7.9/24\n")), "a")
    assert len(nets) == 1 and nets[0].text == "10.244.7.0/24" and len(nets[0].node) == 253


def test_cli_trace_says_which_fact_decided(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The demo bundle without its ip-addr.json: the text output names the podCIDR that decided each endpoint."""
    import shutil

    from kpdoctor.cli import main

    bundle = tmp_path / "bundle"
    shutil.copytree(DEMO, bundle)
    removed = [p for p in bundle.glob("nodes/*/ip-addr.json")]
    for p in removed:
        p.unlink()
    assert len(removed) == 2
    main(["trace", "--bundle", str(bundle), "--node", "edge-1", "--from", "external", "--to", "svc/payments/ledger"])
    out = capsys.readouterr().out
    assert "note: assumed: 10.244.53.12 is a pod address (edge-2's podCIDR 10.244.53.0/24), not local" in out
    assert "route lookup for 10.244.52.11  => not local: forward (assumed: 10.244.52.11 is a pod address (this " \
           "node's podCIDR 10.244.52.0/24), not local)" in out
    assert "endpoints: 10.244.52.11:8080" in out  # decided: the endpoints are given with their chance
