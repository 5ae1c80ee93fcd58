"""`kpdoctor why` and `scan --service` end to end, on real captures: the B1/B2 bundles (real kube-apiserver +
kube-proxy v1.36.2, see tests/fixtures/bundles/README.md), the demo bundle, and V1's real iptables dump (no API).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support import cli
from tests.support.cli import NO_CLUSTER

REPO = Path(__file__).resolve().parents[2]
FIX = REPO / "tests" / "fixtures"
B1 = FIX / "bundles" / "B1-healthy" / "bundle"
B2 = FIX / "bundles" / "B2-stale-endpoint" / "bundle"
V1 = FIX / "kube-proxy-v1.36" / "V1-basic-clusterip"


def kpd(*args: str) -> subprocess.CompletedProcess[str]:
    return cli.kpd(*args, env=NO_CLUSTER, drop=("KPDOCTOR_DEBUG",), cwd="/tmp", timeout=240)


def why_json(*args: str) -> tuple[int, dict]:
    out = kpd("why", *args, "-o", "json")
    assert out.stderr == "", out.stderr
    return out.returncode, json.loads(out.stdout)


def test_b2_names_the_stale_node_and_endpoint() -> None:
    code, view = why_json("svc/payments/ledger", "--bundle", str(B2))
    assert code == 1
    assert "not from 1: edge-1: stale" in view["verdict"]
    assert "10.244.53.12:8080" in view["verdict"] and "none to 10.244.53.19:8080" in view["verdict"]
    stale = next(n for n in view["nodes"] if n["node"] == "edge-1")
    assert stale["status"] == "stale" and stale["frontends"][0]["stale"] == ["10.244.53.12:8080"]
    assert next(n for n in view["nodes"] if n["node"] == "edge-2")["status"] == "ok"
    assert any("conntrack -D" in c and "10.244.53.12" in c for c in view["commands"])


def test_demo_names_the_service_without_a_healthy_node() -> None:
    out = kpd("why", "svc/payments/ledger", "--demo")
    assert out.returncode == 1, out.stderr
    verdict = next(line for line in out.stdout.splitlines() if line.startswith("VERDICT"))
    assert "svc/payments/ledger has no healthy node" in verdict
    assert "edge-1: stale" in verdict and "10.244.53.12:8080" in verdict
    assert "net.ipv4.ip_forward is 0 on node edge-2" in verdict


def test_demo_frozen_node_is_at_risk_not_broken() -> None:
    code, view = why_json("svc/payments/billing", "--demo")
    assert code == 1  # edge-2's ip_forward=0 and FORWARD DROP break it there
    status = {n["node"]: n["status"] for n in view["nodes"]}
    assert status == {"edge-1": "at-risk", "edge-2": "broken"}
    assert "works from 1 node(s) but not from 1" in view["verdict"]


def test_healthy_service_is_reachable_from_every_node_exit_0() -> None:
    out = kpd("why", "svc/storefront/catalog", "--bundle", str(B1))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "is reachable from every node (2 nodes" in out.stdout
    assert "2 nodes (edge-1, edge-2): OK" in out.stdout


def test_nodes_narrowed_says_every_node_checked_not_every_node() -> None:
    """--nodes reads one of B1's two nodes: the verdict must not vouch for the other (first seen on the real lab,
    tests/lab/test_why_klab.py)."""
    code, view = why_json("svc/storefront/catalog", "--bundle", str(B1), "--nodes", "edge-1")
    assert code == 0
    assert [n["node"] for n in view["nodes"]] == ["edge-1"] and view["nodes_not_checked"] == ["edge-2"]
    assert view["verdict"].startswith("svc/storefront/catalog is reachable from every node checked (1 node")
    assert view["verdict"].endswith("; 1 node(s) not evaluated.")
    assert any("edge-2" in n for n in view["not_evaluated"])
    code, view = why_json("svc/storefront/catalog", "--bundle", str(B1))
    assert view["nodes_not_checked"] == [] and "reachable from every node (2 nodes" in view["verdict"]


def test_from_a_node_evaluates_only_that_node() -> None:
    code, view = why_json("svc/payments/ledger", "--bundle", str(B2), "--from", "node/edge-2")
    assert code == 0
    assert [n["node"] for n in view["nodes"]] == ["edge-2"]
    assert "is reachable for node edge-2" in view["verdict"]


def test_without_node_access_nodes_are_not_evaluated() -> None:
    code, view = why_json("svc/payments/ledger", "--snapshot", str(B2 / "cluster"))
    assert code == 0
    assert view["nodes"] == [] and "reachable" not in view["verdict"]
    assert "what the nodes do with it is not known" in view["verdict"]
    assert any(n.startswith("node rules: no node access") for n in view["not_evaluated"])


def test_without_api_the_node_rejects_with_has_no_endpoints(tmp_path: Path) -> None:
    # V1's real kube-proxy iptables dump (kpnode1), in a bundle without cluster/: node rules only
    node = tmp_path / "nodes" / "kpnode1"
    node.mkdir(parents=True)
    shutil.copy(V1 / "iptables" / "iptables-save.txt", node / "iptables-save.txt")
    code, view = why_json("svc/shop/orders", "--bundle", str(tmp_path))
    assert code == 1
    assert view["service_found"] is None
    assert view["verdict"] == ("without the API: node kpnode1 rejects 10.96.10.14:80 with "
                               "'shop/orders:http has no endpoints'.")


def test_without_api_nodes_that_disagree_are_named(tmp_path: Path) -> None:
    shutil.copytree(B2 / "nodes", tmp_path / "nodes")
    code, view = why_json("svc/payments/ledger", "--bundle", str(tmp_path))
    assert code == 1
    assert "edge-1 alone sends cluster-ip 10.96.150.30:80/TCP to 10.244.53.12:8080" in view["verdict"]


def test_scan_service_narrows_and_carries_the_view() -> None:
    out = kpd("scan", "--demo", "--service", "payments/ledger", "-o", "json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["service"]["format"] == "kpdoctor.why/v1"
    assert "has no healthy node" in report["service"]["verdict"]
    subjects = {g["subject"] for c in report["checks"] for g in c["groups"]}
    assert "Service payments/ledger:http/TCP" in subjects
    assert not any(s.startswith("Service ") and not s.startswith("Service payments/ledger") for s in subjects)
    from jsonschema import validate

    validate(report, json.loads((REPO / "docs" / "report-schema.json").read_text()))


@pytest.mark.parametrize("argv, fragment", [
    (("why", "svc/payments", "--demo"), "is not svc/NAMESPACE/NAME[:PORT]"),
    (("why", "svc/payments/ledger", "--demo", "--from", "pod/x"), "is not pod/NAMESPACE/NAME"),
    (("why", "svc/payments/ledger", "--demo", "-o", "html"), "choose from console, json"),
    (("scan", "--demo", "--service", "Bad/Name"), "not a valid DNS-1123 label"),
])
def test_bad_input_is_one_line_exit_2(argv: tuple[str, ...], fragment: str) -> None:
    out = kpd(*argv)
    assert out.returncode == 2
    assert out.stdout == "" and len(out.stderr.splitlines()) == 1 and fragment in out.stderr


def test_hostile_label_values_are_escaped_in_console(tmp_path: Path) -> None:
    # B2's snapshot with a control sequence planted in a pod label: it must not reach the terminal raw
    snap = tmp_path / "cluster"
    shutil.copytree(B2 / "cluster", snap)
    pods = json.loads((snap / "pods.json").read_text())
    svcs = json.loads((snap / "services.json").read_text())
    for s in svcs["items"]:
        if s["metadata"]["name"] == "ledger":
            s["spec"]["selector"] = {"app": "ledger\x1b[31m"}
    (snap / "services.json").write_text(json.dumps(svcs))
    (snap / "pods.json").write_text(json.dumps(pods))
    out = kpd("why", "svc/payments/ledger", "--snapshot", str(snap))
    assert out.returncode == 1
    assert "\x1b" not in out.stdout and "\\x1b[31m" in out.stdout
