"""`kpdoctor scan`: sources, selection, bad input, crashing plugins, RBAC gaps, exit codes, the demo.

Bundles are the real captures under tests/fixtures/bundles (kube-apiserver and
kube-proxy v1.36.2 on this machine's kernel); the demo bundle is built from
them (kpdoctor/demo/README.md). The CLI is run as a subprocess so exit codes
and the one-line error contract are what a user sees.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

import jsonschema
import pytest

from kpdoctor.checks_api import Check, CheckContext
from kpdoctor.cluster.model import ResourceGap
from kpdoctor.engine import ForbiddenKind, guard_cluster, run_checks
from kpdoctor.findings import Finding, Severity
from kpdoctor.node.state import NodeState
from kpdoctor.registry import discover
from kpdoctor.scanner import DEMO_BUNDLE, ScanRequest, load_bundle, scan
from tests.support.checks import hand_made_check
from tests.support.scan import fake_distribution, plugin_module

REPO = Path(__file__).resolve().parents[1]
BUNDLES = Path(__file__).parent / "fixtures" / "bundles"
B1 = BUNDLES / "B1-healthy" / "bundle"
SCHEMA = json.loads((REPO / "docs" / "report-schema.json").read_text())


def kpd(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kpdoctor", *args], cwd=cwd or REPO, env=env,
                          capture_output=True, text=True, timeout=180)


# ---- test-only checks ----------------------------------------------------------------------------
def _partial_then_raise(check: Check, ctx: CheckContext) -> Iterable[Finding]:
    assert ctx.node is not None
    yield check.finding(ctx, f"Node {ctx.node.name}", "partial result before the bug", severity=Severity.INFO)
    raise ZeroDivisionError("division by zero")


def _count_svc_chains(check: Check, ctx: CheckContext) -> Iterable[Finding]:
    assert ctx.node is not None
    text = ctx.node.text("iptables-save.txt") or ""
    chains = sum(1 for line in text.splitlines() if line.startswith(":KUBE-SVC-"))
    yield check.finding(ctx, f"Node {ctx.node.name}", f"{chains} KUBE-SVC chains")


def _must_not_run(check: Check, ctx: CheckContext) -> Iterable[Finding]:
    raise AssertionError("must not run when EndpointSlices are forbidden")


def _no_endpoints_anywhere(check: Check, ctx: CheckContext) -> Iterable[Finding]:
    if not ctx.cluster.slices_by_service:  # an empty list would wrongly mean "no endpoints anywhere"
        yield check.finding(ctx, "Cluster", "no endpoints at all")


def _count_services(check: Check, ctx: CheckContext) -> Iterable[Finding]:
    yield check.finding(ctx, "Cluster", f"{len(ctx.cluster.services)} services")


Raises = hand_made_check("T-RAISES", _partial_then_raise, scope="node", title="A plugin with a bug")
CountsRules = hand_made_check("T-COUNTS", _count_svc_chains, scope="node", severity=Severity.INFO,
                              title="Counts KUBE-SVC chains")
DeclaresSlices = hand_made_check("T-DECLARES", _must_not_run, severity=Severity.ERROR,
                                 title="Declares it needs EndpointSlices", requires=("EndpointSlice",))
ReadsSlices = hand_made_check("T-READS", _no_endpoints_anywhere, scope="node", severity=Severity.ERROR,
                              title="Reads EndpointSlices without declaring it")
ReadsServices = hand_made_check("T-SERVICES", _count_services, severity=Severity.INFO, title="Reads Services only")


# ---- engine-level -------------------------------------------------------------------------------------
def test_plugin_that_raises_is_an_error_finding_and_the_scan_goes_on() -> None:
    cluster, nodes = load_bundle(B1)
    result = run_checks([Raises(), CountsRules()], cluster, nodes)
    errors = [f for f in result.findings if f.check_id == "T-RAISES" and f.severity == Severity.ERROR]
    assert [f.scope for f in errors] == ["edge-1", "edge-2"]  # raised on both nodes, reported on both
    assert errors[0].message == "check T-RAISES failed: ZeroDivisionError: division by zero"
    assert errors[0].not_evaluated
    counts = {f.scope: f.message for f in result.findings if f.check_id == "T-COUNTS"}
    # the next check still ran on every node, on the real captures: edge-1 (iptables mode) has the
    # 8 service ports' chains incl. default/kubernetes; edge-2 runs nftables mode (empty iptables-save)
    assert counts == {"edge-1": "8 KUBE-SVC chains", "edge-2": "0 KUBE-SVC chains"}
    assert [r.status for r in result.runs] == ["error", "findings"]


def test_rbac_403_on_one_kind_means_not_evaluated_forbidden() -> None:
    cluster, nodes = load_bundle(B1)
    gap = ResourceGap("discovery.k8s.io/endpointslices", 'endpointslices.discovery.k8s.io is forbidden: User '
                      '"system:serviceaccount:ops:kpdoctor" cannot list resource "endpointslices" (403)')
    cluster = replace(cluster, gaps=(gap,))
    result = run_checks([DeclaresSlices(), ReadsSlices(), ReadsServices()], cluster, nodes)
    by_check: dict[str, list[Finding]] = {}
    for f in result.findings:
        by_check.setdefault(f.check_id, []).append(f)
    for cid, count in (("T-DECLARES", 1), ("T-READS", 2)):
        found = by_check[cid]
        assert len(found) == count and all(f.not_evaluated for f in found)
        assert all(f.message.startswith("not evaluated: forbidden: cannot read discovery.k8s.io/endpointslices")
                   for f in found)
        assert all("kubectl auth can-i list" in f.remediation.commands[0] for f in found if f.remediation)
    assert by_check["T-SERVICES"][0].message == "7 services" and not by_check["T-SERVICES"][0].not_evaluated
    statuses = {r.check.id: r.status for r in result.runs}
    assert statuses == {"T-DECLARES": "not_evaluated", "T-READS": "not_evaluated", "T-SERVICES": "findings"}


def test_guarded_cluster_raises_only_for_forbidden_kinds() -> None:
    cluster, _ = load_bundle(B1)
    guarded = guard_cluster(replace(cluster, gaps=(ResourceGap("pods", "403"),)))
    assert len(guarded.services) == len(cluster.services)
    with pytest.raises(ForbiddenKind):
        _ = guarded.pods
    with pytest.raises(ForbiddenKind):
        guarded.kube_proxy_pod_on("edge-1")
    assert guard_cluster(cluster) is cluster  # no gaps: no copy


def test_unreachable_node_is_reported_and_others_scanned() -> None:
    cluster, nodes = load_bundle(B1)
    dead = NodeState(name="edge-3", transport="ssh", address="10.83.0.2", error="connect timed out after 5.0s")
    result = run_checks([CountsRules()], cluster, [*nodes, dead])
    unreachable = [f for f in result.findings if f.check_id == "kpdoctor.scan"]
    assert len(unreachable) == 1 and unreachable[0].subject == "Node edge-3"
    assert "could not be reached over ssh" in unreachable[0].message and "T-COUNTS" in unreachable[0].message
    assert unreachable[0].evidence == ("ssh 10.83.0.2: connect timed out after 5.0s",)
    assert sorted(f.scope for f in result.findings if f.check_id == "T-COUNTS") == ["edge-1", "edge-2"]


def test_scan_pipeline_with_test_checks_and_schema() -> None:
    reg = discover()
    out = scan(ScanRequest(bundle=str(B1)), registry=reg, checks_override=[Raises(), CountsRules()])
    jsonschema.validate(out.report, SCHEMA)
    assert out.exit_code == 1  # the crashed check is an ERROR finding at the default --fail-on error
    assert out.report["source"] == {"kind": "bundle", "location": str(B1), "transport": "bundle"}


# ---- CLI -----------------------------------------------------------------------------------------------
def test_unknown_check_id_exits_2_with_one_line() -> None:
    out = kpd("scan", "--bundle", str(B1), "--checks", "KP-DOES-NOT-EXIST")
    assert out.returncode == 2
    assert out.stdout == ""
    assert len(out.stderr.splitlines()) == 1
    assert out.stderr.startswith("kpdoctor: error: --checks: unknown check id 'KP-DOES-NOT-EXIST' (known: ")


def test_bad_flags_exit_2() -> None:
    assert kpd("scan", "--bundle", str(B1), "--fail-on", "fatal").returncode == 2
    assert kpd("scan", "--bundle", str(B1), "-o", "yaml").returncode == 2
    out = kpd("scan", "--bundle", "/nonexistent/bundle")
    assert out.returncode == 2 and "bundle not found" in out.stderr
    out = kpd("scan", "--bundle", str(B1), "--demo")
    assert out.returncode == 2 and "choose one of" in out.stderr
    out = kpd("scan", "--bundle", str(B1), "--nodes", "edge-9")
    assert out.returncode == 2 and "no node matches edge-9" in out.stderr


PLUGIN = plugin_module("Buggy", "ACME-BUGGY", "A third-party check with a bug", run='return {}["missing"]')


def test_cli_plugin_that_raises_is_reported_and_scan_goes_on(tmp_path: Path) -> None:
    site = fake_distribution(tmp_path, "acme_buggy", PLUGIN, "buggy = acme_buggy:Buggy", dist="acme-buggy",
                             version="1.0")
    env = {**os.environ, "PYTHONPATH": str(site)}
    out = kpd("scan", "--bundle", str(B1), "-o", "json", env=env)
    assert out.returncode == 1, out.stderr  # an ERROR finding for the plugin, at the default --fail-on error
    report = json.loads(out.stdout)
    jsonschema.validate(report, SCHEMA)
    by_id = {c["id"]: c for c in report["checks"]}
    buggy = by_id["ACME-BUGGY"]
    assert buggy["status"] == "error" and buggy["origin"] == "entry-point:buggy (acme-buggy)"
    assert buggy["groups"][0]["message"] == "check ACME-BUGGY failed: KeyError: 'missing'"
    others = [c for c in report["checks"] if c["id"] != "ACME-BUGGY"]
    assert all(c["status"] != "error" for c in others)  # every built-in still ran
    assert len(others) == len(discover(entry_points=False).checks)


def test_all_formats_and_output_file(tmp_path: Path) -> None:
    for fmt in ("json", "junit", "markdown", "html", "console"):
        target = tmp_path / f"report.{fmt}"
        out = kpd("scan", "--bundle", str(B1), "-o", fmt, "--output-file", str(target), "--fail-on", "critical")
        assert out.returncode in (0, 1), out.stderr
        assert out.stdout == ""
        assert f"{fmt} report written to {target}" in out.stderr
        text = target.read_text()
        if fmt == "json":
            jsonschema.validate(json.loads(text), SCHEMA)
        elif fmt == "junit":
            assert ET.fromstring(text).tag == "testsuites"
        elif fmt == "html":
            assert text.startswith("<!DOCTYPE html>")
        assert "B1-healthy" in text


def test_b1_healthy_reports_nothing_at_warning_or_above() -> None:
    """The README's expert diagnosis: no fault (mixed modes, eTP=Local without local endpoints are normal)."""
    out = kpd("scan", "--bundle", str(B1), "-o", "json", "--fail-on", "warning")
    report = json.loads(out.stdout)
    loud = [(c["id"], g["severity"], g["subject"], g["message"]) for c in report["checks"] for g in c["groups"]
            if g["severity"] != "info" and not g["silenced"]]
    assert loud == []
    assert out.returncode == 0
    assert report["summary"]["nodes_reachable"] == 2


def test_demo_runs_without_root_or_cluster_and_exits_0() -> None:
    """`kpdoctor scan --demo` with no capabilities at all and no kubeconfig: a real report, exit 0 by default.

    Run as root here, the command is started through `setpriv` with an empty capability
    bounding set (no CAP_NET_ADMIN, no CAP_DAC_OVERRIDE: `iptables -S` fails under it), which
    is what "without root" means for netfilter and /proc.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBE")}
    env["KUBECONFIG"] = "/nonexistent/kubeconfig"
    cmd = [sys.executable, "-m", "kpdoctor", "scan", "--demo"]
    if os.geteuid() == 0:
        cmd = ["setpriv", "--bounding-set=-all", "--inh-caps=-all", "--no-new-privs", "--", *cmd]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180, cwd="/tmp")
    assert out.returncode == 0, out.stderr
    assert "scan of demo kpdoctor demo bundle" in out.stdout
    assert "2/2 nodes reachable" in out.stdout
    assert "exit 0: ok (--fail-on not set: never fails)" in out.stdout
    failing = kpd("scan", "--demo", "--fail-on", "error", "-o", "json")
    assert failing.returncode == 1  # the planted faults are real findings
    report = json.loads(failing.stdout)
    jsonschema.validate(report, SCHEMA)
    assert report["summary"]["findings"]["error"] + report["summary"]["findings"]["critical"] >= 1


def test_demo_bundle_is_package_data() -> None:
    assert (DEMO_BUNDLE / "cluster" / "services.json").is_file()
    assert sorted(p.name for p in (DEMO_BUNDLE / "nodes").iterdir()) == ["edge-1", "edge-2"]


def test_every_node_unreachable_exits_3_with_a_report(tmp_path: Path) -> None:
    """A snapshot whose Nodes point at 127.0.0.1, scanned over real SSH to a closed loopback port."""
    snap = tmp_path / "snap"
    snap.mkdir()
    for file in (B1.parent / "bundle" / "cluster").glob("*.json"):
        text = file.read_text()
        if file.name == "nodes.json":
            text = text.replace('"10.81.0.2"', '"127.0.0.1"').replace('"10.82.0.2"', '"127.0.0.1"')
        (snap / file.name).write_text(text)
    import socket

    with socket.socket() as s:  # a port nothing listens on: bind, note it, close
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = kpd("scan", "--snapshot", str(snap), "--transport", "ssh", "--ssh-port", str(port), "--timeout", "10",
              "-o", "json", "--known-hosts", str(tmp_path / "known_hosts"), cwd=tmp_path)
    assert out.returncode == 3, out.stderr
    report = json.loads(out.stdout)
    jsonschema.validate(report, SCHEMA)
    assert report["exit_code"] == 3 and report["summary"]["nodes_reachable"] == 0
    scan_groups = next(c for c in report["checks"] if c["id"] == "kpdoctor.scan")["groups"]
    assert sorted(n for g in scan_groups for n in g["nodes"]) == ["edge-1", "edge-2"]
    assert all("could not be reached over ssh" in o["message"] for g in scan_groups for o in g["occurrences"])


PLACEHOLDER = re.compile(r"<[A-Za-z][A-Za-z _-]*>|\{[A-Za-z_]+\}|\$\{|\bNODE_NAME\b|\bSERVICE_NAME\b|\bPOD_NAME\b")


@pytest.mark.parametrize("source", ["demo", "B2-stale-endpoint", "B3-backend-split", "B4-ipvs-unavailable"])
def test_real_remediation_commands_name_real_objects(source: str) -> None:
    """On real captures, every remediation command is filled in (no <node>, {service}, ... placeholders)."""
    req = ScanRequest(demo=True) if source == "demo" else ScanRequest(bundle=str(BUNDLES / source / "bundle"))
    report = scan(req).report
    commands = [(c["id"], cmd) for c in report["checks"] for g in c["groups"] if g["remediation"]
                for cmd in g["remediation"]["commands"]]
    assert commands
    bad = [(cid, cmd) for cid, cmd in commands if PLACEHOLDER.search(cmd.split("#", 1)[0])]
    assert bad == []
    names = {n["name"] for n in report["nodes"]} | {"kube-proxy", "payments", "inventory", "media"}
    assert any(any(name in cmd for name in names) for _, cmd in commands)


def test_demo_bundle_is_b2_plus_exactly_the_documented_plants() -> None:
    """Provenance (kpdoctor/demo/README.md): only edge-2's four re-dumped files differ from the B2 capture,
    the captured kube-proxy nf_tables objects are unchanged, and the planted table is the FORWARD-drop one."""
    b2 = BUNDLES / "B2-stale-endpoint" / "bundle"
    demo_files = {p.relative_to(DEMO_BUNDLE).as_posix() for p in DEMO_BUNDLE.rglob("*") if p.is_file()}
    b2_files = {p.relative_to(b2).as_posix() for p in b2.rglob("*") if p.is_file()}
    assert demo_files == b2_files
    differ = sorted(f for f in demo_files if (DEMO_BUNDLE / f).read_bytes() != (b2 / f).read_bytes())
    assert differ == ["nodes/edge-2/iptables-nft-save.txt", "nodes/edge-2/iptables-save.txt",
                      "nodes/edge-2/nft-ruleset.json", "nodes/edge-2/sysctl.txt"]
    captured = json.loads((b2 / differ[2]).read_text())["nftables"]
    demo = json.loads((DEMO_BUNDLE / differ[2]).read_text())["nftables"]
    assert demo[: len(captured)] == captured
    added = demo[len(captured):]
    assert {"table": {"family": "ip", "name": "filter", "handle": 5}} in added
    assert any(x.get("chain", {}).get("name") == "FORWARD" and x["chain"]["policy"] == "drop" for x in added)
    assert ":FORWARD DROP [0:0]" in (DEMO_BUNDLE / differ[1]).read_text()
    assert (DEMO_BUNDLE / differ[3]).read_text().splitlines()[0] == "net.ipv4.ip_forward = 0"


def test_demo_reports_every_planted_fault() -> None:
    report = scan(ScanRequest(demo=True, fail_on=Severity.ERROR)).report
    found = {(c["id"], n) for c in report["checks"] for g in c["groups"]
             if Severity.parse(g["severity"]) >= Severity.ERROR for n in (g["nodes"] or ["cluster"])}
    texts = " ".join(o["message"] for c in report["checks"] for g in c["groups"] for o in g["occurrences"])
    assert "10.244.53.12:8080" in texts  # fault 2: the stale DNAT target on edge-1
    assert "kube-proxy-76gg5" in texts  # fault 1: the crash-looping kube-proxy
    assert re.search(r"FORWARD[^.]*DROP[^.]*edge-2", texts)  # fault 3
    assert re.search(r"ip_forward[^.]*0[^.]*edge-2", texts)  # fault 4
    assert {("KP-STALE-ENDPOINTS", "edge-1"), ("KP-NODEPORT-FIREWALL", "edge-2"),
            ("KP-SYSCTL-CONNTRACK", "edge-2"), ("KP-PROXY-NODE-HEALTH", "edge-1")} <= found
    assert report["exit_code"] == 1
