"""kpdoctor.node_only: node-only scans (a bundle with nodes/<name>/ and no cluster/).

Real data: the node facts of bundle B1 (recorded from real kube-proxy v1.36.2 nodes, see its README), with
its cluster/ left out, as `collect --offline` writes it. The planted-fault round trip on a network-namespace
node is tests/node/test_offline_roundtrip.py.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
from pathlib import Path

from kpdoctor.cluster.config import KubeProxyConfig
from kpdoctor.cluster.state import ClusterState
from kpdoctor.node.bundle import FORMAT
from kpdoctor.node_only import (
    NODE_ONLY_KINDS,
    NODE_ONLY_REASON,
    cluster_missing_error,
    config_from_node,
    is_node_only,
    node_only_cluster,
)
from tests.support import cli
from tests.support.cli import NO_CLUSTER

ROOT = Path(__file__).resolve().parents[2]
B1 = ROOT / "tests" / "fixtures" / "bundles" / "B1-healthy" / "bundle"


def kpd(*args: str) -> subprocess.CompletedProcess[str]:
    return cli.kpd(*args, env=NO_CLUSTER)


def nodes_only(tmp: Path, manifest: dict | None = None) -> Path:
    out = tmp / "B"
    shutil.copytree(B1 / "nodes", out / "nodes")
    if manifest is not None:
        (out / "manifest.json").write_text(json.dumps(manifest))
    return out


def test_node_only_cluster_knows_nothing_and_says_so() -> None:
    cluster = node_only_cluster("bundle x")
    assert is_node_only(cluster) and not is_node_only(ClusterState())
    assert [g.kind for g in cluster.gaps] == list(NODE_ONLY_KINDS)
    assert {g.reason for g in cluster.gaps} == {NODE_ONLY_REASON}
    assert cluster.services == () and cluster.nodes == ()


def test_config_comes_from_what_the_node_kube_proxy_serves() -> None:
    from_configz = config_from_node("n1", KubeProxyConfig(mode="nftables"), "iptables")
    assert from_configz is not None and from_configz.config.mode == "nftables"  # /configz wins over /proxyMode
    assert "configz.json on n1" in from_configz.origin
    from_mode = config_from_node("n1", None, "ipvs\n")
    assert from_mode is not None and from_mode.config.mode == "ipvs" and "defaults" in from_mode.origin
    assert config_from_node("n1", None, None) is None
    assert config_from_node("n1", None, "<html>404</html>") is None  # not a mode: not guessed


def test_a_lost_cluster_is_told_apart_from_an_offline_collection() -> None:
    assert cluster_missing_error(None, "") is None
    assert cluster_missing_error({"cluster": {"source": None, "files": []}}, "") is None
    listed = cluster_missing_error({"cluster": {"files": ["services.json"]}}, "")
    assert listed and "manifest.json lists cluster files" in listed
    cut = cluster_missing_error(None, "truncated or corrupt archive: EOF")
    assert cut and "ends early" in cut


def test_scan_of_a_node_only_bundle_runs_node_checks_and_lists_the_rest(tmp_path: Path) -> None:
    bundle = nodes_only(tmp_path, {"format": FORMAT, "cluster": {"source": None, "files": [], "gaps": []}, "nodes": {}})
    proc = kpd("scan", "--bundle", str(bundle), "-o", "json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    status = {c["id"]: c["status"] for c in report["checks"]}
    for check_id in ("KP-BACKEND-SPLIT", "KP-SYSCTL-CONNTRACK", "KP-KERNEL-MODULES", "KP-LEFTOVER-RULES",
                     "KP-PROXY-NODE-HEALTH", "KP-SYNC-LAG"):  # fmt: skip
        assert status[check_id] == "passed", (check_id, status)
    for check_id in ("KP-STALE-ENDPOINTS", "KP-PROXY-HEALTH", "KP-CILIUM-KPR", "KP-PROXIER-MODE"):
        assert status[check_id] == "not_evaluated", (check_id, status)
    # the tarball with its top folder reads like the folder
    tgz = tmp_path / "b.tgz"
    with tarfile.open(tgz, "w:gz") as tar:
        tar.add(bundle, arcname="B")
    again = kpd("scan", "--bundle", str(tgz), "-o", "json")
    assert again.returncode == 0, again.stderr
    assert {c["id"]: c["status"] for c in json.loads(again.stdout)["checks"]} == status


def test_a_bundle_whose_manifest_lists_cluster_files_but_has_none_is_refused(tmp_path: Path) -> None:
    bundle = nodes_only(tmp_path, {"format": FORMAT, "cluster": {"files": ["services.json"]}, "nodes": {}})
    proc = kpd("scan", "--bundle", str(bundle))
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "lists cluster files" in proc.stderr and str(bundle) in proc.stderr
