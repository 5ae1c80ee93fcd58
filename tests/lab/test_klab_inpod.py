"""`scan --transport pod --analyze-in-pod` on the lab's real kubelet: the node's checks run inside the collector
pod and only the compact node result comes back (kpdoctor.inpod); the merged report has the findings of
`--transport pod` (raw dumps brought back) and of `--transport local` (run on the node itself).

Setup: `kpdoctor lab cluster up --with-kubelet` (one node, no controller-manager), the
collector image built offline (kpdoctor.lab.pyimage with the kube-proxy image's netfilter userland) and
imported into the kubelet's containerd, deploy/rbac.yaml applied as shipped (the pod's ServiceAccount), and
what the lab's missing controllers would write: the `kube-root-ca.crt` ConfigMap and the `kubernetes`
Service's endpoint (a relay to the API server, tests/support/klab.api_relay) so the in-cluster config works.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kpdoctor import inpod
from kpdoctor.lab import kobjects, pki
from kpdoctor.lab.kcluster import ClusterState
from tests.support import klab

pytestmark = pytest.mark.root("etcd", "nft", "curl", "containerd", "runc", "ctr", "nsenter")
NAMESPACES = ("kube-system", inpod.NAMESPACE)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    klab.require_kubelet()
    tmp = tmp_path_factory.mktemp("klab-inpod")
    with klab.lab_cluster(tmp, nodes=1, with_kubelet=True) as state:
        node = state.nodes[0]
        klab.apply_workload(state, node_port=0, with_api=False)
        image = klab.install_collector(state, tmp)
        with klab.api_relay(state, node):
            yield {"state": state, "node": node, "image": image}


def _collector_pods(state: ClusterState) -> list[str]:
    return klab.collector_pods(state, NAMESPACES)


def _scan(lab: dict[str, Any], transport: str, *extra: str, codes: tuple[int, ...] = (0, 1),
          kubeconfig: str = "") -> tuple[dict[str, Any], float]:  # fmt: skip
    state, node = lab["state"], lab["node"]
    t0 = time.perf_counter()
    proc = klab.kpdoctor("scan", "--kubeconfig", kubeconfig or state.kubeconfig, "--transport", transport, "--nodes", node.name,
                    "-o", "json", *extra, netns=node.netns if transport == "local" else None)  # fmt: skip
    wall = time.perf_counter() - t0
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert proc.returncode in codes, proc.stderr[-1500:]
    return klab.report(proc), wall


def _outcome(rep: dict[str, Any]) -> tuple[dict[str, str], list[tuple[str, str, str, str]]]:
    """Every check's status and every finding group's (check id, severity, subject, message)."""
    groups = sorted((c["id"], g.get("severity", ""), str(g.get("subject", "")), str(g.get("message", "")))
                    for c in rep["checks"] for g in c.get("groups", []))  # fmt: skip
    return {c["id"]: c["status"] for c in rep["checks"]}, groups


@pytest.mark.parametrize("fault", [None, "ip_forward"])
def test_in_pod_analysis_equals_pod_and_local(lab: dict[str, Any], fault: str | None) -> None:
    netns = lab["node"].netns
    if fault:
        subprocess.run(["ip", "netns", "exec", netns, "sysctl", "-qw", "net.ipv4.ip_forward=0"], check=True, timeout=20)
    try:
        before = klab.sorted_rules(netns)
        in_pod, wall_in = _scan(lab, "pod", "--analyze-in-pod", "--collector-image", lab["image"])
        after = klab.sorted_rules(netns)
        via_pod, wall_pod = _scan(lab, "pod")
        local, _ = _scan(lab, "local")
    finally:
        if fault:
            subprocess.run(["ip", "netns", "exec", netns, "sysctl", "-qw", "net.ipv4.ip_forward=1"], check=True, timeout=20)
    node = in_pod["nodes"][0]
    assert node["reachable"] and node["transport"] == "pod", node
    assert node["address"].startswith(f"pod {inpod.NAMESPACE}/kpdoctor-collect-") and "analyzed in pod" in node["address"]
    assert in_pod["gaps"] == via_pod["gaps"], (in_pod["gaps"], via_pod["gaps"])
    statuses, groups = _outcome(in_pod)
    assert (statuses, groups) == _outcome(via_pod) == _outcome(local)
    assert in_pod["exit_code"] == via_pod["exit_code"] == local["exit_code"]
    if fault:
        assert [g for g in groups if g[1] in ("warning", "error", "critical")], "the fault gave no finding"
    else:
        assert not [g for g in groups if g[1] in ("error", "critical")], groups
    assert before == after  # read-only
    assert _collector_pods(lab["state"]) == []
    print(f"\nwall s, fault={fault}: --analyze-in-pod {wall_in:.1f}, --transport pod {wall_pod:.1f}")


def test_bytes_back_from_the_pod(lab: dict[str, Any]) -> None:
    """What crosses the exec stream for one node: every fact's output (stdout + stderr) without in-pod analysis,
    the node result's JSON with it. Printed for docs/performance.md."""
    from kubernetes import client

    from kpdoctor.cluster.live import api_client, load_live
    from kpdoctor.node.collect import CollectOptions, collect_node

    state, name = lab["state"], lab["node"].name
    core = client.CoreV1Api(api_client(state.kubeconfig, None))
    cluster = load_live(state.kubeconfig, None).state
    options = CollectOptions(transport="pod", kube_api=core, timeout=120, concurrency=1)
    t0 = time.perf_counter()
    raw = collect_node(name, cluster=cluster, options=options)
    t1 = time.perf_counter()
    run = inpod.analyze_nodes([name], options=options, image=lab["image"], cluster=cluster, check_ids=[])
    t2 = time.perf_counter()
    assert raw.reachable and run.results[name].node.reachable, (raw.error, run.results[name].node.error)
    raw_bytes = sum(len((f.content or "").encode()) + len(f.stderr.encode()) for f in raw.facts.values())
    result_bytes = run.received[name]
    assert 0 < result_bytes < raw_bytes
    assert run.results[name].runs, "no check ran in the pod"
    print(f"\nbytes back from the pod: raw facts {raw_bytes} ({len(raw.facts)} facts, {t1 - t0:.1f} s), "
          f"node result {result_bytes} ({len(run.results[name].findings)} findings, {t2 - t1:.1f} s)")
    assert _collector_pods(state) == []


def test_node_command_analyzes_in_the_pod_too(lab: dict[str, Any]) -> None:
    """`kpdoctor node NAME --transport pod --analyze-in-pod`: that node's node checks, run in its collector pod,
    the same as the node checks of `scan --analyze-in-pod`; no cluster check; the pod is gone afterwards."""
    from kpdoctor.registry import discover

    state, node = lab["state"], lab["node"]
    node_ids = {c.id for c in discover().checks if c.scope == "node"}
    proc = klab.kpdoctor("node", node.name, "--kubeconfig", state.kubeconfig, "--transport", "pod", "--analyze-in-pod",
                    "--collector-image", lab["image"], "-o", "json")  # fmt: skip
    assert "Traceback" not in proc.stderr and proc.returncode in (0, 1), proc.stderr[-1500:]
    alone = klab.report(proc)
    scanned, _ = _scan(lab, "pod", "--analyze-in-pod", "--collector-image", lab["image"])
    assert alone["nodes"][0]["reachable"] and "analyzed in pod" in alone["nodes"][0]["address"], alone["nodes"]
    statuses, groups = _outcome(alone)
    assert set(statuses) == node_ids
    scan_statuses, scan_groups = _outcome(scanned)
    assert statuses == {k: v for k, v in scan_statuses.items() if k in node_ids}
    assert groups == [g for g in scan_groups if g[0] in node_ids]
    assert _collector_pods(state) == []


def test_an_image_without_kpdoctor_is_a_one_line_node_error(lab: dict[str, Any]) -> None:
    state = lab["state"]
    pod = klab.admin_api(state).get("Pod", kobjects.ds_pod_name(state.kubelet_node), namespace="kube-system")
    kube_proxy_image = pod["spec"]["containers"][0]["image"]
    rep, _ = _scan(lab, "pod", "--analyze-in-pod", "--collector-image", kube_proxy_image, "--timeout", "60",
                   codes=(3,))
    node = rep["nodes"][0]
    assert not node["reachable"] and "has no kpdoctor" in node["error"] and "\n" not in node["error"], node
    assert rep["exit_code"] == 3
    assert _collector_pods(state) == []


def test_analyze_in_pod_needs_an_image(lab: dict[str, Any]) -> None:
    proc = klab.kpdoctor("scan", "--kubeconfig", lab["state"].kubeconfig, "--transport", "pod", "--analyze-in-pod")
    assert proc.returncode == 2 and "--collector-image" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_timeout_leaves_no_pod(lab: dict[str, Any]) -> None:
    """An image the kubelet cannot pull: the pod never runs, the node times out, the pod is deleted."""
    rep, _ = _scan(lab, "pod", "--analyze-in-pod", "--collector-image", "registry.invalid/kpdoctor/none:0",
                   "--timeout", "10", codes=(3,))  # fmt: skip
    node = rep["nodes"][0]
    assert not node["reachable"] and "not running in time" in node["error"], node
    assert _collector_pods(lab["state"]) == []


def test_ctrl_c_deletes_the_pod(lab: dict[str, Any]) -> None:
    state = lab["state"]
    err = klab.interrupt_once_collecting(
        ["scan", "--kubeconfig", state.kubeconfig, "--transport", "pod", "--analyze-in-pod", "--nodes",
         state.kubelet_node, "--collector-image", "registry.invalid/kpdoctor/none:0", "--timeout", "120", "-o", "json"],
        lambda: bool(_collector_pods(state)))  # fmt: skip
    assert "Traceback" not in err, err[-1500:]
    assert _collector_pods(state) == []


CALLER = "kpdoctor-caller"  # deploy/rbac-inpod-caller.yaml's ServiceAccount
CALLER_ROLE = "kpdoctor-inpod-caller"


def _caller_docs() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((klab.REPO / "deploy" / "rbac-inpod-caller.yaml").read_text()) if d]


def _allowed(state: ClusterState, verb: str, resource: str, namespace: str, subresource: str = "") -> bool:
    """The real API server's RBAC decision for the caller's ServiceAccount (a SubjectAccessReview)."""
    attrs = {"verb": verb, "resource": resource, "namespace": namespace, "group": ""}
    if subresource:
        attrs["subresource"] = subresource
    body = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
            "spec": {"user": f"system:serviceaccount:{inpod.NAMESPACE}:{CALLER}",
                     "groups": ["system:serviceaccounts", f"system:serviceaccounts:{inpod.NAMESPACE}",
                                "system:authenticated"],
                     "resourceAttributes": attrs}}  # fmt: skip
    api = klab.admin_api(state)
    return bool(api.request("POST", f"{api.server}/apis/authorization.k8s.io/v1/subjectaccessreviews", body)
                ["status"].get("allowed"))  # fmt: skip


def _wait_allowed(state: ClusterState, want: bool, *args: str) -> None:
    """Until the API server's RBAC cache has seen the Role change (bounded)."""
    end = time.monotonic() + 30
    while _allowed(state, *args) != want:
        assert time.monotonic() < end, f"RBAC never became allowed={want} for {args}"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def caller_kubeconfig(lab: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """deploy/rbac-inpod-caller.yaml applied as shipped (beside deploy/rbac.yaml, which the lab fixture applied)
    and a kubeconfig with a real TokenRequest token of its ServiceAccount: nothing else grants it anything."""
    state = lab["state"]
    api = klab.admin_api(state)
    for doc in _caller_docs():
        api.apply(doc)
    token = api.token(CALLER, inpod.NAMESPACE, seconds=3600)
    return pki.write_kubeconfig(tmp_path_factory.mktemp("caller") / "caller.kubeconfig", state.apiserver,
                                state.state_dir / "pki" / "ca.crt", user=CALLER, token=token)  # fmt: skip


def test_inpod_caller_rbac_is_enough(lab: dict[str, Any], caller_kubeconfig: Path) -> None:
    """With only deploy/rbac-inpod-caller.yaml's rights, `--analyze-in-pod` reports what the admin's scan does;
    the real API server denies the caller what the manifest leaves out."""
    state = lab["state"]
    _wait_allowed(state, True, "create", "pods", inpod.NAMESPACE, "exec")
    admin, _ = _scan(lab, "pod", "--analyze-in-pod", "--collector-image", lab["image"])
    caller, _ = _scan(lab, "pod", "--analyze-in-pod", "--collector-image", lab["image"],
                      kubeconfig=str(caller_kubeconfig))  # fmt: skip
    node = caller["nodes"][0]
    assert node["reachable"] and "analyzed in pod" in node["address"], node
    assert _outcome(caller) == _outcome(admin)
    assert caller["gaps"] == admin["gaps"] and caller["exit_code"] == admin["exit_code"]
    assert _collector_pods(state) == []
    for denied in (("get", "secrets", inpod.NAMESPACE), ("list", "secrets", "kube-system"),
                   ("create", "pods", "kube-system"), ("create", "pods", "default"),
                   ("create", "pods", "kube-system", "exec"), ("create", "serviceaccounts", inpod.NAMESPACE, "token")):
        assert not _allowed(state, *denied), denied  # fmt: skip


def test_inpod_caller_without_pods_exec_is_a_one_line_node_error(lab: dict[str, Any], caller_kubeconfig: Path) -> None:
    """The shipped Role minus pods/exec: the pod is created (and deleted), the exec is forbidden; the node is
    unreachable with one line naming the missing right, exit 3, no traceback. The Role is put back."""
    state = lab["state"]
    api = klab.admin_api(state)
    role = next(d for d in _caller_docs() if d["kind"] == "Role" and d["metadata"]["name"] == CALLER_ROLE)
    cut = {**role, "rules": [r for r in role["rules"] if "pods/exec" not in r["resources"]]}
    assert len(cut["rules"]) == len(role["rules"]) - 1
    api.apply(cut)
    try:
        _wait_allowed(state, False, "create", "pods", inpod.NAMESPACE, "exec")
        rep, _ = _scan(lab, "pod", "--analyze-in-pod", "--collector-image", lab["image"], "--timeout", "60",
                       kubeconfig=str(caller_kubeconfig), codes=(3,))  # fmt: skip
    finally:
        api.apply(role)
    node = rep["nodes"][0]
    assert not node["reachable"] and rep["exit_code"] == 3, node
    assert "\n" not in node["error"] and "audit-id" not in node["error"], node["error"]  # kpdoctor.node.apireason
    assert f'User "system:serviceaccount:{inpod.NAMESPACE}:{CALLER}" cannot' in node["error"], node["error"]
    assert 'resource "pods/exec" in API group "" in the namespace "kpdoctor"' in node["error"], node["error"]
    print(f"\nwithout pods/exec: {node['error']}")
    assert _collector_pods(state) == []
