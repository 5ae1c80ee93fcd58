"""deploy/rbac.yaml against a real kube-apiserver with RBAC: with exactly that role the live scan is
complete; with less, the report names each gap and never crashes. ServiceAccount tokens are real
(TokenRequest), signed by the lab API server's ES256 key."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kpdoctor.lab import pki
from kpdoctor.lab.kcluster import ClusterState
from tests.support.klab import admin_api, apply_workload, kpdoctor, lab_cluster, report

pytestmark = pytest.mark.root("etcd", "nft", "curl")
RBAC = Path(__file__).resolve().parents[2] / "deploy" / "rbac.yaml"


def _docs() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(RBAC.read_text()) if d]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterState]:
    with lab_cluster(tmp_path_factory.mktemp("klab-rbac"), nodes=1) as state:
        apply_workload(state, node_port=0, with_api=False)
        yield state


def _token_kubeconfig(state: ClusterState, tmp: Path, docs: list[dict[str, Any]]) -> Path:
    api = admin_api(state)
    for kind in ("ClusterRoleBinding", "RoleBinding"):  # start from nothing granted
        for name, ns in (("kpdoctor-read", None), ("kpdoctor-kube-system-read", "kube-system")):
            if (kind == "RoleBinding") == (ns is not None):
                api.delete(kind, name, namespace=ns)
    for doc in docs:
        api.apply(doc)
    token = api.token("kpdoctor", "kpdoctor", seconds=3600)
    return pki.write_kubeconfig(tmp / "sa.kubeconfig", state.apiserver, state.state_dir / "pki" / "ca.crt",
                                user="kpdoctor", token=token)  # fmt: skip


def test_rbac_yaml_is_read_only() -> None:
    for doc in _docs():
        for rule in doc.get("rules", []):
            assert set(rule["verbs"]) <= {"get", "list", "watch"}, rule


def test_exactly_the_published_role_gives_a_complete_scan(cluster: ClusterState, tmp_path: Path) -> None:
    kc = _token_kubeconfig(cluster, tmp_path, _docs())
    proc = kpdoctor("scan", "--kubeconfig", str(kc), "-o", "json")
    rep = report(proc)
    assert proc.returncode == 0, proc.stdout[-1500:] + proc.stderr[-800:]
    assert rep["gaps"] == []
    assert {c["id"]: c["status"] for c in rep["checks"]}["KP-PROXY-HEALTH"] == "passed"


def _without(docs: list[dict[str, Any]], *, drop_kube_system: bool, drop_nodes: bool) -> list[dict[str, Any]]:
    out = []
    for doc in copy.deepcopy(docs):
        if drop_kube_system and doc["kind"] == "RoleBinding":
            continue  # no ConfigMaps, DaemonSets, Pods or logs in kube-system
        if drop_nodes and doc["kind"] == "ClusterRole" and doc["metadata"]["name"] == "kpdoctor-read":
            for rule in doc["rules"]:
                rule["resources"] = [r for r in rule["resources"] if r != "nodes"]
        out.append(doc)
    return out


def test_less_than_the_role_names_every_gap(cluster: ClusterState, tmp_path: Path) -> None:
    kc = _token_kubeconfig(cluster, tmp_path, _without(_docs(), drop_kube_system=True, drop_nodes=True))
    proc = kpdoctor("scan", "--kubeconfig", str(kc), "-o", "json")
    assert "Traceback" not in proc.stderr
    rep = report(proc)
    gaps = {g["kind"]: g["reason"] for g in rep["gaps"]}
    assert {"ConfigMap", "DaemonSet", "Pod", "Node"} <= set(gaps), gaps
    assert "kube-system" in gaps["ConfigMap"] and "forbidden" in gaps["ConfigMap"]
    # Unknown is not broken: checks that needed what could not be read are not evaluated, not "ok".
    assert rep["exit_code"] == proc.returncode
    assert {c["id"]: c["status"] for c in rep["checks"]}["KP-PROXY-HEALTH"] != "passed"
    console = kpdoctor("scan", "--kubeconfig", str(kc))
    assert "Traceback" not in console.stderr
    for kind in ("ConfigMaps in kube-system", "DaemonSets in kube-system", "Pods in kube-system", "Nodes"):
        assert f"forbidden (403): cannot list {kind}" in console.stdout, console.stdout[-2000:]
    assert "not evaluated: forbidden" in console.stdout
