"""The shared parts of `trace --matrix` (compiled rule specs and address labels shared between nodes, one
prepared node per node's rows) change no result: every cell equals the same trace run alone, with nothing
shared, on the demo bundle and on generated bundles (kube-proxy's rules rendered by the reference proxier for a
synthetic cluster: bench/synth.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from kpdoctor.node.bundle import read_bundle
from kpdoctor.trace.inputs import trace_cluster_state
from kpdoctor.trace.ipt_match import compile_spec, quick_dst
from kpdoctor.trace.matrix import cell, matrix, requests
from kpdoctor.trace.run import run_trace
from kpdoctor.trace.spec_cache import SpecCache

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "kpdoctor" / "demo" / "bundle"


def _alone(bundle: Path, service: str) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    """(the matrix's cells, the same cells each traced alone with a fresh prepare) as JSON-ready dicts."""
    b = read_bundle(bundle)
    cluster = trace_cluster_state(b)
    assert cluster is not None
    svc = cluster.service_by_key[service]
    states = b.node_states()
    shared = [c.__dict__ for c in matrix(cluster, svc, None, states)]
    alone = [cell(name, label, client, run_trace(req, states[name], cluster)).__dict__
             for name in sorted(states) for label, client, req in requests(cluster, svc, None, name)]
    return shared, alone


@pytest.mark.parametrize("service", ["payments/pay-gateway", "payments/billing"])
def test_demo_matrix_equals_cells_traced_alone(service: str) -> None:
    shared, alone = _alone(DEMO, service)
    assert len(shared) >= 6
    assert json.dumps(shared) == json.dumps(alone)


def _generated_bundle(root: Path) -> tuple[Path, list[str]]:
    """3 nodes' kube-proxy dumps of a synthetic cluster (40 Services x 3 endpoints; NodePort, LoadBalancer,
    eTP=Local, affinity among them); node 0 and 1 with ip-addr.json, node 2 without (its cells fork on
    "is this address local"). Returns the bundle and the Services to trace."""
    sys.path.insert(0, str(ROOT / "bench"))
    from bench_trace import SYSCTL, ip_addr_json
    from synth import SynthSpec, synth_cluster, write_snapshot

    from kpdoctor.proxier.context import build_input
    from kpdoctor.proxier.render import render

    spec = SynthSpec(services=40, endpoints=3, nodes=3, nodeport_fraction=0.4, loadbalancer_fraction=0.2)
    write_snapshot(spec, root / "cluster")
    cluster = synth_cluster(spec)
    for k in range(3):
        name = spec.node_name(k)
        node_dir = root / "nodes" / name
        node_dir.mkdir(parents=True)
        (node_dir / "iptables-save.txt").write_text(render(build_input(cluster, name)))
        (node_dir / "iptables-version.txt").write_text("iptables v1.8.9 (nf_tables)\n")
        (node_dir / "sysctl.txt").write_text(SYSCTL)
        node = cluster.node_by_name[name]
        if k < 2:
            (node_dir / "ip-addr.json").write_text(ip_addr_json(node.internal_ips[0], (node.pod_cidrs or [""])[0]))
    kinds = {}
    for svc in cluster.services:
        kind = (svc.type, svc.external_traffic_policy, svc.session_affinity)
        kinds.setdefault(kind, svc.key)
    return root, sorted(kinds.values())


def test_generated_matrix_equals_cells_traced_alone(tmp_path: Path) -> None:
    bundle, services = _generated_bundle(tmp_path)
    assert len(services) >= 3  # ClusterIP, NodePort, LoadBalancer at least
    total = 0
    for service in services:
        shared, alone = _alone(bundle, service)
        assert json.dumps(shared) == json.dumps(alone), service
        total += len(shared)
    assert total >= 3 * 3 * len(services)  # 3 nodes x 3 clients x at least one frontend


def test_spec_cache_returns_what_compiling_returns_and_is_bounded() -> None:
    specs = SpecCache(limit=1)
    a = '-d 10.96.0.10/32 -p tcp -m comment --comment "kube-system/kube-dns:dns-tcp cluster IP" -m tcp ' \
        '--dport 53 -j KUBE-SVC-ERIFXISQEP7F7OF4'
    b = "-m comment --comment \"kubernetes service nodeports\" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS"
    assert specs.compile(a) is specs.compile(a)  # kept: compiled once
    assert specs.compile(a).target == compile_spec(a).target == "KUBE-SVC-ERIFXISQEP7F7OF4"
    assert specs.compile(b) is not specs.compile(b)  # past the limit: compiled each time, not kept
    assert specs.compile(b).target == "KUBE-NODEPORTS"
    assert specs.quick_dst(a) == quick_dst(a) is not None
    assert specs.quick_dst(b) is None


def test_decisive_matches_are_evaluated_first_and_forking_ones_keep_their_order() -> None:
    """A rule for another port is dismissed before its address-type lookup (which forks without ip-addr.json);
    the matches that may fork stay in the order written, so branches come out in the same order."""
    spec = '-m comment --comment "ns/a:http" -m addrtype --dst-type LOCAL -m statistic --mode random ' \
           '--probability 0.5 -p tcp -m tcp --dport 30080 -j DROP'
    comp = compile_spec(spec)
    assert [text for _, text in comp.ordered][:2] == ["-p tcp", "-m tcp --dport 30080"]
    rest = [text for _, text in comp.ordered][2:]
    assert rest == [text for _, text in comp.matches if text in rest]  # the others: as written
    assert sorted(map(id, comp.ordered)) == sorted(map(id, comp.matches))  # the same matches, nothing lost
