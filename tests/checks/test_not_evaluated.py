"""Absent evidence is "not evaluated", never a verdict (issue 10, item 2).

For each of the four real bundles (B1-B4, real kube-apiserver + kube-proxy v1.36.2), every fact is deleted in
turn - each node fact, each node's whole `kube-proxy/` folder, all of a node's iptables dumps, all of a node's
facts (a hand-assembled bundle), each cluster file - and the scan (the real engine, every built-in check) must
not produce a finding at WARNING or above that the complete bundle did not produce. A finding may disappear
(its evidence is gone) or turn into an INFO "not evaluated"; it may never appear from a gap.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType

import pytest

import kpdoctor.checks.kube_proxy_node_health as node_health
from kpdoctor.cluster.snapshot import load_snapshot
from kpdoctor.cluster.state import ClusterState
from kpdoctor.engine import run_checks
from kpdoctor.findings import Finding, Severity
from kpdoctor.node.state import NodeState
from tests.support.checks import BUNDLES, all_checks, load_bundle

SCENARIOS = ("B1-healthy", "B2-stale-endpoint", "B3-backend-split", "B4-ipvs-unavailable")
Key = tuple[str, str, str, Severity]


def _scan(cluster: ClusterState, nodes: Mapping[str, NodeState]) -> list[Finding]:
    return run_checks(all_checks(), cluster, list(nodes.values())).findings


def _key(f: Finding) -> Key:
    return (f.check_id, f.scope, f.subject, f.severity)


def _new_alarms(base: set[Key], found: list[Finding]) -> list[str]:
    return [f"{f.severity.name} {f.check_id} {f.scope} {f.subject}: {f.message[:200]}"
            for f in found if f.severity >= Severity.WARNING and _key(f) not in base]


def _keep(node: NodeState, keep: Callable[[str], bool]) -> NodeState:
    return NodeState(node.name, node.transport, MappingProxyType({k: f for k, f in node.facts.items() if keep(k)}))


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_deleting_any_node_fact_raises_no_new_alarm(scenario: str) -> None:
    cluster, nodes = load_bundle(scenario)
    base = {_key(f) for f in _scan(cluster, nodes)}
    variants: list[tuple[str, str, Callable[[str], bool]]] = []
    for name, node in nodes.items():
        variants += [(name, key, lambda k, key=key: k != key) for key in sorted(node.facts)]  # type: ignore[misc]
        variants += [
            (name, "kube-proxy/ (whole folder)", lambda k: not k.startswith("kube-proxy/")),
            (name, "every iptables dump", lambda k: "tables" not in k),
            (name, "every fact (hand-assembled bundle)", lambda k: False),
        ]
    assert len(variants) > 20  # the bundles hold ~20 facts per node: the loop really deletes them
    problems = []
    for name, what, keep in variants:
        found = _scan(cluster, {**nodes, name: _keep(nodes[name], keep)})
        problems += [f"{name} without {what}: {line}" for line in _new_alarms(base, found)]
    assert problems == [], "\n".join(problems)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_deleting_any_cluster_file_raises_no_new_alarm(scenario: str, tmp_path: Path) -> None:
    cluster, nodes = load_bundle(scenario)
    base = {_key(f) for f in _scan(cluster, nodes)}
    source = BUNDLES / scenario / "bundle" / "cluster"
    members = [p.relative_to(source).as_posix() for p in sorted(source.rglob("*")) if p.is_file()] + ["logs"]
    assert {"services.json", "endpointslices.json", "nodes.json", "pods.json", "daemonsets.json",
            "configmaps.json"} <= set(members)
    problems = []
    for i, member in enumerate(members):
        copy = tmp_path / f"c{i}"
        shutil.copytree(source, copy)
        target = copy / member
        shutil.rmtree(target) if target.is_dir() else target.unlink()
        found = _scan(load_snapshot(copy), nodes)
        problems += [f"without cluster/{member}: {line}" for line in _new_alarms(base, found)]
    assert problems == [], "\n".join(problems)


def test_a_node_nothing_was_collected_from_is_not_evaluated_by_every_node_check() -> None:
    """The report never says "passed" (or "ok") for what it did not see."""
    cluster, nodes = load_bundle("B1-healthy")
    empty = [NodeState(n.name, n.transport, MappingProxyType({})) for n in nodes.values()]
    result = run_checks(all_checks(), cluster, empty)
    status = {r.check.id: r.status for r in result.runs if r.check.scope == "node"}
    # KP-NODEPORT-FIREWALL still explains, from the API alone, the eTP=Local drop on edge-2 (INFO)
    assert {k: v for k, v in status.items() if v != "not_evaluated"} == {"KP-NODEPORT-FIREWALL": "findings"}
    assert all(f.severity <= Severity.INFO for f in result.findings), [f.message for f in result.findings]
    unseen = [f for f in result.findings if f.not_evaluated]
    assert {f.scope for f in unseen} == {"edge-1", "edge-2"}
    assert all(f.message.startswith(("not evaluated", "kernel facts")) for f in unseen), [f.message for f in unseen]


def test_no_kube_proxy_folder_with_a_ready_pod_is_not_evaluated_not_down() -> None:
    """Never "kube-proxy is not running" next to evidence that says the pod is ready."""
    cluster, nodes = load_bundle("B1-healthy")
    edge1 = _keep(nodes["edge-1"], lambda k: not k.startswith("kube-proxy/"))
    found = [f for f in _scan(cluster, {**nodes, "edge-1": edge1}) if f.check_id == node_health.CHECK.id]
    assert [(f.scope, f.severity, f.not_evaluated) for f in found] == [("edge-1", Severity.INFO, True)]
    assert "not running" not in found[0].message and "not answering" not in found[0].message
    assert any("ready=true" in e for e in found[0].evidence)


def test_api_coverage_names_what_the_expectation_lacks() -> None:
    from kpdoctor.api_coverage import missing_for_expectation

    cluster, _ = load_bundle("B1-healthy")
    assert missing_for_expectation(cluster, "edge-1") == []
    from dataclasses import replace

    assert "no Services" in missing_for_expectation(replace(cluster, services=()), "edge-1")[0]
    assert "no EndpointSlices" in missing_for_expectation(replace(cluster, endpoint_slices=()), "edge-1")[0]
    assert "no Node object 'edge-9'" in missing_for_expectation(cluster, "edge-9")[0]


def test_saw_any_reads_folders_and_ignores_facts_without_content() -> None:
    from kpdoctor.node.state import Fact
    from kpdoctor.unseen import saw_any

    _, nodes = load_bundle("B1-healthy")
    edge1 = nodes["edge-1"]
    assert saw_any(node_health.CHECK, edge1)  # reads "kube-proxy/": the folder's files count
    failed = NodeState("edge-1", "ssh", MappingProxyType({
        "kube-proxy/healthz.json": Fact("kube-proxy/healthz.json", None, error="connection refused")}))
    assert not saw_any(node_health.CHECK, failed)


SHAPES = Path(__file__).resolve().parents[1] / "fixtures" / "realworld" / "shapes"


@pytest.mark.parametrize("shape", sorted(p.name for p in SHAPES.iterdir() if p.is_dir()))
def test_deleting_any_cluster_file_of_a_real_shape_raises_no_new_alarm(shape: str, tmp_path: Path) -> None:
    """The same on the real cluster shapes (test_service_proxy.py): e.g. Calico eBPF without daemonsets.json must
    not become "nothing implements Services" - its calico-node pod names a DaemonSet that was not collected."""
    def scan(cluster: ClusterState) -> list[Finding]:
        empty = {n.name: NodeState(n.name, "bundle", MappingProxyType({})) for n in cluster.nodes}
        return _scan(cluster, empty)

    source = SHAPES / shape / "cluster"
    base = {_key(f) for f in scan(load_snapshot(source))}
    problems = []
    for i, member in enumerate(sorted(p.name for p in source.iterdir())):
        copy = tmp_path / f"c{i}"
        shutil.copytree(source, copy)
        (copy / member).unlink()
        problems += [f"without cluster/{member}: {line}" for line in _new_alarms(base, scan(load_snapshot(copy)))]
    assert problems == [], "\n".join(problems)
