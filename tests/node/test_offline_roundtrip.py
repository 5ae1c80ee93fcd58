"""Offline, node-only round trip: `kpdoctor collect --offline` on a node with no cluster access, then
`kpdoctor scan --bundle` on what it wrote, finds the faults planted on that node (exit 1).

The node is a fresh network namespace: the real kube-proxy v1.36.2 ruleset of bundle B1's edge-1 loaded
with the real iptables-restore, faults planted with the real tools, and kube-proxy's HTTP surfaces served
on the node's loopback (127.0.0.1:10249 and :10256) with the bodies recorded from that real kube-proxy
(kube-proxy itself does not run in the lab). The collector is the real `kpdoctor collect` run inside the
namespace as a subprocess, with no kubeconfig (HOME and KUBECONFIG point nowhere).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.checks import B1, EDGE1_RULES, make_node, netns, restore, sh

ROOT = Path(__file__).resolve().parents[2]
SURFACES = {10249: {"proxyMode": "proxyMode.txt", "configz": "configz.json", "metrics": "metrics.txt"},
            10256: {"healthz": "healthz.json"}}


def _env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST")}
    env.update(HOME=str(tmp / "home"), PYTHONPATH=str(ROOT), NO_COLOR="1")
    (tmp / "home").mkdir(exist_ok=True)
    return env


def _wait_port(ns: str, port: int) -> None:
    for _ in range(100):  # bounded: 10 s
        probe = sh([sys.executable, "-c", f"import socket; socket.create_connection(('127.0.0.1', {port}), 0.2)"],
                   netns=ns, check=False)
        if probe.returncode == 0:
            return
        time.sleep(0.1)
    raise AssertionError(f"recorded kube-proxy surface on :{port} did not come up in {ns}")


@contextmanager
def recorded_kube_proxy(ns: str, tmp: Path) -> Iterator[None]:
    """Serve edge-1's recorded /proxyMode, /configz, /metrics and /healthz bodies on the node's loopback."""
    procs = []
    try:
        for port, files in SURFACES.items():
            root = tmp / f"surface-{port}"
            root.mkdir()
            for path, fact in files.items():
                shutil.copy(B1 / "edge-1" / "kube-proxy" / fact, root / path)
            procs.append(subprocess.Popen(
                ["ip", "netns", "exec", ns, sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                 "--directory", str(root)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            _wait_port(ns, port)
        yield
    finally:
        for proc in procs:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


def kpdoctor(*args: str, env: dict[str, str], ns: str | None = None) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "kpdoctor", *args]
    if ns:
        argv = ["ip", "netns", "exec", ns, *argv]
    return subprocess.run(argv, capture_output=True, text=True, timeout=180, env=env, cwd=env["HOME"])


def findings_by_check(report: dict) -> dict[str, list[dict]]:
    return {c["id"]: list(c["groups"]) for c in report["checks"]}


@pytest.mark.root("iptables-restore", "iptables-legacy-restore", "iptables", "nfacct")
def test_collect_offline_then_scan_bundle_finds_planted_faults(tmp_path: Path) -> None:
    env = _env(tmp_path)
    with netns("kpd-off") as ns:
        make_node(ns, "10.81.0.2")
        restore(ns, EDGE1_RULES)
        # planted faults: kube-proxy's rules in the legacy backend too, forwarding off, NodePorts dropped
        restore(ns, EDGE1_RULES, tool="iptables-legacy-restore")
        sh(["sysctl", "-qw", "net.ipv4.ip_forward=0"], netns=ns)
        sh(["iptables", "-t", "raw", "-A", "PREROUTING", "-p", "tcp", "--dport", "30000:32767", "-j", "DROP"],
           netns=ns)
        with recorded_kube_proxy(ns, tmp_path):
            # without --offline and without a kubeconfig: the error names the flag that works
            refused = kpdoctor("collect", "-f", str(tmp_path / "refused"), env=env, ns=ns)
            assert refused.returncode == 3, refused.stderr
            assert "--offline" in refused.stderr and "--bundle" not in refused.stderr
            out = tmp_path / "B"
            done = kpdoctor("collect", "--offline", "--node", "edge-1", "-f", str(out), env=env, ns=ns)
            assert done.returncode == 0, done.stderr
    assert (out / "nodes" / "edge-1" / "iptables-legacy-save.txt").is_file()
    assert not (out / "cluster").exists()
    with tarfile.open(tmp_path / "b.tgz", "w:gz") as tar:  # `tar czf b.tgz B/`: the top folder included
        tar.add(out, arcname="B")
    reports = []
    for source in (out, tmp_path / "b.tgz"):
        scanned = kpdoctor("scan", "--bundle", str(source), "-o", "json", env=env)
        assert scanned.returncode == 1, scanned.stderr
        assert "no cluster/" not in scanned.stderr
        reports.append(json.loads(scanned.stdout))
    first, second = (findings_by_check(r) for r in reports)
    assert first, "no check produced anything"
    assert {k: [f["message"] for f in v] for k, v in first.items()} == \
        {k: [f["message"] for f in v] for k, v in second.items()}
    evaluated = {k: [f for f in v if not f.get("not_evaluated")] for k, v in first.items()}
    split = evaluated["KP-BACKEND-SPLIT"]
    assert [f["severity"] for f in split] == ["error"] and "both iptables backends" in split[0]["message"]
    forward = [f for f in evaluated["KP-SYSCTL-CONNTRACK"] if "ip_forward" in f["message"]]
    assert forward and forward[0]["severity"] == "critical"  # kube-proxy answers there: it is meant to run
    dropped = [f for f in evaluated["KP-NODEPORT-FIREWALL"] if "PREROUTING" in f["message"]]
    assert dropped and "31110/TCP" in dropped[0]["message"], evaluated["KP-NODEPORT-FIREWALL"]
    # the checks that need the cluster are listed as not evaluated, none of them passes silently
    for check_id in ("KP-PROXY-HEALTH", "KP-CILIUM-KPR", "KP-STALE-ENDPOINTS", "KP-PROXIER-MODE"):
        assert first[check_id] and all(f["not_evaluated"] for f in first[check_id]), check_id
    statuses = {c["id"]: c["status"] for c in reports[0]["checks"]}
    assert statuses["KP-STALE-ENDPOINTS"] == "not_evaluated"


@pytest.mark.root("iptables-restore", "iptables-legacy-restore")
def test_node_local_with_no_kubeconfig_runs_the_node_checks(tmp_path: Path) -> None:
    """`kpdoctor node NAME --transport local` on a node with no kubeconfig: facts, then the node-facts checks."""
    env = _env(tmp_path)
    with netns("kpd-offn") as ns:
        make_node(ns, "10.81.0.3")
        restore(ns, EDGE1_RULES)
        restore(ns, EDGE1_RULES, tool="iptables-legacy-restore")  # planted: kube-proxy's rules in both backends
        with recorded_kube_proxy(ns, tmp_path):
            done = kpdoctor("node", "edge-1", "--transport", "local", "-o", "json", env=env, ns=ns)
    assert done.returncode == 1, done.stderr
    checks = findings_by_check(json.loads(done.stdout))
    split = [f for f in checks["KP-BACKEND-SPLIT"] if not f.get("not_evaluated")]
    assert split and split[0]["severity"] == "error"
    assert all(f["not_evaluated"] for f in checks["KP-STALE-ENDPOINTS"])
