"""kpdoctor.proxier.shared_expectation: per-node views equal to the reference proxier's own, computed once.

On the B1/B2 bundles (real kind cluster snapshots) and a synthetic cluster with eTP=Local Services,
every node's view from one `SharedExpectation` equals `expected_view(build_input(cluster, node))`,
and `node_port_drops` is exactly the filter over the whole view."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from kpdoctor.cluster.state import ClusterState
from kpdoctor.dataplane.semantic import DROP, NODE_PORT
from kpdoctor.proxier.context import build_input
from kpdoctor.proxier.expected import expected_view, view_options
from kpdoctor.proxier.shared_expectation import SharedExpectation
from tests.support.checks import load_bundle

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from synth import SynthSpec, synth_cluster  # noqa: E402


def _clusters() -> list[tuple[str, ClusterState]]:
    out = [(name, load_bundle(name)[0]) for name in ("B1-healthy", "B2-stale-endpoint")]
    out.append(("synth", synth_cluster(SynthSpec(services=40, endpoints=3, nodes=4, seed=3))))
    return out


@pytest.mark.parametrize(("name", "cluster"), _clusters(), ids=lambda v: v if isinstance(v, str) else "")
def test_each_nodes_view_equals_the_reference_proxiers(name: str, cluster: ClusterState) -> None:
    shared: dict[str, SharedExpectation] = {}
    checked = 0
    for node in cluster.nodes:
        inp = build_input(cluster, node.name)
        options = view_options(inp)
        key = f"{inp.family}:{options}"
        if key not in shared:
            shared[key] = SharedExpectation(cluster, inp.family, options)
        got = shared[key].expectation_for(node.name, node.zone or "", inp.primary_node_ip)
        want = expected_view(inp)
        assert dict(got.view.frontends) == dict(want.frontends), (name, node.name)
        assert list(got.view.frontends) == list(want.frontends)
        drops = sorted((fe, v) for fe, v in want.frontends.items() if fe.kind == NODE_PORT and v.verdict == DROP)
        assert sorted(got.node_port_drops()) == drops
        checked += 1
    assert checked >= 2


def test_differing_is_none_across_expectation_caches() -> None:
    cluster = synth_cluster(SynthSpec(services=10, endpoints=2, nodes=2, seed=1))
    a = SharedExpectation(cluster, "IPv4").expectation_for("node-0000", "", None)
    b = SharedExpectation(cluster, "IPv4").expectation_for("node-0000", "", None)
    assert a.differing(b) is None  # different caches: not comparable
    again = a.shared.expectation_for("node-0000", "", None)
    assert a.differing(again) == set()
