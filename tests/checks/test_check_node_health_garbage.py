"""KP-PROXY-NODE-HEALTH on unreadable kube-proxy surfaces: unknown is reported as not evaluated, never as passed.

The node state is the real B1-healthy capture with kube-proxy's two HTTP answers replaced by
garbage (as a truncated collection, a proxy in front of the port or another program would give).
"""

from __future__ import annotations

from dataclasses import replace
from types import MappingProxyType

import kpdoctor.checks.kube_proxy_node_health as node_health
from kpdoctor.checks_api import CheckContext
from kpdoctor.cluster.state import ClusterState
from kpdoctor.findings import Severity
from kpdoctor.node.bundle import read_bundle
from kpdoctor.node.state import Fact, NodeState
from tests.conftest import BUNDLES


def _edge1_with(healthz: str, metrics: str) -> tuple[ClusterState, NodeState]:
    bundle = read_bundle(BUNDLES / "B1-healthy" / "bundle")
    node = bundle.node_state("edge-1")
    facts = dict(node.facts)
    facts["kube-proxy/healthz.json"] = Fact("kube-proxy/healthz.json", healthz, source="curl healthz")
    facts["kube-proxy/metrics.txt"] = Fact("kube-proxy/metrics.txt", metrics, source="curl metrics")
    node = replace(node, facts=MappingProxyType(facts))
    return bundle.cluster_state(), node


def test_garbage_surfaces_are_not_evaluated_not_passed() -> None:
    cluster, node = _edge1_with("\x00\xffnot json", "garbage line\x01\n")
    found = list(node_health.CHECK.run(CheckContext(cluster=cluster, node=node, nodes={node.name: node})))
    assert [(f.subject, f.severity, f.not_evaluated) for f in found] == [("Node edge-1", Severity.WARNING, True)]
    assert "could not be evaluated" in found[0].message


def test_real_surfaces_of_the_healthy_capture_stay_silent() -> None:
    bundle = read_bundle(BUNDLES / "B1-healthy" / "bundle")
    node = bundle.node_state("edge-1")
    nodes = bundle.node_states()
    found = list(node_health.CHECK.run(CheckContext(cluster=bundle.cluster_state(), node=node, nodes=nodes)))
    assert found == []
