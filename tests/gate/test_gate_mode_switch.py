"""`kpdoctor gate mode-switch --phase pre-switch` on the real kube-proxy bundles B1-B4 and the demo.

The bundles are real kube-proxy v1.36.2 captures (tests/fixtures/bundles/README.md). Where a test needs a
shape the captures do not have (an old kernel, a second node address, an unset nodePortAddresses, an older
kube-proxy image) it copies a bundle and edits exactly that one value, and says so. IPVS readiness is
judged from the recorded facts only: this kernel has no IPVS.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import pytest

from kpdoctor.gate.mode_switch import run_mode_switch
from kpdoctor.gate.mode_views import compare, mode_view, node_diff
from kpdoctor.gate.sources import from_bundle
from kpdoctor.proxier.context import build_input

ROOT = Path(__file__).resolve().parents[2]
BUNDLES = ROOT / "tests" / "fixtures" / "bundles"
B1 = BUNDLES / "B1-healthy" / "bundle"
B4 = BUNDLES / "B4-ipvs-unavailable" / "bundle"


def gate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kpdoctor", "gate", "mode-switch", *args], capture_output=True,
                          text=True, timeout=180, cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})


def copy_b1(tmp_path: Path) -> Path:
    dst = tmp_path / "bundle"
    shutil.copytree(B1, dst)
    return dst


def edit_configmap(bundle: Path, name: str, old: str, new: str) -> None:
    path = bundle / "cluster" / "configmaps.json"
    doc = json.loads(path.read_text())
    for item in doc["items"]:
        if item["metadata"]["name"] == name:
            assert old in item["data"]["config.conf"]
            item["data"]["config.conf"] = item["data"]["config.conf"].replace(old, new)
    path.write_text(json.dumps(doc))


def reasons(doc: dict, cid: str, kind: str) -> list[dict]:
    cond = next(c for c in doc["conditions"] if c["id"] == cid)
    return [r for r in cond["reasons"] + [r for c in cond["cases"] for r in c["reasons"]] if r["kind"] == kind]


def test_b1_to_nftables_passes_verdict_first() -> None:
    proc = gate("--to", "nftables", "--bundle", str(B1))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    first, *_ = proc.stdout.splitlines()
    assert first.startswith("VERDICT: PASS: safe to switch kube-proxy to nftables mode")
    proc = gate("--to", "nftables", "--bundle", str(B1), "-o", "json")
    doc = json.loads(proc.stdout)
    assert list(doc)[:3] == ["verdict", "headline", "exit_code"] and doc["verdict"] == "pass"
    assert doc["gate"] == "mode-switch" and doc["phase"] == "pre-switch"
    # edge-2 already runs nftables (its /proxyMode): said, not blocking
    assert any("already in nftables" in r["message"] for r in reasons(doc, "current-mode", "warning"))


def test_reference_views_of_b1_edge1_agree_between_iptables_and_nftables() -> None:
    src = from_bundle(str(B1))
    found = src.cluster.proxy_config_for("edge-1")
    assert found is not None and found.config.effective_mode == "iptables"
    d = node_diff(src.cluster, "edge-1", found.config, "nftables", "IPv4")
    assert d.frontends > 5  # storefront's ClusterIP / NodePort / LoadBalancer frontends were compared
    assert d.undocumented == ()


def test_an_undocumented_change_is_a_finding() -> None:
    """The views are B1's real ones; one endpoint is removed from the target view (a hand-made change)."""
    src = from_bundle(str(B1))
    found = src.cluster.proxy_config_for("edge-1")
    assert found is not None
    cur = mode_view(build_input(src.cluster, "edge-1", config=found.config))
    tgt = mode_view(build_input(src.cluster, "edge-1", config=found.config, mode="nftables"))
    fe, view = next((fe, v) for fe, v in sorted(tgt.frontends.items()) if len(v.endpoints) > 1)
    dropped = sorted(view.endpoints)[0]
    changed = type(tgt).of([*(v for f, v in tgt.frontends.items() if f != fe),
                            replace(view, endpoints=view.endpoints - {dropped})])
    changes = compare(cur, changed, {"iptables", "nftables"})
    assert [(c.frontend, c.what, c.documented) for c in changes] == [(str(fe), "missing-endpoints", "")]


def test_unset_nodeportaddresses_and_a_second_address(tmp_path: Path) -> None:
    """B1 with `nodePortAddresses` unset in edge-1's ConfigMap and a secondary 192.0.2.77 on edge-1's eth0
    (both edited in a copy): iptables mode serves NodePorts on every address and on 127.0.0.1, nftables
    on the primary only."""
    bundle = copy_b1(tmp_path)
    edit_configmap(bundle, "kube-proxy", "nodePortAddresses:\n- primary\n", "")
    ip_addr = bundle / "nodes" / "edge-1" / "ip-addr.json"
    ifaces = json.loads(ip_addr.read_text())
    eth0 = next(i for i in ifaces if i["ifname"] == "eth0")
    eth0["addr_info"].append({"family": "inet", "local": "192.0.2.77", "prefixlen": 24, "scope": "global"})
    ip_addr.write_text(json.dumps(ifaces))
    proc = gate("--to", "nftables", "--bundle", str(bundle), "-o", "json")
    doc = json.loads(proc.stdout)
    assert proc.returncode == 0, proc.stdout  # documented differences warn, they do not block
    lost = reasons(doc, "nodeport-addresses", "warning")
    assert len(lost) == 1 and lost[0]["subject"] == "Node edge-1"
    assert "stop answering on 192.0.2.77 " in lost[0]["message"] and "after: 10.81.0.2" in lost[0]["message"]
    diffs = [r["message"] for r in reasons(doc, "semantic-diff", "warning") if r["subject"] == "Node edge-1"]
    assert any("answer on 127.0.0.1 today" in m for m in diffs), diffs


def test_old_kernel_blocks_nftables(tmp_path: Path) -> None:
    """B1 with edge-1's uname-r.txt edited to 5.10 (nftables mode needs 5.13)."""
    bundle = copy_b1(tmp_path)
    (bundle / "nodes" / "edge-1" / "uname-r.txt").write_text("5.10.0-28-amd64\n")
    proc = gate("--to", "nftables", "--bundle", str(bundle), "-o", "json")
    assert proc.returncode == 1
    doc = json.loads(proc.stdout)
    blocking = reasons(doc, "kernel-ready", "blocking")
    assert [r["subject"] for r in blocking] == ["Node edge-1"] and "older than 5.13" in blocking[0]["message"]


def test_alpha_kube_proxy_blocks_nftables(tmp_path: Path) -> None:
    """B1 with the kube-proxy image tag edited to v1.30.4 (nftables alpha)."""
    bundle = copy_b1(tmp_path)
    for name in ("daemonsets.json", "pods.json"):
        path = bundle / "cluster" / name
        path.write_text(path.read_text().replace("kube-proxy:v1.36.2", "kube-proxy:v1.30.4"))
    proc = gate("--to", "nftables", "--bundle", str(bundle), "-o", "json")
    assert proc.returncode == 1
    assert "alpha" in reasons(json.loads(proc.stdout), "target-supported", "blocking")[0]["message"]


def test_ipvs_target_cannot_be_proven_without_ipvs_evidence_and_warns() -> None:
    """The captures' kernel has no IPVS and no module lists: not proven either way -> exit 3."""
    proc = gate("--to", "ipvs", "--bundle", str(B1), "-o", "junit")
    assert proc.returncode == 3
    root = ET.fromstring(proc.stdout)
    first = root.find("testsuite/testcase")
    assert first is not None and first.get("name") == "verdict" and first.find("error") is not None
    doc = json.loads(gate("--to", "ipvs", "--bundle", str(B1), "-o", "json").stdout)
    assert any("deprecated" in r["message"] for r in reasons(doc, "target-supported", "warning"))
    assert {r["subject"] for r in reasons(doc, "kernel-ready", "unknown")} == {"Node edge-1", "Node edge-2"}


def test_b4_ipvs_node_gets_the_deprecation_timeline() -> None:
    src = from_bundle(str(B4))
    result = run_mode_switch(src.cluster, src.nodes, target="nftables")
    warnings = [r for r in result.condition("target-supported").all_reasons if r.kind == "warning"]
    assert [r.subject for r in warnings] == ["Node edge-1"] and "v1.36 still enables it" in warnings[0].message


@pytest.mark.parametrize("bundle", ["B1-healthy", "B2-stale-endpoint", "B3-backend-split", "B4-ipvs-unavailable"])
def test_every_bundle_has_no_undocumented_difference_to_nftables(bundle: str) -> None:
    src = from_bundle(str(BUNDLES / bundle / "bundle"))
    result = run_mode_switch(src.cluster, src.nodes, target="nftables")
    assert result.condition("semantic-diff").status == "pass"
    assert [c.name for c in result.condition("semantic-diff").cases] == ["Node edge-1", "Node edge-2"]


def test_snapshot_never_passes_and_demo_runs() -> None:
    proc = gate("--to", "nftables", "--snapshot", str(B1 / "cluster"))
    assert proc.returncode == 3, proc.stdout + proc.stderr
    proc = gate("--to", "nftables", "--demo")
    assert proc.returncode in (0, 1, 3) and proc.stdout.startswith("VERDICT: ")


@pytest.mark.parametrize("args", [["--to", "userspace", "--demo"], ["--to", "nftables"],
                                  ["--to", "nftables", "--demo", "--bundle", str(B1)],
                                  ["--to", "nftables", "--demo", "--phase", "post-switch"],
                                  ["--to", "nftables", "--demo", "-o", "yaml"]])
def test_bad_input_exits_2_in_one_line(args: list[str]) -> None:
    proc = gate(*args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_rollout_plan_only_under_a_pass() -> None:
    """PASS (B1 -> nftables): the plan for edge-1's DaemonSet, in order, runnable; edge-2 (already nftables)
    needs nothing. CANNOT PROVE (B1 -> ipvs): withheld, and with --show-plan every command commented out."""
    proc = gate("--to", "nftables", "--bundle", str(B1))
    assert proc.returncode == 0
    plan = proc.stdout[proc.stdout.index("Rollout plan (the gate passed"):]
    steps = [ln.strip() for ln in plan.splitlines() if ln.strip().startswith("$ kubectl")]
    heads = [s.split("   #")[0] for s in steps[:4]]
    assert heads[1].startswith("$ kubectl -n kube-system patch configmap kube-proxy --type merge -p '{\"data\":")
    assert "mode: nftables" in steps[1]  # exact patch: tests/gate/test_gate_mode_configmap_edit.py
    assert heads[:1] + heads[2:] == [
        "$ kubectl -n kube-system get configmap kube-proxy -o yaml > kube-proxy.before-nftables.yaml",
        "$ kubectl -n kube-system rollout restart daemonset kube-proxy",
        "$ kubectl -n kube-system rollout status daemonset kube-proxy --timeout=10m"]
    assert "kube-proxy-nftables" not in plan and "node edge-2" not in plan
    assert "'Using nftables Proxier'" in plan  # the line real kube-proxy v1.36 logs (B1's logs)
    doc = json.loads(gate("--to", "nftables", "--bundle", str(B1), "-o", "json").stdout)
    assert doc["cleanup"]["kind"] == "rollout" and doc["cleanup"]["safe_to_run"] is True

    proc = gate("--to", "ipvs", "--bundle", str(B1))
    assert proc.returncode == 3 and "$ kubectl" not in proc.stdout
    assert "Rollout plan withheld: the gate did not pass. It would edit 2 kube-proxy ConfigMaps" in proc.stdout
    proc = gate("--to", "ipvs", "--bundle", str(B1), "--show-plan")
    assert "NOT SAFE TO RUN: the gate did not pass" in proc.stdout and "$ kubectl" not in proc.stdout
    assert "# kubectl -n kube-system rollout restart daemonset kube-proxy-nftables" in proc.stdout
    doc = json.loads(gate("--to", "ipvs", "--bundle", str(B1), "-o", "json").stdout)
    assert doc["cleanup"]["safe_to_run"] is False
    assert all(c.startswith("# ") for c in doc["cleanup"]["cluster_commands"])
