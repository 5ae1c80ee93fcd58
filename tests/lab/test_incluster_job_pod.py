"""deploy/job.yaml as a real Pod on the lab's kubelet, and its report equals the laptop scan's.

`kpdoctor lab cluster up --with-kubelet` (kubelet 1.37 + containerd 1.6 + runc on node 0). The kpdoctor
image is built offline (kpdoctor.lab.pyimage: the offline equivalent of deploy/Containerfile) and imported
into the kubelet's containerd. deploy/rbac.yaml, deploy/reports-pvc.yaml and deploy/job.yaml are applied as
shipped, except the Job's image (the lab image's name). The kubelet then pulls nothing, mounts the
ServiceAccount token and the reports volume, and runs the manifest's script in the image as 65534 with a
read-only root filesystem; the scan inside reaches the API server with the in-cluster config
(KUBERNETES_SERVICE_HOST = the `kubernetes` Service's ClusterIP, which the kubelet sets, through the
node's real kube-proxy rules).

The lab runs no kube-controller-manager, no kube-scheduler, no ServiceAccount admission and no endpoint
reconciler, so what they would write is written here, and only that:
    Job controller        the Job's Pod from its template (labels and controlling ownerReference as the
                          controller sets them); the Job's own status is not written (so `kubectl wait
                          --for=condition=complete job/...` does not work in the lab: the Pod's phase is read)
    kube-scheduler        the Pod's Binding to the kubelet's node (POST pods/<name>/binding)
    ServiceAccount admission   the projected token volume and its mount (kpdoctor.lab.kproxypod)
    root-CA publisher     the `kube-root-ca.crt` ConfigMap in namespace kpdoctor
    PV controller         a `local` PersistentVolume (a directory of this test) bound to the shipped PVC
    endpoint reconciler   the `kubernetes` Service's EndpointSlice: the node's address, where a relay
                          (kpdoctor.lab.relay) forwards to the API server on the host's loopback
The CronJob cannot run for real here (its controller is in kube-controller-manager too); that its pod is
the Job's pod is checked in tests/lab/test_incluster_job.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kpdoctor.lab import kobjects, kproxypod, kubelet, pyimage
from kpdoctor.lab.kcluster import ClusterState
from tests.support.klab import (
    REPO,
    admin_api,
    api_relay,
    endpointslice,
    kpdoctor,
    lab_cluster,
    report,
    require_kubelet,
    service,
    wait_for_rules,
)

pytestmark = pytest.mark.root("etcd", "nft", "curl", "containerd", "runc", "ctr", "nsenter")
DEPLOY = REPO / "deploy"
NS = "kpdoctor"


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _bind_reports_volume(state: ClusterState, node: str, path: Path) -> None:
    """The PV controller's part: a `local` PV on the kubelet's node, pre-bound to deploy/reports-pvc.yaml's claim."""
    api = admin_api(state)
    (pvc,) = _docs(DEPLOY / "reports-pvc.yaml")
    claim = api.request("POST", f"{state.apiserver}/api/v1/namespaces/{NS}/persistentvolumeclaims", pvc)
    name = f"kpdoctor-reports-{state.prefix}"
    api.request("POST", f"{state.apiserver}/api/v1/persistentvolumes", {
        "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                 "persistentVolumeReclaimPolicy": "Retain", "local": {"path": str(path)},
                 "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": NS,
                              "name": claim["metadata"]["name"], "uid": claim["metadata"]["uid"]},
                 "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                     {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}},
    })  # fmt: skip
    claim_url = f"{state.apiserver}/api/v1/namespaces/{NS}/persistentvolumeclaims/kpdoctor-reports"
    merge = {"Content-Type": "application/merge-patch+json"}
    for url, body in ((claim_url, {"spec": {"volumeName": name}}),
                      (claim_url + "/status", {"status": {"phase": "Bound", "accessModes": ["ReadWriteOnce"],
                                                          "capacity": {"storage": "1Gi"}}}),
                      (f"{state.apiserver}/api/v1/persistentvolumes/{name}/status", {"status": {"phase": "Bound"}})):  # fmt: skip
        resp = api.session.patch(url, json=body, headers=merge, timeout=30)
        assert resp.status_code < 400, resp.text[:400]


def _restart_kube_proxy(state: ClusterState) -> None:
    """A real fault the report must show: the kube-proxy container killed (SIGKILL, exit 137) and restarted
    by the kubelet, so its pod reports restartCount 1 and the previous container's exit code."""
    api, rec = admin_api(state), kubelet.KubeletRecord.load(state.state_dir)
    assert rec is not None
    name = kobjects.ds_pod_name(state.kubelet_node)
    container = api.get("Pod", name, namespace="kube-system")["status"]["containerStatuses"][0]["containerID"]
    subprocess.run(["ctr", "-a", rec.socket, "-n", "k8s.io", "tasks", "kill", "-s", "SIGKILL",
                    container.removeprefix("containerd://")], check=True, capture_output=True, timeout=30)  # fmt: skip
    end = time.monotonic() + 90
    status: dict[str, Any] = {}
    while time.monotonic() < end:
        status = api.get("Pod", name, namespace="kube-system")["status"]["containerStatuses"][0]
        if status.get("restartCount") == 1 and status.get("ready"):
            return
        time.sleep(1)
    raise AssertionError(f"the kubelet did not restart kube-proxy: {status}")


def _job_pod(job: dict[str, Any], node: str) -> dict[str, Any]:
    """The Pod the Job controller makes from the Job's template, plus what ServiceAccount admission adds."""
    uid, name = job["metadata"]["uid"], job["metadata"]["name"]
    template = json.loads(json.dumps(job["spec"]["template"]))
    labels = {**template["metadata"].get("labels", {}), "batch.kubernetes.io/controller-uid": uid,
              "batch.kubernetes.io/job-name": name, "controller-uid": uid, "job-name": name}  # fmt: skip
    spec = template["spec"]
    spec.setdefault("volumes", []).append(kproxypod.token_volume())
    for container in spec["containers"]:
        container.setdefault("volumeMounts", []).append(
            {"name": "kube-api-access", "mountPath": kproxypod.SA_DIR, "readOnly": True})
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": f"{name}-{uid[:5]}", "namespace": NS, "labels": labels,
                     "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": uid,
                                          "controller": True, "blockOwnerDeletion": True}]},
        "spec": spec,
    }  # fmt: skip


def _wait_done(state: ClusterState, name: str, deadline_s: float = 420) -> dict[str, Any]:
    api = admin_api(state)
    end = time.monotonic() + deadline_s
    pod: dict[str, Any] = {}
    while time.monotonic() < end:
        pod = api.get("Pod", name, namespace=NS)
        if pod["status"].get("phase") in ("Succeeded", "Failed"):
            return pod
        time.sleep(2)
    raise AssertionError(f"the Job's pod did not finish in {deadline_s:g} s: {json.dumps(pod.get('status'))[:1500]}")


@pytest.fixture(scope="module")
def job_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Bring the lab up, run the Job's Pod on the kubelet, scan from the laptop; tear everything down."""
    require_kubelet()
    tmp = tmp_path_factory.mktemp("klab-incluster-pod")
    with lab_cluster(tmp, nodes=1, with_kubelet=True) as state:
        socket = kubelet.KubeletRecord(state.kubelet_node, "", "", f"kpdoctor-{state.prefix}").socket
        node = state.nodes[0]
        api = admin_api(state)
        api.apply(service("web"))
        api.apply(endpointslice("web", [(node.pods[0].ip, node.name)]))
        wait_for_rules(state, "lab/web:http")
        _restart_kube_proxy(state)
        image = pyimage.kpdoctor_image_tar(REPO, tmp / "image")
        rec = kubelet.KubeletRecord.load(state.state_dir)
        assert rec is not None
        subprocess.run(["ctr", "-a", rec.socket, "-n", "k8s.io", "images", "import", str(image.tarball)],
                       check=True, capture_output=True, timeout=300)  # fmt: skip
        with api_relay(state, node):
            for doc in _docs(DEPLOY / "rbac.yaml"):
                api.apply(doc)
            api.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kube-root-ca.crt", "namespace": NS},
                       "data": {"ca.crt": (state.state_dir / "pki" / "ca.crt").read_text()}})  # fmt: skip
            reports = tmp / "reports-volume"
            reports.mkdir()
            _bind_reports_volume(state, node.name, reports)
            (job,) = _docs(DEPLOY / "job.yaml")
            job["spec"]["template"]["spec"]["containers"][0]["image"] = image.name
            job = api.request("POST", f"{state.apiserver}/apis/batch/v1/namespaces/{NS}/jobs", job)
            pod = api.create(_job_pod(job, node.name))
            name = pod["metadata"]["name"]
            api.request("POST", f"{api.path('Pod', NS, name)}/binding", {
                "apiVersion": "v1", "kind": "Binding", "metadata": {"name": name, "namespace": NS},
                "target": {"apiVersion": "v1", "kind": "Node", "name": node.name}})  # fmt: skip
            pod = _wait_done(state, name)
            log = api.session.get(f"{api.path('Pod', NS, name)}/log", params={"container": "kpdoctor"}, timeout=60)
            assert log.status_code == 200, log.text[:500]
            laptop = kpdoctor("scan", "--kubeconfig", state.kubeconfig, "-o", "json")
            yield {"state": state, "pod": pod, "log": log.text, "reports": reports, "laptop": laptop}
    # nothing of this lab is left: namespaces (the lab's and the sandbox's cni-*), mounts, shims, sockets
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    assert state.prefix not in netns, netns
    assert str(tmp) not in Path("/proc/self/mounts").read_text()
    assert not kubelet._shims(socket) and not kubelet.socket_dir(state.prefix).exists()


def _comparable(value: Any) -> Any:
    """The report without what differs between two runs by design: when (`generated_at`), how long
    (`duration_ms`, at every level), and where kpdoctor is installed (each check's `docs` is a file: URI
    of its page: the checkout for the laptop, site-packages in the image; the page's file name is kept).
    `source.location` (the URL each used for the same API server) is compared by the caller."""
    if isinstance(value, dict):
        return {k: (Path(v).name if k == "docs" and isinstance(v, str) else _comparable(v))
                for k, v in value.items() if k not in ("duration_ms", "generated_at")}  # fmt: skip
    if isinstance(value, list):
        return [_comparable(v) for v in value]
    return value


def test_the_job_runs_as_a_pod_on_the_kubelet(job_run: dict[str, Any]) -> None:
    pod, state = job_run["pod"], job_run["state"]
    status = pod["status"]["containerStatuses"][0]
    assert status["image"].endswith(pyimage.KPDOCTOR_IMAGE), status
    assert status["containerID"].startswith("containerd://"), status
    assert pod["spec"]["nodeName"] == state.kubelet_node
    terminated = status["state"]["terminated"]
    laptop = job_run["laptop"]
    assert terminated["exitCode"] == laptop.returncode, (terminated, job_run["log"][-1500:])
    assert pod["status"]["phase"] == ("Succeeded" if laptop.returncode == 0 else "Failed")


def test_the_pods_report_equals_the_laptop_scan(job_run: dict[str, Any]) -> None:
    assert "Traceback" not in job_run["log"], job_run["log"][-2000:]
    logged = json.loads(job_run["log"])  # the manifest's script ends with `cat` of the JSON report
    laptop = report(job_run["laptop"])
    assert logged["gaps"] == [] and logged["source"]["kind"] == "live", (logged["gaps"], logged["source"])
    # the in-cluster config: the `kubernetes` Service's ClusterIP; the laptop: the admin kubeconfig's server
    assert logged["source"]["location"] == "https://10.96.0.1:443", logged["source"]
    assert laptop["source"]["location"] == job_run["state"].apiserver, laptop["source"]
    for rep in (logged, laptop):
        rep["source"]["location"] = "the lab's API server"
    assert _comparable(logged) == _comparable(laptop)
    # the fault is in both: the kube-proxy container the kubelet restarted after it was killed
    warned = [g["message"] for c in logged["checks"] if c["id"] == "KP-PROXY-HEALTH" for g in c["groups"]]
    assert any("has restarted 1 times" in m for m in warned), warned


def test_the_report_is_on_the_reports_volume(job_run: dict[str, Any]) -> None:
    reports: Path = job_run["reports"]
    latest = reports / "latest.json"
    assert latest.is_symlink() and (reports / os.readlink(latest)).is_file()
    assert json.loads(latest.read_text()) == json.loads(job_run["log"])
    junit = (reports / "latest.junit.xml").read_text()
    assert junit.startswith("<?xml") and "<testsuite" in junit
    written = {p.stat().st_uid for p in reports.iterdir() if not p.is_symlink()}
    assert written == {65534}, written  # the pod ran as the manifest's non-root user

