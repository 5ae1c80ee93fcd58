"""deploy/job.yaml's scan, run with the in-cluster config against the lab's real kube-apiserver: a real
ServiceAccount token (TokenRequest) for deploy/rbac.yaml's ServiceAccount, the lab CA, and
KUBERNETES_SERVICE_HOST/PORT, the SA files in a directory named by KPDOCTOR_SERVICEACCOUNT_DIR (a pod has
them at /var/run/secrets/kubernetes.io/serviceaccount). Here the manifest's own script runs outside a
pod (a lab without a kubelet: cheaper, and it reaches the failure paths); the same Job as a real Pod on
the lab's kubelet, in the offline-built kpdoctor image, is tests/lab/test_incluster_job_pod.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from kpdoctor.lab.kcluster import ClusterState
from tests.support.klab import REPO, admin_api, apply_workload, kpdoctor, lab_cluster, report

pytestmark = pytest.mark.root("etcd", "nft", "curl")
DEPLOY = REPO / "deploy"


def _pod_spec(path: Path) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text())
    spec = doc["spec"]["jobTemplate"]["spec"] if doc["kind"] == "CronJob" else doc["spec"]
    pod: dict[str, Any] = spec["template"]["spec"]
    return pod


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterState]:
    with lab_cluster(tmp_path_factory.mktemp("klab-incluster"), nodes=1) as state:
        apply_workload(state, node_port=0, with_api=False)
        api = admin_api(state)
        for doc in yaml.safe_load_all((DEPLOY / "rbac.yaml").read_text()):
            if doc:
                api.apply(doc)
        yield state


def _serviceaccount_dir(state: ClusterState, tmp: Path) -> Path:
    sa = tmp / "serviceaccount"
    sa.mkdir()
    (sa / "token").write_text(admin_api(state).token("kpdoctor", "kpdoctor", seconds=3600))
    (sa / "ca.crt").write_bytes((state.state_dir / "pki" / "ca.crt").read_bytes())
    (sa / "namespace").write_text("kpdoctor")
    return sa


def _job_env(state: ClusterState, tmp: Path, container: dict[str, Any]) -> dict[str, str]:
    bindir = tmp / "bin"
    bindir.mkdir()
    launcher = bindir / "kpdoctor"  # the console script, as pip writes it
    launcher.write_text(f"#!{sys.executable}\nimport sys\nfrom kpdoctor.entry import main\nsys.exit(main())\n")
    launcher.chmod(0o755)
    (tmp / "home").mkdir()
    (tmp / "reports").mkdir()
    api = urlsplit(state.apiserver)
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG",)}
    env.update({e["name"]: e["value"] for e in container.get("env", [])})
    env.update({
        "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(REPO), "HOME": str(tmp / "home"),
        "KUBERNETES_SERVICE_HOST": str(api.hostname), "KUBERNETES_SERVICE_PORT": str(api.port),
        "KPDOCTOR_SERVICEACCOUNT_DIR": str(_serviceaccount_dir(state, tmp)),
        "KPDOCTOR_REPORT_DIR": str(tmp / "reports"),  # the manifest's /reports volume
    })  # fmt: skip
    return env


def _comparable(value: Any) -> Any:
    """The report without what differs between two runs by design: how long each part took
    (`duration_ms`, at every level) and when (`generated_at`). Everything else must be equal."""
    if isinstance(value, dict):
        return {k: _comparable(v) for k, v in value.items() if k not in ("duration_ms", "generated_at")}
    if isinstance(value, list):
        return [_comparable(v) for v in value]
    return value


def test_job_and_cronjob_run_the_same_pod() -> None:
    """The CronJob's Jobs are deploy/job.yaml's Job (only the finished-Job TTL differs: the CronJob keeps
    its history by count). The CronJob itself is not run: its controller is kube-controller-manager's,
    which the lab does not run."""
    job, cron = _pod_spec(DEPLOY / "job.yaml"), _pod_spec(DEPLOY / "cronjob.yaml")
    assert job == cron
    job_spec = yaml.safe_load((DEPLOY / "job.yaml").read_text())["spec"]
    cron_doc = yaml.safe_load((DEPLOY / "cronjob.yaml").read_text())
    assert {k: v for k, v in job_spec.items() if k != "ttlSecondsAfterFinished"} == cron_doc["spec"]["jobTemplate"]["spec"]
    assert cron_doc["spec"]["concurrencyPolicy"] == "Forbid"
    assert job["serviceAccountName"] == "kpdoctor"
    container = job["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}


def test_the_jobs_scan_in_cluster_equals_the_laptop_scan(cluster: ClusterState, tmp_path: Path) -> None:
    container = _pod_spec(DEPLOY / "job.yaml")["containers"][0]
    env = _job_env(cluster, tmp_path, container)
    job = subprocess.run([*container["command"], *container["args"]], capture_output=True, text=True, env=env,
                         cwd=tmp_path, timeout=300, check=False)  # fmt: skip
    assert "Traceback" not in job.stderr, job.stderr[-2000:]
    logged = report(job)  # the JSON report is the pod's log
    assert job.stderr == ""  # and nothing else: kpdoctor's stderr went to <stamp>.stderr on the volume
    assert logged["gaps"] == [], logged["gaps"]
    reports = tmp_path / "reports"
    assert json.loads((reports / "latest.json").read_text()) == logged
    junit = (reports / "latest.junit.xml").read_text()
    assert junit.startswith("<?xml") and "<testsuite" in junit
    laptop = kpdoctor("scan", "--kubeconfig", cluster.kubeconfig, "-o", "json")
    assert job.returncode == laptop.returncode
    assert _comparable(logged) == _comparable(report(laptop))


def test_missing_serviceaccount_files_are_one_line_unreachable(cluster: ClusterState, tmp_path: Path) -> None:
    (tmp_path / "home").mkdir()
    api = urlsplit(cluster.apiserver)
    proc = kpdoctor("scan", "-o", "json", env={
        "HOME": str(tmp_path / "home"), "KUBERNETES_SERVICE_HOST": str(api.hostname),
        "KUBERNETES_SERVICE_PORT": str(api.port), "KPDOCTOR_SERVICEACCOUNT_DIR": str(tmp_path / "nothing"),
    })  # fmt: skip
    assert proc.returncode == 3, proc.stdout[-800:] + proc.stderr[-800:]
    assert "Traceback" not in proc.stderr
    assert "Service token file does not exist" in proc.stderr and str(tmp_path / "nothing") in proc.stderr


def test_the_jobs_script_logs_the_error_when_no_report_is_written(cluster: ClusterState, tmp_path: Path) -> None:
    container = _pod_spec(DEPLOY / "job.yaml")["containers"][0]
    env = {**_job_env(cluster, tmp_path, container), "KPDOCTOR_SERVICEACCOUNT_DIR": str(tmp_path / "nothing")}
    job = subprocess.run([*container["command"], *container["args"]], capture_output=True, text=True, env=env,
                         cwd=tmp_path, timeout=300, check=False)  # fmt: skip
    assert job.returncode == 3 and job.stdout == "", job.stdout[-800:]
    assert len(job.stderr.strip().splitlines()) == 1 and str(tmp_path / "nothing") in job.stderr, job.stderr
    assert not (tmp_path / "reports" / "latest.json").exists()
