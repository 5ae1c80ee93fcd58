"""`kpdoctor trace` from the live API and from a snapshot, the node's facts collected with `--transport local`
inside the node's namespace, on the lab's real Kubernetes (a real etcd + kube-apiserver, a real kube-proxy in
each node namespace writing the rules): the live trace must equal the bundle trace of the same state (a bundle
`kpdoctor collect` wrote from the same API and node a moment before). Names resolve through the live API in a
workload namespace (`pod/lab/NAME`), which the loaders keep only when the trace names it. A collected bundle
holds only kube-system Pods, so for pod names the bundle trace is given the pod's IP (and compared without the
name labels), and the snapshot is the bundle's cluster/ plus the lab namespace's Pods as the API lists them.

The lab runs no kubelet or controller-manager: Pod status and EndpointSlices are written through the real API as
they would write them (see tests/lab/test_why_klab.py).
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kpdoctor.lab.kcluster import ClusterState
from tests.support.klab import admin_api, endpointslice, kpdoctor, lab_cluster, service, wait_for_rules

pytestmark = pytest.mark.root("etcd", "nft", "curl")

NS = "lab"


def _pod(api: Any, name: str, state: ClusterState, index: int) -> str:
    node = state.nodes[index]
    ip = node.pods[0].ip
    api.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS, "labels": {"app": "web"}},
               "spec": {"nodeName": node.name, "containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10",
                                                               "ports": [{"name": "http", "containerPort": 8080}]}]}})
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    api.set_status("Pod", name, {"phase": "Running", "hostIP": node.ip, "podIP": ip, "podIPs": [{"ip": ip}],
                                 "startTime": now,
                                 "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now}]},
                   namespace=NS)  # fmt: skip
    return ip


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ClusterState, Path]]:
    tmp = tmp_path_factory.mktemp("klab-trace")
    with lab_cluster(tmp, nodes=2) as state:
        api = admin_api(state)
        n0, n1 = state.nodes[0], state.nodes[1]
        a = _pod(api, "web-0", state, 0)
        b = _pod(api, "web-1", state, 1)
        api.apply(service("web", node_port=30080))
        api.apply(endpointslice("web", [(a, n0.name), (b, n1.name)]))
        wait_for_rules(state, f"{NS}/web:http", serving=True)  # not only the no-endpoints REJECT
        bundle = tmp / "bundle"
        proc = kpdoctor("collect", "-f", str(bundle), "--transport", "local", "--node", n0.name,
                        "--kubeconfig", state.kubeconfig, netns=n0.netns)
        assert proc.returncode == 0, proc.stderr[-2000:]
        snapshot = tmp / "snapshot"
        shutil.copytree(bundle / "cluster", snapshot)
        pods = api.request("GET", api.path("Pod", NS))
        items = [{"apiVersion": "v1", "kind": "Pod", **item} for item in pods["items"]]
        (snapshot / "pods-lab.json").write_text(json.dumps({"apiVersion": "v1", "kind": "PodList", "items": items}))
        yield state, bundle


def _trace(*args: str, netns: str | None = None) -> dict[str, Any]:
    proc = kpdoctor("trace", "-o", "json", *args, netns=netns)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    doc: dict[str, Any] = json.loads(proc.stdout)
    return doc


PACKETS = [("node/{n0}", "svc/lab/web:http"), ("external", "node/{n0}:30080"), ("10.99.0.7", "svc/lab/web:80")]


def _accepted(doc: dict[str, Any]) -> None:
    """The trace says something: complete, and every new connection is accepted."""
    assert doc["complete"] and doc["outcomes"], doc
    assert sum(o["p"] for o in doc["outcomes"] if o["verdict"] == "accept") == pytest.approx(1.0), doc["outcomes"]


@pytest.mark.parametrize(("src", "dst"), PACKETS)
def test_live_and_snapshot_traces_equal_the_bundle_trace(lab: tuple[ClusterState, Path], src: str, dst: str) -> None:
    state, bundle = lab
    n0 = state.nodes[0]
    packet = ["--node", n0.name, "--from", src.format(n0=n0.name), "--to", dst.format(n0=n0.name)]
    offline = _trace("--bundle", str(bundle), *packet)
    live = _trace("--kubeconfig", state.kubeconfig, "--transport", "local", *packet, netns=n0.netns)
    snap = _trace("--snapshot", str(bundle / "cluster"), "--transport", "local", *packet, netns=n0.netns)
    assert live == offline
    assert snap == offline
    _accepted(offline)


POD_PACKETS = [("pod/lab/web-1", "svc/lab/web:80"), ("pod/lab/web-0", "pod/lab/web-1:8080")]
UNLABELLED = ("from", "to", "endpoints")


@pytest.mark.parametrize(("src", "dst"), POD_PACKETS)
def test_pod_names_through_the_live_api_equal_the_bundle_trace_of_their_ips(lab: tuple[ClusterState, Path],
                                                                           src: str, dst: str) -> None:
    state, bundle = lab
    n0, n1 = state.nodes[0], state.nodes[1]
    ips = {"pod/lab/web-0": n0.pods[0].ip, "pod/lab/web-1": n1.pods[0].ip}
    packet = ["--node", n0.name, "--from", src, "--to", dst]
    live = _trace("--kubeconfig", state.kubeconfig, "--transport", "local", *packet, netns=n0.netns)
    snap = _trace("--snapshot", str(bundle.parent / "snapshot"), "--transport", "local", *packet, netns=n0.netns)
    assert live == snap
    assert live["from"] == src.replace("pod/", "pod ")
    by_ip = [ips.get(v.split(":")[0], v.split(":")[0]) + (":" + v.split(":")[1] if ":" in v else "") for v in (src, dst)]
    offline = _trace("--bundle", str(bundle), "--node", n0.name, "--from", by_ip[0], "--to", by_ip[1])
    assert {k: v for k, v in live.items() if k not in UNLABELLED} == \
        {k: v for k, v in offline.items() if k not in UNLABELLED}
    assert [(e["target"], e["p"]) for e in live["endpoints"]] == [(e["target"], e["p"]) for e in offline["endpoints"]]
    _accepted(live)


def test_live_clusterip_trace_reaches_both_pods_by_name(lab: tuple[ClusterState, Path]) -> None:
    state, _ = lab
    n0 = state.nodes[0]
    doc = _trace("--kubeconfig", state.kubeconfig, "--transport", "local", "--node", n0.name,
                 "--from", "pod/lab/web-0", "--to", "svc/lab/web:http", netns=n0.netns)
    assert doc["from"] == "pod lab/web-0" and doc["packet"]["src"] == n0.pods[0].ip
    targets = {e["target"]: e for e in doc["endpoints"]}
    assert set(targets) == {f"{n0.pods[0].ip}:8080", f"{state.nodes[1].pods[0].ip}:8080"}, doc["endpoints"]
    assert all(e["p"] == pytest.approx(0.5) for e in targets.values())
    assert targets[f"{state.nodes[1].pods[0].ip}:8080"]["belongs_to"].startswith("pod lab/web-1"), targets


def test_live_unknown_pod_is_one_line_exit_2(lab: tuple[ClusterState, Path]) -> None:
    state, _ = lab
    n0 = state.nodes[0]
    proc = kpdoctor("trace", "--kubeconfig", state.kubeconfig, "--transport", "local", "--node", n0.name,
                    "--from", "pod/lab/ghost", "--to", "svc/lab/web:http", netns=n0.netns)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "no Pod lab/ghost" in lines[0], lines


def test_live_matrix_for_the_one_node_equals_the_bundle_matrix(lab: tuple[ClusterState, Path]) -> None:
    state, bundle = lab
    n0 = state.nodes[0]
    args = ["--matrix", "--node", n0.name, "--to", "svc/lab/web"]
    offline = kpdoctor("trace", "--bundle", str(bundle), *args)
    live = kpdoctor("trace", "--kubeconfig", state.kubeconfig, "--transport", "local", *args, netns=n0.netns)
    assert offline.returncode == live.returncode == 0, live.stderr[-2000:] + offline.stderr[-2000:]
    assert live.stdout == offline.stdout
    rows = [line for line in live.stdout.splitlines() if line.startswith(f"| {n0.name} |")]
    assert len(rows) == 6 and all("50% -> " in row for row in rows), live.stdout  # clusterIP + nodePort x 3 clients
