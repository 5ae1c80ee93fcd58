"""kpdoctor.gate.coverage_table: kube-proxy's SemanticView of a Service port vs a Cilium agent's service table.

On the gate's test bundle (tests/support/gate.build_bundle: the real B1 capture's Services and EndpointSlices, plus
the hand-built Cilium 1.14 / 1.18 status and service-list shapes of tests/fixtures/cilium); the table entries are
edited per test to show each kind of difference.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from kpdoctor.cilium import TYPE_LOCAL_REDIRECT, Backend, CiliumFrontend, ServiceTable, parse_service_list
from kpdoctor.cluster.state import ClusterState
from kpdoctor.dataplane.semantic import CLUSTER_IP, LOAD_BALANCER, NODE_PORT
from kpdoctor.gate.coverage_table import entry_diff, kube_proxy_views, table_gaps
from kpdoctor.node.state import NodeState
from kpdoctor.proxier.endpoints import ServicePortEndpoints, endpoints_by_service_port
from kpdoctor.proxier.serviceport import all_service_ports
from tests.support.gate import build_bundle, load

TABLE = "cilium/service-list.json"


@pytest.fixture(scope="module", params=["1.14", "1.18"])
def bundle(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> tuple[ClusterState, dict[str, NodeState]]:
    return load(build_bundle(tmp_path_factory.mktemp("cov"), version=request.param))


def _table(nodes: dict[str, NodeState], node: str) -> ServiceTable:
    text = nodes[node].text(TABLE)
    assert text is not None
    return parse_service_list(text, node=node, source=f"{node}/{TABLE}")


def _port(cluster: ClusterState, node: str, name: str) -> ServicePortEndpoints:
    [spe] = [s for s in endpoints_by_service_port(cluster, all_service_ports(cluster, "IPv4"), node)
             if s.info.service_port_name == name]
    return spe


def _edit(table: ServiceTable, pick: str, edit: CiliumFrontend) -> ServiceTable:
    return ServiceTable(table.node, tuple(edit if fe.label == pick else fe for fe in table.frontends), table.source)


def test_the_agents_tables_serve_every_port_as_kube_proxy_does(bundle) -> None:  # type: ignore[no-untyped-def]
    cluster, nodes = bundle
    for node in nodes:
        table = _table(nodes, node)
        ports = endpoints_by_service_port(cluster, all_service_ports(cluster, "IPv4"), node)
        assert len(ports) == 8
        assert [(s.info.service_port_name, table_gaps(s, table, node)) for s in ports] == [
            (s.info.service_port_name, []) for s in ports]


def test_kube_proxy_view_of_an_etp_local_port(bundle) -> None:  # type: ignore[no-untyped-def]
    """storefront/gateway is eTP=Local with its one endpoint on edge-1: on edge-2 outside clients get nothing,
    in-cluster clients of the NodePort / load balancer still reach the endpoint (the short-circuit)."""
    cluster, _ = bundle
    views = kube_proxy_views(_port(cluster, "edge-2", "storefront/gateway:http"))
    assert views.alternative is None  # no topology hints
    fronts = list(views.expected.frontends.values())
    assert [v.frontend.kind for v in fronts] == [CLUSTER_IP, NODE_PORT, LOAD_BALANCER]
    assert fronts[0].endpoints == {"10.244.50.31:8080"} and fronts[0].internal_endpoints is None
    for v in fronts[1:]:
        assert v.endpoints == frozenset() and v.internal_targets == {"10.244.50.31:8080"}
    on_edge1 = kube_proxy_views(_port(cluster, "edge-1", "storefront/gateway:http")).expected.frontends.values()
    assert all(v.endpoints == {"10.244.50.31:8080"} and v.internal_endpoints is None for v in on_edge1)


def test_a_stale_and_a_missing_backend_are_named(bundle) -> None:  # type: ignore[no-untyped-def]
    cluster, nodes = bundle
    table = _table(nodes, "edge-1")
    spe = _port(cluster, "edge-1", "storefront/catalog:http")
    [entry] = [fe for fe in table.frontends if fe.ip == spe.info.cluster_ip and fe.port == 80]
    edited = replace(entry, backends=(*entry.backends[1:], Backend("10.244.50.99", 8080)))
    want = kube_proxy_views(spe).expected.frontends
    d = entry_diff(next(iter(want.values())), None, edited)
    assert d is not None and d.stale == {"10.244.50.99:8080"} and d.missing == {entry.backends[0].key}
    [gap] = table_gaps(spe, _edit(table, entry.label, edited), "edge-1")
    assert gap == (f"ClusterIP frontend {entry.label} on edge-1: missing backends {entry.backends[0].key}; "
                   f"backends kube-proxy would not use 10.244.50.99:8080 (edge-1/{TABLE})")
    # terminating backends serve only when no backend is active (Cilium's serving set)
    terminating = replace(entry, backends=(*entry.backends, Backend("10.244.50.99", 8080, state="terminating")))
    assert table_gaps(spe, _edit(table, entry.label, terminating), "edge-1") == []


def test_internal_scope_copy_is_compared_with_the_in_cluster_backends(bundle) -> None:  # type: ignore[no-untyped-def]
    cluster, nodes = bundle
    table = _table(nodes, "edge-2")
    spe = _port(cluster, "edge-2", "storefront/gateway:http")
    internal = [fe for fe in table.frontends if fe.scope == "internal" and fe.port == spe.info.node_port]
    assert internal, "the fixture's eTP=Local NodePort has its internal-scope copy"
    emptied = replace(internal[0], backends=())
    [gap] = table_gaps(spe, _edit(table, internal[0].label, emptied), "edge-2")
    assert gap.startswith(f"frontend {internal[0].label} on edge-2: missing backends 10.244.50.31:8080")
    without = ServiceTable(table.node, tuple(fe for fe in table.frontends if fe not in internal), table.source)
    assert any("internal-scope copy that sends in-cluster clients" in g for g in table_gaps(spe, without, "edge-2"))


def test_missing_frontends_and_local_redirect(bundle) -> None:  # type: ignore[no-untyped-def]
    cluster, nodes = bundle
    table = _table(nodes, "edge-1")
    spe = _port(cluster, "edge-1", "storefront/checkout:https")
    node_port = spe.info.node_port
    no_np = ServiceTable(table.node, tuple(fe for fe in table.frontends if fe.port != node_port), table.source)
    assert table_gaps(spe, no_np, "edge-1") == [
        f"NodePort frontend *:{node_port}/TCP is missing from the agent's service table on edge-1 (edge-1/{TABLE})"]
    cip = [fe for fe in table.frontends if fe.ip == spe.info.cluster_ip]
    no_cip = ServiceTable(table.node, tuple(fe for fe in table.frontends if fe not in cip), table.source)
    assert table_gaps(spe, no_cip, "edge-1") == [
        f"ClusterIP frontend {spe.info.cluster_ip}:443/TCP is missing from the agent's service table on edge-1 "
        f"(edge-1/{TABLE})"]
    # a LocalRedirectPolicy overrides the Service on this node: nothing of it is compared
    redirected = replace(cip[0], type=TYPE_LOCAL_REDIRECT, backends=(Backend("10.244.50.200", 8443),))
    assert table_gaps(spe, ServiceTable(table.node, (redirected,), table.source), "edge-1") == []


def test_topology_hints_are_accepted_either_way(bundle) -> None:  # type: ignore[no-untyped-def]
    """Node hints on every catalog endpoint: kube-proxy on edge-1 uses only the one hinted for edge-1, Cilium
    without enable-service-topology all three. Both serve the Service; any other set is a difference."""
    cluster, nodes = bundle

    def hint(ep):  # type: ignore[no-untyped-def]
        return replace(ep, hints_for_nodes=("edge-1",) if ep.addresses[0] == "10.244.50.11" else ("edge-2",))

    hinted = replace(cluster, endpoint_slices=tuple(
        replace(s, endpoints=tuple(hint(ep) for ep in s.endpoints)) if s.service_name == "catalog" else s
        for s in cluster.endpoint_slices))
    spe = _port(hinted, "edge-1", "storefront/catalog:http")
    views = kube_proxy_views(spe)
    assert views.alternative is not None
    [want] = views.expected.frontends.values()
    assert want.endpoints == {"10.244.50.11:8080"}
    table = _table(nodes, "edge-1")
    [entry] = [fe for fe in table.frontends if fe.ip == spe.info.cluster_ip and fe.port == 80]
    assert len(entry.backends) == 3 and table_gaps(spe, table, "edge-1") == []  # the hint-free alternative
    only_hinted = replace(entry, backends=tuple(b for b in entry.backends if b.ip == "10.244.50.11"))
    assert table_gaps(spe, _edit(table, entry.label, only_hinted), "edge-1") == []  # kube-proxy's own set
    two = replace(entry, backends=entry.backends[:2])
    [gap] = table_gaps(spe, _edit(table, entry.label, two), "edge-1")
    assert "backends kube-proxy would not use" in gap
