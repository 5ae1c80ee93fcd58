"""Helpers of the in-cluster Job/CronJob tests on the lab's real kubelet and kube-controller-manager
(tests/lab/test_incluster_job_pod.py): the deploy/ manifests, a real fault for the report to show, the
lab image in the kubelet's containerd, a Job followed to its end through its own status, and the report
compared with the laptop scan's."""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kpdoctor.lab import images, kobjects, kubelet
from kpdoctor.lab.kapi import Api
from kpdoctor.lab.kcluster import ClusterState
from tests.support.klab import REPO, admin_api

DEPLOY = REPO / "deploy"
NS = "kpdoctor"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"


def docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def import_image(state: ClusterState, image: images.Image) -> None:
    """`ctr images import` into the kubelet's containerd (no registry here: the kubelet pulls nothing)."""
    rec = kubelet.KubeletRecord.load(state.state_dir)
    assert rec is not None
    subprocess.run(["ctr", "-a", rec.socket, "-n", "k8s.io", "images", "import", str(image.tarball)],
                   check=True, capture_output=True, timeout=300)  # fmt: skip


def restart_kube_proxy(state: ClusterState) -> None:
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
        status = api.get("Pod", name, namespace=kobjects.KUBE_SYSTEM)["status"]["containerStatuses"][0]
        if status.get("restartCount") == 1 and status.get("ready"):
            return
        time.sleep(1)
    raise AssertionError(f"the kubelet did not restart kube-proxy: {status}")


def comparable(value: Any) -> Any:
    """The report without what differs between two runs by design: when (`generated_at`), how long
    (`duration_ms`, at every level), and where kpdoctor is installed (each check's `docs` is a file: URI
    of its page: the checkout for the laptop, site-packages in the image; the page's file name is kept).
    `source.location` (the URL each used for the same API server) is compared by the caller."""
    if isinstance(value, dict):
        return {k: (Path(v).name if k == "docs" and isinstance(v, str) else comparable(v))
                for k, v in value.items() if k not in ("duration_ms", "generated_at")}  # fmt: skip
    if isinstance(value, list):
        return [comparable(v) for v in value]
    return value


def finished(job: dict[str, Any]) -> str | None:
    """"Complete" or "Failed" once the Job controller has set that condition True (what `kubectl wait
    --for=condition=complete job/...` reads), else None."""
    for cond in job.get("status", {}).get("conditions") or []:
        if cond.get("type") in ("Complete", "Failed") and cond.get("status") == "True":
            return str(cond["type"])
    return None


@dataclass
class JobRun:
    job: dict[str, Any]
    condition: str  # Complete | Failed
    pod: dict[str, Any]
    log: str
    seconds: float  # from the Job's creation to its condition, as seen by polling its status


def follow_job(api: Api, name: str, started: float, deadline_s: float = 420) -> JobRun:
    """Poll Job `name` in NS until its condition is set; then its one Pod (found by the label the Job
    controller sets) and that Pod's log."""
    end = time.monotonic() + deadline_s
    job: dict[str, Any] = {}
    while time.monotonic() < end:
        job = api.get("Job", name, namespace=NS)
        cond = finished(job)
        if cond:
            break
        time.sleep(1)
    else:
        pods = api.request("GET", api.path("Pod", NS), labelSelector=f"{JOB_NAME_LABEL}={name}")["items"]
        raise AssertionError(f"Job {name} not finished in {deadline_s:g} s: {job.get('status')} "
                             f"pods: {[p.get('status') for p in pods]}"[:3000])  # fmt: skip
    seconds = time.monotonic() - started
    (pod,) = api.request("GET", api.path("Pod", NS), labelSelector=f"{JOB_NAME_LABEL}={name}")["items"]
    log = api.session.get(f"{api.path('Pod', NS, pod['metadata']['name'])}/log", params={"container": "kpdoctor"},
                          timeout=60)  # fmt: skip
    assert log.status_code == 200, log.text[:500]
    return JobRun(job, cond, pod, log.text, seconds)
