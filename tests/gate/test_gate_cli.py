"""`kpdoctor gate kube-proxy-removal` end to end: the installed `kpdoctor` script in a subprocess.

Bundles are real kube-proxy captures (tests/fixtures/bundles) plus the hand-built Cilium agent shapes of
tests/fixtures/cilium — Cilium cannot run on this machine.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.support.gate import BUNDLES, build_bundle

KPDOCTOR = shutil.which("kpdoctor")
# no skip when the console script is missing: `pip install -e .` provides it, and a missing one is a failure


def gate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([KPDOCTOR or "kpdoctor", "gate", "kube-proxy-removal", *args],
                          capture_output=True, text=True, timeout=120)


def test_pass_exits_0_with_console_and_json(tmp_path: Path) -> None:
    bundle = build_bundle(tmp_path, version="1.14")
    proc = gate("--bundle", str(bundle))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("VERDICT: PASS") and "Cleanup plan" in proc.stdout
    proc = gate("--bundle", str(bundle), "-o", "json")
    doc = json.loads(proc.stdout)
    assert proc.returncode == 0 and doc["schema"] == "kpdoctor-gate/v1" and doc["verdict"] == "pass"
    assert doc["exit_code"] == 0 and doc["summary"]["conditions"]["fail"] == 0


def test_tarball_bundle_and_output_file(tmp_path: Path) -> None:
    bundle = build_bundle(tmp_path, version="1.18")
    tgz = tmp_path / "evidence.tar.gz"
    with tarfile.open(tgz, "w:gz") as tar:
        tar.add(bundle, arcname="bundle")
    out = tmp_path / "gate.xml"
    proc = gate("--bundle", str(tgz), "-o", "junit", "--output-file", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "pass" in proc.stderr and str(out) in proc.stderr
    root = ET.parse(out).getroot()
    assert root.get("failures") == "0" and root.get("errors") == "0"


def test_blocking_reasons_exit_1_and_junit_names_each_service(tmp_path: Path) -> None:
    bundle = build_bundle(tmp_path, version="1.18")
    status = bundle / "nodes" / "edge-1" / "cilium" / "status.json"
    doc = json.loads(status.read_text())
    doc["kube-proxy-replacement"]["features"]["sessionAffinity"] = {}
    doc["kube-proxy-replacement"]["features"]["nodePort"] = {}
    status.write_text(json.dumps(doc))
    proc = gate("--bundle", str(bundle), "-o", "junit")
    assert proc.returncode == 1, proc.stderr
    suite = ET.fromstring(proc.stdout).find("testsuite")
    assert suite is not None
    cases = {(c.get("classname", "").rsplit(".", 1)[-1], c.get("name")): c for c in suite.findall("testcase")}
    # one testcase per condition, one per Service under coverage, one per node under per-node conditions
    conditions = [k for k in cases if k[0] == "pre-removal" and k[1] != "verdict"]
    assert len(conditions) == 7
    services = {name for (cls, name) in cases if cls == "service-coverage"}
    assert len(services) == 7 and "Service storefront/sessions" in services
    failed = {name for (cls, name), c in cases.items() if cls == "service-coverage" and c.find("failure") is not None}
    assert failed == {"Service storefront/sessions", "Service storefront/checkout", "Service storefront/gateway"}
    # the verdict testcase comes first and fails too (its message is the headline)
    assert suite.findall("testcase")[0].get("name") == "verdict"
    assert suite.get("tests") == str(len(cases)) and int(suite.get("failures", "0")) == 5
    failure = cases[("service-coverage", "Service storefront/sessions")].find("failure")
    assert failure is not None and "sessionAffinity ClientIP (10800s)" in (failure.text or "")


def test_seed_mistake_exit_1_critical_outage(tmp_path: Path) -> None:
    """kube-proxy DaemonSet deleted, Cilium KPR off: the gate reports a cluster-wide outage as critical."""
    bundle = build_bundle(tmp_path, version="1.18", config={"kube-proxy-replacement": "false"})
    for name in ("daemonsets.json", "pods.json"):
        path = bundle / "cluster" / name
        doc = json.loads(path.read_text())
        doc["items"] = [i for i in doc["items"] if (i["metadata"].get("labels") or {}).get("k8s-app") != "kube-proxy"]
        path.write_text(json.dumps(doc))
    for node in ("edge-1", "edge-2"):
        shutil.rmtree(bundle / "nodes" / node / "kube-proxy", ignore_errors=True)  # deleted: nothing answers
        status = bundle / "nodes" / node / "cilium" / "status.json"
        doc = json.loads(status.read_text())
        doc["kube-proxy-replacement"]["mode"] = "False"
        status.write_text(json.dumps(doc))
    proc = gate("--bundle", str(bundle), "-o", "json")
    assert proc.returncode == 1
    doc = json.loads(proc.stdout)
    served = next(c for c in doc["conditions"] if c["id"] == "services-served-now")
    [outage] = [r for r in served["reasons"] if r["subject"] == "Cluster"]
    assert outage["severity"] == "critical" and "cluster-wide Service outage" in outage["message"]


def test_bundle_without_agent_status_cannot_prove_exit_3(tmp_path: Path) -> None:
    bundle = build_bundle(tmp_path, with_status=False)
    proc = gate("--bundle", str(bundle), "-o", "json")
    assert proc.returncode == 3, proc.stdout
    doc = json.loads(proc.stdout)
    assert doc["verdict"] == "cannot-prove" and doc["summary"]["conditions"]["fail"] == 0
    assert any("cilium/status.json absent" in r["message"]
               for c in doc["conditions"] for case in c["cases"] for r in case["reasons"])


def test_missing_cilium_configmap_cannot_prove_exit_3(tmp_path: Path) -> None:
    proc = gate("--bundle", str(build_bundle(tmp_path, with_config=False)))
    assert proc.returncode == 3
    assert "cilium-config is missing from the input" in " ".join(proc.stdout.split())  # prose wraps at the console width


def test_unknown_agent_version_cannot_prove_exit_3(tmp_path: Path) -> None:
    bundle = build_bundle(tmp_path)
    shutil.copy(Path(__file__).resolve().parents[1] / "fixtures" / "cilium" / "v1.13" / "status-edge-1.json",
                bundle / "nodes" / "edge-1" / "cilium" / "status.json")
    proc = gate("--bundle", str(bundle))
    assert proc.returncode == 3
    assert "Cilium 1.13.18" in proc.stdout and proc.stdout.startswith("VERDICT: CANNOT PROVE")


def test_snapshot_can_never_pass(tmp_path: Path) -> None:
    bundle = build_bundle(tmp_path)
    proc = gate("--snapshot", str(bundle / "cluster"), "-o", "json")
    assert proc.returncode == 3
    assert json.loads(proc.stdout)["verdict"] == "cannot-prove"


def test_post_removal_phase_on_real_leftovers_exit_1(tmp_path: Path) -> None:
    proc = gate("--bundle", str(build_bundle(tmp_path)), "--phase", "post-removal")
    assert proc.returncode == 1
    assert "kube-proxy DaemonSet kube-system/kube-proxy still exists" in " ".join(proc.stdout.split())


@pytest.mark.parametrize("args", [
    ("--bundle", "/nonexistent/bundle"),
    ("--phase", "during-removal", "--bundle", str(BUNDLES / "B1-healthy")),
    ("-o", "yaml", "--bundle", str(BUNDLES / "B1-healthy")),
    ("--bundle", str(BUNDLES / "B1-healthy"), "--snapshot", str(BUNDLES / "B1-healthy" / "bundle" / "cluster")),
])
def test_bad_input_exit_2_one_line(args: tuple[str, ...]) -> None:
    proc = gate(*args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.startswith("kpdoctor: error:") and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_malformed_agent_json_in_bundle_is_not_a_pass(tmp_path: Path) -> None:
    bundle = build_bundle(tmp_path)
    (bundle / "nodes" / "edge-2" / "cilium" / "service-list.json").write_text("{truncated")
    proc = gate("--bundle", str(bundle))
    assert proc.returncode == 3 and "not recognised" in " ".join(proc.stdout.split())


def test_unreachable_live_cluster_exit_3(tmp_path: Path) -> None:
    """A kubeconfig pointing at a closed loopback port: the cluster cannot be reached -> 3, never a pass."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters:\n- name: c\n  cluster: {server: 'https://127.0.0.1:1'}\n"
        "contexts:\n- name: c\n  context: {cluster: c, user: u}\n"
        "users:\n- name: u\n  user: {token: not-a-secret}\n")
    proc = gate("--kubeconfig", str(kubeconfig))
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert proc.stderr.startswith("kpdoctor: error:") and "127.0.0.1:1" in proc.stderr
