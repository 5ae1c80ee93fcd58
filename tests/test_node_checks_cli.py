"""`kpdoctor node NAME` runs the node-scope checks on the node it collected, through the scan pipeline.

Inputs are the real captures under tests/fixtures/bundles (kube-proxy v1.36.2 nodes, see their READMEs);
the unreachable case is a real SSH connect to a closed loopback port. The CLI runs as a subprocess so exit
codes and stdout/stderr are what a user sees.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import jsonschema

from kpdoctor.node.bundle import read_bundle

REPO = Path(__file__).resolve().parent.parent
BUNDLES = REPO / "tests" / "fixtures" / "bundles"
B1 = BUNDLES / "B1-healthy" / "bundle"
B2 = BUNDLES / "B2-stale-endpoint" / "bundle"
SCHEMA = json.loads((REPO / "docs" / "report-schema.json").read_text())


def kpd(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "kpdoctor", *args], cwd=cwd or REPO, env=env,
                          capture_output=True, text=True, timeout=120)


def groups(report: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    return {c["id"]: c["groups"] for c in report["checks"] if c.get("groups")}


def comparable(report: dict[str, Any]) -> list[tuple[str, str, str, str, tuple[str, ...]]]:
    return sorted((c["id"], g["severity"], g["subject"], o["message"], tuple(o["remediation"]["commands"]))
                  for c in report["checks"] for g in c.get("groups", ()) for o in g["occurrences"])


def test_console_shows_collected_facts_then_the_node_findings() -> None:
    out = kpd("node", "edge-1", "--bundle", str(B2))
    assert out.returncode == 1, out.stderr  # errors found, default --fail-on error
    text = out.stdout
    facts_at, report_at = text.index("node edge-1  transport=bundle"), text.index("KP-STALE-ENDPOINTS")
    assert facts_at < report_at
    assert "iptables-save.txt" in text[:report_at] and "kube-proxy answered" in text[:report_at]
    assert "10.244.53.12:8080, which no longer backs the Service" in text
    assert "KP-PROXY-NODE-HEALTH" in text and "kube-proxy-76gg5" in text
    assert "exit 1: findings at or above error" in text


def test_json_report_is_the_scan_pipelines_for_that_node() -> None:
    out = kpd("node", "edge-1", "--bundle", str(B2), "-o", "json")
    assert out.returncode == 1, out.stderr
    report = json.loads(out.stdout)
    jsonschema.validate(report, SCHEMA)
    assert report["source"] == {"kind": "bundle", "location": str(B2), "transport": "bundle"}
    assert [n["name"] for n in report["nodes"]] == ["edge-1"]
    assert {c["scope"] for c in report["checks"]} == {"node"}
    stale = groups(report)["KP-STALE-ENDPOINTS"]
    assert [g["subject"] for g in stale] == ["Service payments/ledger:http/TCP"] and stale[0]["nodes"] == ["edge-1"]
    # the same findings `kpdoctor scan` gives for that node and those checks: one pipeline, not two
    scanned = kpd("scan", "--bundle", str(B2), "--nodes", "edge-1", "--checks", "scope:node", "-o", "json")
    assert scanned.returncode == 1, scanned.stderr
    assert comparable(report) == comparable(json.loads(scanned.stdout))
    assert report["exit_code"] == 1


def test_checks_skip_and_fail_on_like_scan(tmp_path: Path) -> None:
    only = kpd("node", "edge-1", "--bundle", str(B2), "--checks", "KP-STALE-ENDPOINTS", "-o", "json",
               "--fail-on", "critical")
    assert only.returncode == 0, only.stderr
    report = json.loads(only.stdout)
    assert [c["id"] for c in report["checks"]] == ["KP-STALE-ENDPOINTS"] and groups(report)
    skipped = kpd("node", "edge-1", "--bundle", str(B2), "--skip", "KP-STALE-ENDPOINTS,KP-PROXY-NODE-HEALTH",
                  "-o", "junit", "--output-file", str(tmp_path / "r.xml"))
    assert skipped.returncode == 0, skipped.stderr
    assert "junit report written to" in skipped.stderr and skipped.stdout == ""
    suites = ET.parse(tmp_path / "r.xml").getroot()
    assert list(suites.iter("testcase")) and not list(suites.iter("failure"))
    healthy = kpd("node", "edge-1", "--bundle", str(B1), "-o", "json", "--fail-on", "warning")
    assert healthy.returncode == 0, healthy.stdout[-2000:]


def test_bad_selections_and_flags_exit_2_with_one_line() -> None:
    for args, needle in [
        (("--checks", "KP-PROXY-HEALTH"), "leave no node-scope check"),  # a cluster-scope check
        (("--checks", "KP-NOPE"), "KP-NOPE"),
        (("-o", "yaml"), "-o 'yaml'"),
        (("--output-file", "json"), "use -o json"),
        (("--fail-on", "loud"), "--fail-on"),
        (("--facts-json", "--probe"), "--facts-json"),
    ]:
        out = kpd("node", "edge-1", "--bundle", str(B2), *args)
        assert out.returncode == 2, (args, out.stdout[-500:], out.stderr)
        assert out.stderr.startswith("kpdoctor: error: ") and needle in out.stderr, (args, out.stderr)
        assert len(out.stderr.strip().splitlines()) == 1 and out.stdout == ""
    unknown = kpd("node", "edge-9", "--bundle", str(B2))
    assert unknown.returncode == 2 and "node 'edge-9' is not in this bundle" in unknown.stderr


def test_facts_json_is_the_collected_node_state() -> None:
    out = kpd("node", "edge-1", "--bundle", str(B2), "--facts-json")
    assert out.returncode == 0, out.stderr
    shown = json.loads(out.stdout)
    state = read_bundle(B2).node_state("edge-1")
    assert shown["name"] == "edge-1" and shown["transport"] == "bundle"
    assert {k: v["content"] for k, v in shown["facts"].items()} == {k: f.content for k, f in state.facts.items()}
    assert shown["summary"]["backends_with_kube_proxy_rules"] == ["nf_tables"]


def test_without_a_cluster_the_node_facts_checks_run_and_the_rest_are_not_evaluated(tmp_path: Path) -> None:
    """A node-only bundle (issue 13): the facts, then the checks a node's facts allow; no "ok" for the others."""
    nodes_only = tmp_path / "b"
    shutil.copytree(B2 / "nodes", nodes_only / "nodes")
    out = kpd("node", "edge-1", "--bundle", str(nodes_only))
    assert out.returncode == 0, out.stderr
    assert "node edge-1  transport=bundle" in out.stdout and "this scan has node facts only" in out.stdout
    as_json = kpd("node", "edge-1", "--bundle", str(nodes_only), "-o", "json")
    assert as_json.returncode == 0, as_json.stderr
    status = {c["id"]: c["status"] for c in json.loads(as_json.stdout)["checks"]}
    assert status["KP-BACKEND-SPLIT"] == "passed" and status["KP-STALE-ENDPOINTS"] == "not_evaluated"


def test_unreachable_node_reports_and_exits_3(tmp_path: Path) -> None:
    """Node edge-1's InternalIP rewritten to 127.0.0.1 and SSH sent to a closed loopback port (a real refusal)."""
    snap = tmp_path / "snap"
    snap.mkdir()
    for file in (B1 / "cluster").glob("*.json"):
        text = file.read_text()
        if file.name == "nodes.json":
            text = text.replace('"10.81.0.2"', '"127.0.0.1"')
        (snap / file.name).write_text(text)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = kpd("node", "edge-1", "--snapshot", str(snap), "--transport", "ssh", "--ssh-port", str(port),
              "--known-hosts", str(tmp_path / "known_hosts"), "--timeout", "10", "-o", "json", cwd=tmp_path)
    assert out.returncode == 3, out.stderr
    assert out.stderr.startswith("kpdoctor: error: node edge-1:"), out.stderr
    report = json.loads(out.stdout)
    jsonschema.validate(report, SCHEMA)
    assert report["summary"]["nodes_reachable"] == 0
    unreachable = groups(report)["kpdoctor.scan"]
    assert "could not be reached over ssh" in unreachable[0]["message"]
