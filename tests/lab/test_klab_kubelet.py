"""kube-exec on a real kubelet: `kpdoctor lab cluster up --with-kubelet` runs kubelet 1.37 + containerd 1.6 +
runc on the first lab node, and that node's kube-proxy is the kubeadm-shaped DaemonSet pod the kubelet
started from the image the lab built offline. `--transport kube-exec` goes API server -> kubelet ->
containerd -> runc exec inside that pod; the same node scanned with `--transport local` from inside its
namespace must give the same findings, for a healthy node and with real faults, and leave its rules as
they were. Root only; skipped with the reason when root, the binaries or containerd are missing (required
under KPDOCTOR_REQUIRE_ROOT_TESTS=1, as the other lab tests).
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kpdoctor.lab import images, kcluster, kobjects, kproxypod, kubelet, pki
from kpdoctor.lab.kapi import ApiError
from kpdoctor.lab.kcluster import ClusterState
from kpdoctor.node import podcollect
from tests.support.klab import (
    REPO,
    admin_api,
    apply_workload,
    collector_pods,
    endpointslice,
    interrupt_once_collecting,
    kpdoctor,
    lab_cluster,
    report,
    require_kubelet,
    save,
    service,
    sorted_rules,
    wait_for_rules,
)

DEPLOY = REPO / "deploy"
pytestmark = pytest.mark.root("etcd", "nft", "curl", "containerd", "runc", "ctr", "nsenter")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterState]:
    require_kubelet()
    with lab_cluster(tmp_path_factory.mktemp("klab-kubelet"), nodes=2, with_kubelet=True) as state:
        apply_workload(state, wait=("web", "api"))
        yield state


def _node(state: ClusterState) -> Any:
    return next(n for n in state.nodes if n.name == state.kubelet_node)


def _scan(state: ClusterState, transport: str) -> dict[str, Any]:
    node = _node(state)
    proc = kpdoctor("scan", "--kubeconfig", state.kubeconfig, "--transport", transport, "--nodes", node.name,
                    "-o", "json", netns=node.netns if transport == "local" else None)  # fmt: skip
    assert proc.returncode in (0, 1), proc.stderr[-1500:]
    assert "Traceback" not in proc.stderr
    return report(proc)


def _outcome(rep: dict[str, Any]) -> tuple[dict[str, str], list[tuple[str, str, str]]]:
    """Every check's status and every finding group's (check, severity, message): what must not depend on the
    transport (evidence names the transport's own sources, so it is left out)."""
    groups = sorted((c["id"], g.get("severity", ""), str(g.get("message", "")))
                    for c in rep["checks"] for g in c.get("groups", []))  # fmt: skip
    return {c["id"]: c["status"] for c in rep["checks"]}, groups


def test_the_kubelet_runs_the_daemonset_pod(cluster: ClusterState) -> None:
    api = admin_api(cluster)
    node = api.get("Node", cluster.kubelet_node)
    assert node["status"]["nodeInfo"]["containerRuntimeVersion"] == "containerd://1.6.20"
    assert node["status"]["nodeInfo"]["kubeletVersion"] == "v1.37.2"
    ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True", ready
    pod = api.get("Pod", kobjects.ds_pod_name(cluster.kubelet_node), namespace="kube-system")
    assert pod["metadata"]["ownerReferences"][0]["kind"] == "DaemonSet"
    status = pod["status"]["containerStatuses"][0]
    assert status["ready"] is True and status["containerID"].startswith("containerd://"), status
    # the container's kube-proxy wrote the node's rules (the Service added after it started is there)
    assert "lab/web:http" in save(_node(cluster).netns, "iptables")


def test_kube_exec_equals_local_on_a_healthy_node(cluster: ClusterState) -> None:
    before = sorted_rules(_node(cluster).netns)
    via_exec = _scan(cluster, "kube-exec")
    after = sorted_rules(_node(cluster).netns)
    local = _scan(cluster, "local")
    assert via_exec["nodes"][0]["transport"] == "kube-exec" and via_exec["nodes"][0]["reachable"]
    assert via_exec["nodes"][0]["address"] == f"pod kube-system/{kobjects.ds_pod_name(cluster.kubelet_node)}"
    assert _outcome(via_exec) == _outcome(local)
    assert via_exec["exit_code"] == local["exit_code"] == 0
    assert "/proxyMode iptables" in via_exec["nodes"][0]["services_by"]  # read through the pod proxy
    assert before == after  # read-only


@pytest.mark.parametrize("fault", ["ip_forward", "forward_drop"])
def test_kube_exec_equals_local_with_a_fault(cluster: ClusterState, fault: str) -> None:
    ns = _node(cluster).netns
    do, undo = {
        "ip_forward": (["sysctl", "-qw", "net.ipv4.ip_forward=0"], ["sysctl", "-qw", "net.ipv4.ip_forward=1"]),
        "forward_drop": (["iptables", "-I", "FORWARD", "1", "-j", "DROP"], ["iptables", "-D", "FORWARD", "-j", "DROP"]),
    }[fault]  # fmt: skip
    subprocess.run(["ip", "netns", "exec", ns, *do], check=True, timeout=20)
    try:
        via_exec = _scan(cluster, "kube-exec")
        local = _scan(cluster, "local")
    finally:
        subprocess.run(["ip", "netns", "exec", ns, *undo], check=True, timeout=20)
    statuses, groups = _outcome(via_exec)
    assert [g for g in groups if g[1] in ("warning", "error", "critical")], "the fault gave no finding"
    assert (statuses, groups) == _outcome(local)
    assert via_exec["exit_code"] == local["exit_code"]


def test_down_leaves_nothing_behind(tmp_path: Path) -> None:
    require_kubelet()
    with lab_cluster(tmp_path, nodes=1, with_kubelet=True) as state:
        rec = kubelet.KubeletRecord.load(state.state_dir)
        assert rec is not None and kubelet._shims(rec.socket), "no containerd shim ran"
        cgroup, socket, mount_ns = rec.cgroup, rec.socket, rec.mount_ns
        admin_api(state).apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "kweb-1", "namespace": "lab"},
                                "spec": {"nodeName": state.kubelet_node, "containers": [
                                    {"name": "echo", "image": images.ECHO_IMAGE, "imagePullPolicy": "IfNotPresent"}]}})  # fmt: skip
        _wait_pod(state, "kweb-1", lambda p: p is not None and p["status"].get("phase") == "Running", namespace="lab")
        sandboxes = subprocess.run(["ctr", "-a", socket, "-n", "k8s.io", "tasks", "ls", "-q"], capture_output=True,
                                   text=True, timeout=20, check=True).stdout.split()  # fmt: skip
        assert [p for t in sandboxes for p in kubelet.CNI_CACHE.glob(f"*-{t}-*")], "no CNI result cached"
        sandbox_netns = kubelet._sandbox_netns_names(["ctr", "-a", socket, "-n", "k8s.io"])
        assert sandbox_netns, "no sandbox network namespace found"
    assert not kubelet._shims(socket)
    assert not [p for p in Path("/sys/fs/cgroup").glob(f"*/{cgroup}")]
    assert mount_ns not in Path("/proc/self/mountinfo").read_text()
    assert not (tmp_path / "klab").exists()
    assert not kubelet.socket_dir(state.prefix).exists()
    assert not [p for t in sandboxes for p in kubelet.CNI_CACHE.glob(f"*-{t}-*")]  # the host's libcni cache
    assert not [n for n in sandbox_netns if (Path("/run/netns") / n).exists()]  # /run/netns/cni-* of its pods
    assert shutil.which("containerd")  # the package stays; only what `up` started is gone


# -- --transport pod: a collector pod per node, always deleted ---------------------------------------------

def _collector_pods(state: ClusterState) -> list[str]:
    return collector_pods(state)


def _tasks(state: ClusterState) -> int:
    rec = kubelet.KubeletRecord.load(state.state_dir)
    assert rec is not None
    out = subprocess.run(["ctr", "-a", rec.socket, "-n", "k8s.io", "tasks", "ls", "-q"], capture_output=True,
                         text=True, timeout=20, check=True).stdout  # fmt: skip
    return len(out.split())


def _no_collector_left(state: ClusterState, tasks_before: int) -> None:
    assert _collector_pods(state) == []
    end = time.monotonic() + 60
    while _tasks(state) > tasks_before and time.monotonic() < end:  # the kubelet stops the containers
        time.sleep(0.5)
    assert _tasks(state) == tasks_before


def test_pod_transport_equals_kube_exec_and_leaves_no_pod(cluster: ClusterState) -> None:
    tasks = _tasks(cluster)
    before = sorted_rules(_node(cluster).netns)
    via_pod = _scan(cluster, "pod")
    after = sorted_rules(_node(cluster).netns)
    node = via_pod["nodes"][0]
    assert node["transport"] == "pod" and node["reachable"], node
    assert node["address"].startswith("pod kube-system/kpdoctor-collect-")
    assert _outcome(via_pod) == _outcome(_scan(cluster, "kube-exec"))
    assert before == after
    _no_collector_left(cluster, tasks)


@pytest.mark.parametrize("image, why", [
    ("registry.invalid/kpdoctor/none:0", "not running in time"),  # cannot be pulled here: the timeout path
    ("registry.k8s.io/pause:3.10", "failed"),  # has no `sleep`: the container cannot start, the error path
])  # fmt: skip
def test_pod_transport_error_and_timeout_leave_no_pod(cluster: ClusterState, image: str, why: str) -> None:
    tasks = _tasks(cluster)
    proc = kpdoctor("scan", "--kubeconfig", cluster.kubeconfig, "--transport", "pod", "--nodes", cluster.kubelet_node,
                    "--collector-image", image, "--timeout", "10", "-o", "json")  # fmt: skip
    assert "Traceback" not in proc.stderr
    node = report(proc)["nodes"][0]
    assert not node["reachable"] and "collector pod" in node["error"] and why in node["error"], node
    _no_collector_left(cluster, tasks)


def test_pod_transport_ctrl_c_deletes_the_pod(cluster: ClusterState) -> None:
    tasks = _tasks(cluster)
    err = interrupt_once_collecting(
        ["scan", "--kubeconfig", cluster.kubeconfig, "--transport", "pod", "--nodes", cluster.kubelet_node,
         "--collector-image", "registry.invalid/kpdoctor/none:0", "--timeout", "120", "-o", "json"],
        lambda: bool(_collector_pods(cluster)))  # fmt: skip
    assert "Traceback" not in err, err[-1500:]
    _no_collector_left(cluster, tasks)


def test_expired_collector_pods_are_cleaned_up(cluster: ClusterState) -> None:
    """A leftover from a run that died (kill -9): once its own deadline has passed, the next run deletes it."""
    api = admin_api(cluster)
    name = podcollect.pod_name(cluster.kubelet_node)
    manifest = podcollect.collector_pod(cluster.kubelet_node, "registry.invalid/kpdoctor/none:0", name=name,
                                        lifetime_s=1)  # fmt: skip
    api.create(manifest)
    time.sleep(2)
    from kubernetes import client

    from kpdoctor.cluster.live import api_client

    core = client.CoreV1Api(api_client(cluster.kubeconfig, None))
    assert podcollect.cleanup_expired(core) == [name]
    assert name not in _collector_pods(cluster)


def test_collector_rbac_is_enough(cluster: ClusterState, tmp_path: Path) -> None:
    """deploy/rbac.yaml + deploy/rbac-collector.yaml, and nothing else, with a real ServiceAccount token:
    both in-cluster transports reach the node and report what the admin's scan reports."""
    api = admin_api(cluster)
    for path in (DEPLOY / "rbac.yaml", DEPLOY / "rbac-collector.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                api.apply(doc)
    token = api.token("kpdoctor", "kpdoctor", seconds=3600)
    kubeconfig = pki.write_kubeconfig(tmp_path / "sa.kubeconfig", cluster.apiserver,
                                      cluster.state_dir / "pki" / "ca.crt", user="kpdoctor", token=token)  # fmt: skip
    admin = _outcome(_scan(cluster, "kube-exec"))
    for transport in ("kube-exec", "pod"):
        proc = kpdoctor("scan", "--kubeconfig", str(kubeconfig), "--transport", transport, "--nodes",
                        cluster.kubelet_node, "-o", "json")  # fmt: skip
        rep = report(proc)
        assert rep["nodes"][0]["reachable"], rep["nodes"][0]
        assert _outcome(rep) == admin, transport
    assert _collector_pods(cluster) == []


def test_pods_the_kubelet_runs_behind_a_service(cluster: ClusterState) -> None:
    """A pod the kubelet starts off the host network (CNI bridge + host-local, echo image built offline)
    behind a NodePort Service: real packets from outside through each node's real kube-proxy rules, and
    from a pod on the other node through the ClusterIP, reach it; the scans still agree."""
    api = admin_api(cluster)
    node = cluster.kubelet_node
    other = next(n for n in cluster.nodes if n.name != node)
    api.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "kweb-0", "namespace": "lab",
                                                                "labels": {"app": "kweb"}},
               "spec": {"nodeName": node, "containers": [{"name": "echo", "image": images.ECHO_IMAGE,
                                                          "imagePullPolicy": "IfNotPresent"}]}})  # fmt: skip
    try:
        pod = _wait_pod(cluster, "kweb-0", lambda p: p is not None and bool(p["status"].get("podIP"))
                        and p["status"].get("phase") == "Running", namespace="lab")  # fmt: skip
        pod_ip = pod["status"]["podIP"]
        assert pod_ip.startswith(_node(cluster).pod_cidr.rsplit(".", 1)[0] + "."), pod_ip  # the bridge's range
        svc = api.apply(service("kweb", node_port=30090))
        api.apply(endpointslice("kweb", [(pod_ip, node)]))
        wait_for_rules(cluster, f"--to-destination {pod_ip}:8080")  # the endpoint, not only the Service
        client = f"{cluster.prefix}-client"
        for n in cluster.nodes:
            assert _curl(client, f"http://{n.ip}:30090/") == "kweb-0", n.name
        assert _curl(other.pods[0].netns, f"http://{svc['spec']['clusterIP']}/") == "kweb-0"
        assert _outcome(_scan(cluster, "kube-exec")) == _outcome(_scan(cluster, "local"))
    finally:
        for kind, name in (("EndpointSlice", "kweb-lab"), ("Service", "kweb"), ("Pod", "kweb-0")):
            with contextlib.suppress(ApiError):
                api.delete(kind, name, namespace="lab")


def _curl(netns: str, url: str) -> str:
    res = subprocess.run(["ip", "netns", "exec", netns, "curl", "-s", "-m", "5", url], capture_output=True, text=True,
                         timeout=15, check=False)  # fmt: skip
    return res.stdout.strip()


def test_static_pod_kube_proxy_seen_the_same_way(cluster: ClusterState) -> None:
    """The static-pod shape, from a real kubelet: the DaemonSet pod goes, a manifest in staticPodPath comes,
    the kubelet publishes the mirror pod; kpdoctor names it a static pod and kube-exec into the mirror pod
    equals local. Runs last in this module and puts the DaemonSet pod back."""
    api = admin_api(cluster)
    rec = kubelet.KubeletRecord.load(cluster.state_dir)
    assert rec is not None
    node = cluster.kubelet_node
    name = f"kube-proxy-{node}"  # the mirror pod: `<manifest name>-<node>`
    image = images.kube_proxy_image(cluster.version)
    ds_pod = kobjects.ds_pod_name(node)
    api.delete("Pod", ds_pod, namespace="kube-system")
    _wait_pod(cluster, ds_pod, lambda pod: pod is None)
    manifest = Path(rec.root) / "manifests" / "kube-proxy.yaml"
    manifest.write_text(yaml.safe_dump(kproxypod.static_pod(image, str(cluster.state_dir / f"kube-proxy-{node}.yaml"),
                                                            str(cluster.state_dir))))  # fmt: skip
    try:
        # The mirror pod stayed Pending for 240 s in 2 of ~5 full CI runs while the lab named its DaemonSet pod
        # `kube-proxy-<node>` too (deleted just before; the module passed alone): the DaemonSet pod now has a
        # controller-shaped name, as on a real cluster, so the two never share a name.
        mirror = _wait_pod(cluster, name, lambda pod: pod is not None and pod["status"].get("phase") == "Running",
                           deadline_s=240)
        assert mirror["metadata"]["annotations"].get("kubernetes.io/config.mirror")
        assert mirror["metadata"]["ownerReferences"][0]["kind"] == "Node"
        _wait_healthy(cluster)
        via_exec = _scan(cluster, "kube-exec")
        assert via_exec["nodes"][0]["services_by"].startswith(f"kube-proxy on {node}: static pod kube-system/{name}")
        assert via_exec["nodes"][0]["address"] == f"pod kube-system/{name}"
        assert _outcome(via_exec) == _outcome(_scan(cluster, "local"))
    finally:
        manifest.unlink(missing_ok=True)
        _wait_pod(cluster, name, lambda pod: pod is None)
        _recreate_ds_pod(cluster)


def _recreate_ds_pod(state: ClusterState) -> None:
    """Put the DaemonSet's pod back on the kubelet node (as the DaemonSet controller would) and wait for it."""
    api = admin_api(state)
    name = kobjects.ds_pod_name(state.kubelet_node)
    ds = api.get("DaemonSet", "kube-proxy", namespace="kube-system")
    api.apply(kproxypod.pod(images.kube_proxy_image(state.version), state.kubelet_node, ds["metadata"]["uid"]))
    _wait_pod(state, name, lambda pod: pod is not None and pod["status"].get("phase") == "Running")
    _wait_healthy(state)


def _set_metrics_bind(state: ClusterState, bind: str) -> None:
    """Edit kube-system/kube-proxy's config.conf and roll the node's pod (delete; recreate)."""
    api = admin_api(state)
    cm = api.get("ConfigMap", "kube-proxy", namespace="kube-system")
    conf = yaml.safe_load(cm["data"]["config.conf"])
    conf["metricsBindAddress"] = bind
    cm["data"]["config.conf"] = yaml.safe_dump(conf, sort_keys=False)
    for key in ("resourceVersion", "uid", "creationTimestamp", "managedFields"):
        cm["metadata"].pop(key, None)
    api.apply(cm)
    name = kobjects.ds_pod_name(state.kubelet_node)
    api.delete("Pod", name, namespace="kube-system")
    _wait_pod(state, name, lambda pod: pod is None)
    _recreate_ds_pod(state)


def test_loopback_metrics_bind_is_not_available_not_broken(cluster: ClusterState) -> None:
    """kubeadm's effective default, metricsBindAddress 127.0.0.1:10249: the API's pod proxy cannot reach it,
    so kube-exec reads /healthz (0.0.0.0:10256) but not /metrics or /proxyMode; that is a fact "not
    available", and the findings equal the local scan's, which reads both."""
    _set_metrics_bind(cluster, "127.0.0.1:10249")
    try:
        via_exec = _scan(cluster, "kube-exec")
        local = _scan(cluster, "local")
    finally:
        _set_metrics_bind(cluster, "0.0.0.0:10249")
    assert "/proxyMode iptables" in local["nodes"][0]["services_by"]
    assert "/proxyMode" not in via_exec["nodes"][0]["services_by"]
    assert ":10256 answered" in via_exec["nodes"][0]["services_by"]
    assert _outcome(via_exec) == _outcome(local)


def _wait_pod(state: ClusterState, name: str, done: Any, deadline_s: float = 90, namespace: str = "kube-system") -> Any:
    api = admin_api(state)
    end = time.monotonic() + deadline_s
    pod = None
    while time.monotonic() < end:
        try:
            pod = api.get("Pod", name, namespace=namespace)
        except ApiError as exc:
            if exc.status != 404:
                raise
            pod = None
        if done(pod):
            return pod
        time.sleep(0.5)
    raise AssertionError(f"pod {name}: not in the expected state after {deadline_s}s: {pod and pod.get('status')}")


def _wait_healthy(state: ClusterState) -> None:
    end = time.monotonic() + 60
    while kcluster.healthz(_node(state)) is None:
        assert time.monotonic() < end, "kube-proxy /healthz did not answer"
        time.sleep(0.5)


def test_collect_and_node_commands_take_the_pod_transport(cluster: ClusterState, tmp_path: Path) -> None:
    node = cluster.kubelet_node
    proc = kpdoctor("collect", "--kubeconfig", cluster.kubeconfig, "--transport", "pod", "--node", node,
                    "-f", str(tmp_path / "b"))  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-1500:]
    assert "KUBE-SERVICES" in (tmp_path / "b" / "nodes" / node / "iptables-save.txt").read_text()
    proc = kpdoctor("node", node, "--kubeconfig", cluster.kubeconfig, "--transport", "pod", "-o", "json")
    assert proc.returncode in (0, 1) and "Traceback" not in proc.stderr, proc.stderr[-1500:]
    assert _outcome(report(proc))[1] == _outcome(_scan(cluster, "local"))[1]
    assert _collector_pods(cluster) == []


def test_trace_matrix_over_kube_exec_equals_the_bundle_matrix(cluster: ClusterState, tmp_path: Path) -> None:
    """`trace --matrix` from the live API through `--transport kube-exec` (scan's collection) equals the matrix of
    a bundle `kpdoctor collect --transport kube-exec` wrote just before. The kubelet node is read through its
    kube-proxy pod; the other node's kube-proxy is no pod (nothing to exec into): one "not collected" row."""
    import json

    other = next(n.name for n in cluster.nodes if n.name != cluster.kubelet_node)
    via = ["--kubeconfig", cluster.kubeconfig, "--transport", "kube-exec"]
    proc = kpdoctor("collect", *via, "-f", str(tmp_path / "b"))
    assert proc.returncode == 0, proc.stderr[-1500:]
    matrix = ["--matrix", "--to", "svc/lab/web", "-o", "json"]
    live = kpdoctor("trace", *via, *matrix)
    offline = kpdoctor("trace", "--bundle", str(tmp_path / "b"), *matrix)
    assert live.returncode == offline.returncode == 0, live.stderr[-1500:] + offline.stderr[-1500:]
    cells = json.loads(live.stdout)
    assert cells == json.loads(offline.stdout)
    read = [c for c in cells if c["node"] == cluster.kubelet_node]
    assert len(read) == 6 and all(c["complete"] and c["delivered"] == pytest.approx(1.0) for c in read), read
    down = [c for c in cells if c["node"] == other]
    assert len(down) == 1 and down[0]["summary"].startswith("not collected: ") and not down[0]["complete"], down
    assert "invalid literal" not in down[0]["summary"], down  # the kubelet's own words, not a client parse error
