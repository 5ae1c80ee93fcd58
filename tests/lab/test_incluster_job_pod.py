"""deploy/job.yaml and deploy/cronjob.yaml run for real on the lab, and each run's report equals the laptop scan's.

`kpdoctor lab cluster up --with-kubelet --with-controller-manager` (one node): kubelet 1.37 + containerd +
runc on node 0, and a real kube-controller-manager (job, cronjob, garbage collector, ttl-after-finished,
serviceaccount, root-CA publisher, PV binder) and kube-scheduler, with the API server's ServiceAccount
admission plugin on (kpdoctor.lab.controllers). The kpdoctor image is built offline (kpdoctor.lab.pyimage,
the offline equivalent of deploy/Containerfile) and imported into the kubelet's containerd.
deploy/rbac.yaml, deploy/reports-pvc.yaml, deploy/job.yaml and deploy/cronjob.yaml are applied as shipped,
except the image (the lab image's name) and, for the scheduled run, the CronJob's schedule (every minute).
Then, with nothing written by hand: the Job controller makes the Pod from the template, ServiceAccount
admission adds the token volume, the root-CA publisher the `kube-root-ca.crt` ConfigMap, the PV controller
binds the claim, the scheduler binds the Pod to the kubelet's node, the kubelet runs the manifest's script
as 65534 with a read-only root filesystem, and the Job controller sets the Job's Complete/Failed condition,
which is what this test waits on (`kubectl wait --for=condition=complete job/...` reads the same). The
CronJob runs twice: `kubectl create job --from=cronjob/kpdoctor-scan` (the lab's real kubectl; how a user
runs it now) and once on its (patched) schedule by the CronJob controller. Deleting the Jobs leaves no Pod
(the garbage collector deletes them).

Two parts stay the lab's, and only these: the cluster administrator's `local` PersistentVolume (a directory
of this test; static provisioning, the claim binds to it for real), and the `kubernetes` Service's
EndpointSlice (the API server runs with no endpoint reconciler: tests/support/klab.api_relay points it at
the node, where a relay forwards to the API server on the host's loopback).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kpdoctor.lab import k8sbuild, kubelet, pyimage
from kpdoctor.lab.kapi import Api, ApiError
from kpdoctor.lab.kcluster import ClusterState
from tests.support.incluster import (
    DEPLOY,
    JOB_NAME_LABEL,
    NS,
    JobRun,
    comparable,
    docs,
    follow_job,
    import_image,
    restart_kube_proxy,
)
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

# the first test brings the lab up and runs the Job; the scheduled run waits for the next minute
pytestmark = [pytest.mark.root("etcd", "nft", "curl", "containerd", "runc", "ctr", "nsenter"), pytest.mark.timeout(600)]
CRONJOB = "kpdoctor-scan"
MANUAL_JOB = "kpdoctor-scan-manual"


@dataclass
class Lab:
    state: ClusterState
    api: Api
    image: str
    reports: Path


@dataclass
class Run:
    job: JobRun
    laptop: subprocess.CompletedProcess[str]


def _reports_volume(lab_api: Api, state: ClusterState, path: Path) -> None:
    """The cluster administrator's part (static provisioning): a `local` PV on the kubelet's node for
    deploy/reports-pvc.yaml's claim; the PV controller binds them."""
    lab_api.create({
        "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": f"kpdoctor-reports-{state.prefix}"},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                 "persistentVolumeReclaimPolicy": "Retain", "local": {"path": str(path)},
                 "claimRef": {"namespace": NS, "name": "kpdoctor-reports"},
                 "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                     {"key": "kubernetes.io/hostname", "operator": "In", "values": [state.kubelet_node]}]}]}}},
    })  # fmt: skip
    (pvc,) = docs(DEPLOY / "reports-pvc.yaml")
    lab_api.create(pvc)
    end = time.monotonic() + 60
    while lab_api.get("PersistentVolumeClaim", "kpdoctor-reports", namespace=NS)["status"].get("phase") != "Bound":
        assert time.monotonic() < end, "the PV controller did not bind deploy/reports-pvc.yaml's claim"
        time.sleep(0.5)


def _delete(api: Api, kind: str, name: str) -> None:
    """As `kubectl delete` does: background propagation (a Job's REST default is to orphan its Pods)."""
    try:
        api.request("DELETE", api.path(kind, NS, name), propagationPolicy="Background")
    except ApiError as err:
        if err.status != 404:
            raise


def _pods_and_jobs(api: Api) -> list[str]:
    return [f"{kind}/{o['metadata']['name']}" for kind in ("Pod", "Job")
            for o in api.request("GET", api.path(kind, NS))["items"]]  # fmt: skip


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    require_kubelet(controller_manager=True)
    tmp = tmp_path_factory.mktemp("klab-incluster-job")
    started = time.monotonic()
    with lab_cluster(tmp, nodes=1, with_kubelet=True, with_controller_manager=True) as state:
        print(f"\nlab cluster up (kubelet, controller-manager, scheduler): {time.monotonic() - started:.1f} s")
        socket = kubelet.KubeletRecord(state.kubelet_node, "", "", f"kpdoctor-{state.prefix}").socket
        node = state.nodes[0]
        api = admin_api(state)
        api.apply(service("web"))
        api.apply(endpointslice("web", [(node.pods[0].ip, node.name)]))
        wait_for_rules(state, "lab/web:http")
        restart_kube_proxy(state)
        image = pyimage.kpdoctor_image_tar(REPO, tmp / "image")
        import_image(state, image)
        with api_relay(state, node):
            for doc in docs(DEPLOY / "rbac.yaml"):
                api.apply(doc)
            reports = tmp / "reports-volume"
            reports.mkdir()
            _reports_volume(api, state, reports)
            try:
                yield Lab(state, api, image.name, reports)
            finally:  # whatever a failed test left (the lab goes down next anyway)
                for kind, name in (("CronJob", CRONJOB), ("Job", "kpdoctor-scan"), ("Job", MANUAL_JOB)):
                    _delete(api, kind, name)
    # nothing of this lab is left: namespaces (the lab's and the sandbox's cni-*), mounts, shims, sockets
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    assert state.prefix not in netns, netns
    assert str(tmp) not in Path("/proc/self/mounts").read_text()
    assert not kubelet._shims(socket) and not kubelet.socket_dir(state.prefix).exists()


def _laptop(state: ClusterState) -> subprocess.CompletedProcess[str]:
    return kpdoctor("scan", "--kubeconfig", state.kubeconfig, "-o", "json")


@pytest.fixture(scope="module")
def job_run(lab: Lab) -> Run:
    """deploy/job.yaml: created, then followed through the Job's own status."""
    (job,) = docs(DEPLOY / "job.yaml")
    job["spec"]["template"]["spec"]["containers"][0]["image"] = lab.image
    started = time.monotonic()
    lab.api.create(job)
    run = follow_job(lab.api, job["metadata"]["name"], started)
    print(f"\nJob kpdoctor-scan: created -> condition {run.condition} in {run.seconds:.1f} s")
    return Run(run, _laptop(lab.state))


@pytest.fixture(scope="module")
def cronjob(lab: Lab, job_run: Run) -> dict[str, Any]:
    """deploy/cronjob.yaml as shipped (its schedule: 17 */6 * * *), the image swapped."""
    (cron,) = docs(DEPLOY / "cronjob.yaml")
    cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["image"] = lab.image
    created: dict[str, Any] = lab.api.create(cron)
    return created


def _kubectl(lab: Lab, *args: str) -> subprocess.CompletedProcess[str]:
    """The lab's own kubectl (built with the API server), as a user runs it."""
    kubectl = k8sbuild.binary_path(k8sbuild.resolve_release(k8sbuild.CONTROL_PLANE_RELEASE), "kubectl")
    return subprocess.run([str(kubectl), "--kubeconfig", lab.state.kubeconfig, "-n", NS, *args], capture_output=True,
                          text=True, timeout=60)  # fmt: skip


@pytest.fixture(scope="module")
def manual_run(lab: Lab, cronjob: dict[str, Any]) -> Run:
    """`kubectl create job --from=cronjob/kpdoctor-scan`."""
    started = time.monotonic()
    made = _kubectl(lab, "create", "job", f"--from=cronjob/{CRONJOB}", MANUAL_JOB)
    assert made.returncode == 0, made.stderr
    run = follow_job(lab.api, MANUAL_JOB, started)
    print(f"\nkubectl create job --from=cronjob/{CRONJOB}: created -> condition {run.condition} in {run.seconds:.1f} s")
    return Run(run, _laptop(lab.state))


@pytest.fixture(scope="module")
def scheduled_run(lab: Lab, cronjob: dict[str, Any], manual_run: Run) -> Run:
    """The CronJob's schedule patched to every minute; the first Job its controller makes, followed to its end
    (the CronJob is suspended as soon as that Job exists, so it makes no second one)."""
    url = lab.api.path("CronJob", NS, CRONJOB)
    merge = {"Content-Type": "application/merge-patch+json"}
    started = time.monotonic()
    resp = lab.api.session.patch(url, json={"spec": {"schedule": "* * * * *"}}, headers=merge, timeout=30)
    assert resp.status_code < 400, resp.text[:400]
    end = time.monotonic() + 150
    name = ""
    while not name:
        assert time.monotonic() < end, f"the CronJob controller made no Job in 150 s: {lab.api.get('CronJob', CRONJOB, NS)}"
        jobs = lab.api.request("GET", lab.api.path("Job", NS))["items"]
        name = next((j["metadata"]["name"] for j in jobs if j["metadata"]["name"] not in ("kpdoctor-scan", MANUAL_JOB)
                     and any(o["uid"] == cronjob["metadata"]["uid"] for o in j["metadata"].get("ownerReferences", []))),
                    "")  # fmt: skip
        time.sleep(1)
    resp = lab.api.session.patch(url, json={"spec": {"suspend": True}}, headers=merge, timeout=30)
    assert resp.status_code < 400, resp.text[:400]
    run = follow_job(lab.api, name, started)
    print(f"\nCronJob {CRONJOB} every minute: schedule patched -> Job {name} condition {run.condition} "
          f"in {run.seconds:.1f} s")  # fmt: skip
    return Run(run, _laptop(lab.state))


def _assert_ran_for_real(run: Run, state: ClusterState, owner_kind: str, owner_uid: str) -> None:
    """The Job controller made the Pod, the scheduler bound it to the kubelet's node, ServiceAccount admission
    mounted the token, the kubelet ran it, and the Job's condition says how the scan ended."""
    job, pod = run.job.job, run.job.pod
    assert [(o["kind"], o["uid"], o.get("controller")) for o in job["metadata"].get("ownerReferences", [])] == (
        [(owner_kind, owner_uid, True)] if owner_kind == "CronJob" else [])
    assert [(o["kind"], o["uid"]) for o in pod["metadata"]["ownerReferences"]] == [("Job", job["metadata"]["uid"])]
    assert pod["metadata"]["labels"][JOB_NAME_LABEL] == job["metadata"]["name"]
    assert pod["spec"]["nodeName"] == state.kubelet_node
    assert pod["spec"]["serviceAccountName"] == "kpdoctor"
    assert any(v["name"].startswith("kube-api-access-") for v in pod["spec"]["volumes"]), pod["spec"]["volumes"]
    status = pod["status"]["containerStatuses"][0]
    assert status["image"].endswith(pyimage.KPDOCTOR_IMAGE) and status["containerID"].startswith("containerd://")
    terminated = status["state"]["terminated"]
    assert terminated["exitCode"] == run.laptop.returncode, (terminated, run.job.log[-1500:])
    assert run.job.condition == ("Complete" if run.laptop.returncode == 0 else "Failed")
    assert pod["status"]["phase"] == ("Succeeded" if run.laptop.returncode == 0 else "Failed")


def _assert_same_report(run: Run, state: ClusterState) -> None:
    assert "Traceback" not in run.job.log, run.job.log[-2000:]
    logged = json.loads(run.job.log)  # the manifest's script ends with `cat` of the JSON report
    laptop = report(run.laptop)
    assert logged["gaps"] == [] and logged["source"]["kind"] == "live", (logged["gaps"], logged["source"])
    # the in-cluster config: the `kubernetes` Service's ClusterIP; the laptop: the admin kubeconfig's server
    assert logged["source"]["location"] == "https://10.96.0.1:443", logged["source"]
    assert laptop["source"]["location"] == state.apiserver, laptop["source"]
    for rep in (logged, laptop):
        rep["source"]["location"] = "the lab's API server"
    assert comparable(logged) == comparable(laptop)
    # the fault is in both: the kube-proxy container the kubelet restarted after it was killed
    warned = [g["message"] for c in logged["checks"] if c["id"] == "KP-PROXY-HEALTH" for g in c["groups"]]
    assert any("has restarted 1 times" in m for m in warned), warned


def test_the_job_runs_for_real(lab: Lab, job_run: Run) -> None:
    _assert_ran_for_real(job_run, lab.state, "", "")
    # its log is in the lab kubelet's own podLogsDir, not in the host's /var/log/pods (kpdoctor.lab.kubelet)
    rec = kubelet.KubeletRecord.load(lab.state.state_dir)
    assert rec is not None
    meta = job_run.job.pod["metadata"]
    logdir = Path(rec.root) / "pod-logs" / f"{NS}_{meta['name']}_{meta['uid']}"
    assert (logdir / "kpdoctor" / "0.log").is_file() and not (Path("/var/log/pods") / logdir.name).exists()


def test_the_jobs_report_equals_the_laptop_scan(lab: Lab, job_run: Run) -> None:
    _assert_same_report(job_run, lab.state)


def test_the_kubectl_commands_docs_give_work(lab: Lab, job_run: Run) -> None:
    """docs/in-cluster.md's `kubectl wait --for=condition=complete` and `kubectl logs job/kpdoctor-scan`."""
    waited = _kubectl(lab, "wait", "--for=condition=complete", "--timeout=5s", "job/kpdoctor-scan")
    assert (waited.returncode == 0) == (job_run.laptop.returncode == 0), (waited.stdout, waited.stderr)
    logs = _kubectl(lab, "logs", "job/kpdoctor-scan")
    assert logs.returncode == 0 and json.loads(logs.stdout) == json.loads(job_run.job.log), logs.stderr


def test_the_report_is_on_the_reports_volume(lab: Lab, job_run: Run) -> None:
    reports = lab.reports
    latest = reports / "latest.json"
    assert latest.is_symlink() and (reports / os.readlink(latest)).is_file()
    assert json.loads(latest.read_text()) == json.loads(job_run.job.log)
    junit = (reports / "latest.junit.xml").read_text()
    assert junit.startswith("<?xml") and "<testsuite" in junit
    written = {p.stat().st_uid for p in reports.iterdir() if not p.is_symlink()}
    assert written == {65534}, written  # the pod ran as the manifest's non-root user


def test_a_job_created_from_the_cronjob_runs_and_reports_the_same(lab: Lab, cronjob: dict[str, Any],
                                                                  manual_run: Run) -> None:  # fmt: skip
    _assert_ran_for_real(manual_run, lab.state, "CronJob", cronjob["metadata"]["uid"])
    assert manual_run.job.job["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"] == "manual"
    _assert_same_report(manual_run, lab.state)
    assert json.loads((lab.reports / "latest.json").read_text()) == json.loads(manual_run.job.log)


def test_the_cronjob_runs_on_its_schedule_and_reports_the_same(lab: Lab, cronjob: dict[str, Any],
                                                               scheduled_run: Run) -> None:  # fmt: skip
    _assert_ran_for_real(scheduled_run, lab.state, "CronJob", cronjob["metadata"]["uid"])
    assert "batch.kubernetes.io/cronjob-scheduled-timestamp" in scheduled_run.job.job["metadata"]["annotations"]
    _assert_same_report(scheduled_run, lab.state)
    assert json.loads((lab.reports / "latest.json").read_text()) == json.loads(scheduled_run.job.log)


def test_deleting_the_cronjob_and_job_leaves_nothing(lab: Lab, job_run: Run, scheduled_run: Run) -> None:
    """The CronJob and the Job deleted as a user does (`kubectl delete`: background propagation): the garbage
    collector deletes the CronJob's Jobs and every Job's Pod; nothing is left in the namespace."""
    for kind, name in (("CronJob", CRONJOB), ("Job", "kpdoctor-scan")):
        _delete(lab.api, kind, name)
    end = time.monotonic() + 120
    left = _pods_and_jobs(lab.api)
    while left and time.monotonic() < end:
        time.sleep(1)
        left = _pods_and_jobs(lab.api)
    assert left == [], left
