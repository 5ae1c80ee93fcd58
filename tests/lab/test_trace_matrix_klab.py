"""`kpdoctor trace --matrix` from the live API and from `--snapshot`, every node's facts collected over SSH the
way `kpdoctor scan --transport ssh` collects them, on the lab's real Kubernetes (a real etcd + kube-apiserver, a
real kube-proxy in each of three node namespaces writing the rules). Two nodes run a real sshd; the third has
none (unreachable: its ssh connection is refused). The live and snapshot matrices must equal the matrix of a
bundle `kpdoctor collect` wrote over SSH from the same cluster a moment before, and the unreachable node must
be one row "not collected: <reason>" in all three, never a guessed outcome.

As in tests/lab/test_trace_klab.py the lab runs no kubelet or controller-manager: Pod status and EndpointSlices
are written through the real API as they would write them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from kpdoctor.lab.kcluster import ClusterState
from tests.support.klab import (
    admin_api,
    endpointslice,
    kpdoctor,
    lab_cluster,
    service,
    sshd_on_nodes,
    wait_for_rules,
)

pytestmark = pytest.mark.root("etcd", "nft", "curl", "sshd")

MATRIX = ["--matrix", "--to", "svc/lab/web"]


@pytest.fixture(scope="module")
def matrices(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ClusterState, dict[str, Any]]]:
    tmp = tmp_path_factory.mktemp("klab-matrix")
    with lab_cluster(tmp, nodes=3) as state:
        n0, n1, _ = state.nodes
        api = admin_api(state)
        api.apply(service("web", node_port=30080))
        api.apply(endpointslice("web", [(n0.pods[0].ip, n0.name), (n1.pods[0].ip, n1.name)]))
        wait_for_rules(state, "lab/web:http", serving=True)
        client = f"{state.prefix}-client"
        bundle = tmp / "bundle"
        out: dict[str, Any] = {}
        with sshd_on_nodes(state, [n0, n1]) as ssh:
            api_flags = ["--kubeconfig", state.kubeconfig, "--transport", "ssh", *ssh]
            out["collect"] = kpdoctor("collect", "-f", str(bundle), *api_flags, netns=client)
            out["live"] = kpdoctor("trace", *api_flags, *MATRIX, "-o", "json", netns=client)
            snap = ["--snapshot", str(bundle / "cluster"), *api_flags[2:]]
            out["snapshot"] = kpdoctor("trace", *snap, *MATRIX, netns=client)
            out["subset"] = kpdoctor("trace", *api_flags, *MATRIX, "--node", n1.name, "--node", state.nodes[2].name,
                                     "-o", "json", netns=client)
        out["bundle_json"] = kpdoctor("trace", "--bundle", str(bundle), *MATRIX, "-o", "json")
        out["bundle_text"] = kpdoctor("trace", "--bundle", str(bundle), *MATRIX)
        yield state, out


def _ok(proc: Any) -> str:
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    text: str = proc.stdout
    return text


def test_live_and_snapshot_matrices_equal_the_bundle_matrix(matrices: tuple[ClusterState, dict[str, Any]]) -> None:
    state, out = matrices
    assert out["collect"].returncode == 0, out["collect"].stderr[-2000:]  # two of three nodes: a partial bundle
    live = json.loads(_ok(out["live"]))
    offline = json.loads(_ok(out["bundle_json"]))
    assert live == offline
    assert _ok(out["snapshot"]) == _ok(out["bundle_text"])
    reached = [n.name for n in state.nodes[:2]]
    for name in reached:  # clusterIP + nodePort x outside, a pod, the node: both endpoints, half each
        rows = [c for c in live if c["node"] == name]
        assert len(rows) == 6 and all(c["complete"] and "50% -> " in c["summary"] for c in rows), rows
        assert all(c["delivered"] == pytest.approx(1.0) for c in rows), rows


def test_the_unreachable_node_is_one_row_not_collected(matrices: tuple[ClusterState, dict[str, Any]]) -> None:
    state, out = matrices
    down = state.nodes[2].name
    live = json.loads(_ok(out["live"]))
    rows = [c for c in live if c["node"] == down]
    assert len(rows) == 1, rows
    row = rows[0]
    assert row["summary"].startswith("not collected: ") and "refused" in row["summary"].lower(), row
    assert (row["frontend"], row["client"], row["complete"], row["outcomes"]) == ("-", "-", False, [])
    assert set(row) == set(live[0])  # the same keys as every other cell
    text = [line for line in _ok(out["snapshot"]).splitlines() if line.startswith(f"| {down} |")]
    assert len(text) == 1 and "| - | - | not collected: " in text[0], text


def test_node_subset(matrices: tuple[ClusterState, dict[str, Any]]) -> None:
    state, out = matrices
    cells = json.loads(_ok(out["subset"]))
    assert {c["node"] for c in cells} == {state.nodes[1].name, state.nodes[2].name}
    full = json.loads(_ok(out["live"]))
    assert cells == [c for c in full if c["node"] != state.nodes[0].name]
