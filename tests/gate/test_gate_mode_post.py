"""`kpdoctor gate mode-switch --phase post-switch --baseline FILE` on real captures of a real mode switch.

`tests/fixtures/mode-switch/` are bundles of the lab's real kube-proxy v1.36.3 switched iptables -> nftables ->
iptables (and to IPVS, which crashes on this kernel) — see its README. B1 and B4 are the real kube-proxy
v1.36.2 captures of tests/fixtures/bundles. Zero false passes: each single way a switch can be incomplete
gets its own test, and must exit 1 or 3, never 0. Where a test needs a shape the captures lack, it copies a
bundle and edits exactly that one value, and says so.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SWITCH = ROOT / "tests" / "fixtures" / "mode-switch"
BUNDLES = ROOT / "tests" / "fixtures" / "bundles"
N0, N1 = "kpk-71f1d6-n0", "kpk-71f1d6-n1"


def gate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kpdoctor", "gate", "mode-switch", *args], capture_output=True,
                          text=True, timeout=180, cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})


def baseline(tmp: Path, bundle: Path, to: str) -> str:
    path = tmp / f"baseline-{to}.json"
    proc = gate("--to", to, "--bundle", str(bundle), "--write-baseline", str(path))
    assert proc.returncode in (0, 1, 3) and path.is_file(), proc.stdout + proc.stderr
    return str(path)


def post(bundle: Path, to: str, base: str) -> tuple[int, dict[str, Any]]:
    proc = gate("--to", to, "--bundle", str(bundle), "--phase", "post-switch", "--baseline", base, "-o", "json")
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def reasons(doc: dict[str, Any], cid: str, kind: str) -> list[dict[str, Any]]:
    cond = next(c for c in doc["conditions"] if c["id"] == cid)
    return [r for r in cond["reasons"] + [r for c in cond["cases"] for r in c["reasons"]] if r["kind"] == kind]


def failing(doc: dict[str, Any]) -> dict[str, str]:
    return {c["id"]: c["status"] for c in doc["conditions"] if c["status"] != "pass"}


def copy(tmp: Path, name: str, src: Path | None = None) -> Path:
    dst = tmp / name
    shutil.copytree(src or SWITCH / name, dst)
    return dst


@pytest.fixture(scope="module")
def to_nft(tmp_path_factory: pytest.TempPathFactory) -> str:
    return baseline(tmp_path_factory.mktemp("base"), SWITCH / "1-iptables", "nftables")


def test_complete_switch_passes_verdict_first(to_nft: str) -> None:
    proc = gate("--to", "nftables", "--bundle", str(SWITCH / "3-nftables"), "--phase", "post-switch",
                "--baseline", to_nft)
    assert proc.returncode == 0, proc.stdout
    assert proc.stdout.startswith("VERDICT: PASS: kube-proxy switched to nftables mode on every node")
    code, doc = post(SWITCH / "3-nftables", "nftables", to_nft)
    assert code == 0 and list(doc)[:3] == ["verdict", "headline", "exit_code"] and doc["phase"] == "post-switch"
    # the documented difference (localhost NodePorts) is a warning per node, not a finding
    assert {r["subject"] for r in reasons(doc, "baseline-unchanged", "warning")
            if "127.0.0.1" in r["message"]} == {f"Node {N0}", f"Node {N1}"}
    # what real kube-proxy left: its localnet guard and route_localnet=1 (warning, with the order to remove them)
    guard = reasons(doc, "old-mode-gone", "warning")
    assert len(guard) == 2 and "KUBE-FIREWALL" in guard[0]["message"]
    assert "route_localnet=0" in guard[0]["commands"][0]


def test_switch_back_to_iptables_passes(tmp_path: Path) -> None:
    base = baseline(tmp_path, SWITCH / "3-nftables", "iptables")
    code, doc = post(SWITCH / "4-iptables", "iptables", base)
    assert code == 0, failing(doc)
    assert reasons(doc, "old-mode-gone", "blocking") == [] == reasons(doc, "old-mode-gone", "warning")


def test_one_node_still_on_the_old_mode(to_nft: str) -> None:
    """Real: the ConfigMap says nftables, only n0's kube-proxy was restarted."""
    code, doc = post(SWITCH / "2-half-nftables", "nftables", to_nft)
    assert code == 1
    stuck = reasons(doc, "reports-target", "blocking")
    assert [r["subject"] for r in stuck] == [f"Node {N1}"] and "still runs iptables" in stuck[0]["message"]
    assert {r["subject"] for r in reasons(doc, "old-mode-gone", "blocking")} == {f"Node {N1}"}
    assert failing(doc) == {"reports-target": "fail", "target-rules": "fail", "old-mode-gone": "fail",
                            "baseline-unchanged": "fail"}


def test_leftovers_alone_block(tmp_path: Path, to_nft: str) -> None:
    """3-nftables with n0's iptables dumps replaced by its dumps from 1-iptables (hand-combined: the old mode's
    chains beside the new rules, as when kube-proxy's cleanup did not run)."""
    bundle = copy(tmp_path, "3-nftables")
    for fact in ("iptables-nft-save.txt", "iptables-save.txt", "ip6tables-save.txt"):
        shutil.copy(SWITCH / "1-iptables" / "nodes" / N0 / fact, bundle / "nodes" / N0 / fact)
    code, doc = post(bundle, "nftables", to_nft)
    assert code == 1 and failing(doc) == {"old-mode-gone": "fail"}
    left = reasons(doc, "old-mode-gone", "blocking")
    assert {r["subject"] for r in left} == {f"Node {N0}"}
    assert any(r["message"].startswith("left by the old iptables mode: iptables-nft: ") and "KUBE-SERVICES" in
               r["message"] for r in left), left
    commands = [c for r in left for c in r["commands"]]
    assert commands and not any("--cleanup" in c for c in commands)  # it would remove the new mode's rules too


def test_configmap_not_switched_alone_blocks(tmp_path: Path, to_nft: str) -> None:
    """3-nftables with the ConfigMap's mode edited back to iptables (both kube-proxies run nftables, but the
    DaemonSet's next restart would bring iptables back)."""
    bundle = copy(tmp_path, "3-nftables")
    path = bundle / "cluster" / "configmaps.json"
    doc_cm = json.loads(path.read_text())
    item = next(i for i in doc_cm["items"] if i["metadata"]["name"] == "kube-proxy")
    assert "mode: nftables" in item["data"]["config.conf"]
    item["data"]["config.conf"] = item["data"]["config.conf"].replace("mode: nftables", "mode: iptables")
    path.write_text(json.dumps(doc_cm))
    code, doc = post(bundle, "nftables", to_nft)
    assert code == 1 and failing(doc) == {"configured-target": "fail"}
    assert "DaemonSet kube-system/kube-proxy configures mode 'iptables'" in \
        reasons(doc, "configured-target", "blocking")[0]["message"]


def test_second_daemonset_not_switched_b1(tmp_path: Path) -> None:
    """B1 (real): DaemonSet kube-proxy-nftables runs edge-2 in nftables mode, DaemonSet kube-proxy (edge-1) was
    never switched."""
    b1 = BUNDLES / "B1-healthy" / "bundle"
    base = baseline(tmp_path, b1, "nftables")
    code, doc = post(b1, "nftables", base)
    assert code == 1
    blocked = reasons(doc, "configured-target", "blocking")
    assert [r["subject"] for r in blocked] == ["Node edge-1"]
    assert "DaemonSet kube-system/kube-proxy " in blocked[0]["message"]
    for cid in ("reports-target", "target-rules", "old-mode-gone", "baseline-unchanged"):
        assert not [r for r in reasons(doc, cid, "blocking") if r["subject"] == "Node edge-2"], cid


def test_crash_loop_on_the_new_mode_b4(tmp_path: Path) -> None:
    """B4 (real): ConfigMap says ipvs, kube-proxy on edge-1 exits on every start (CrashLoopBackOff, no
    /proxyMode). The baseline comes from a copy of B4 whose ConfigMap says iptables (the state before)."""
    before = copy(tmp_path, "b4-before", BUNDLES / "B4-ipvs-unavailable" / "bundle")
    path = before / "cluster" / "configmaps.json"
    path.write_text(path.read_text().replace("mode: ipvs", "mode: iptables"))
    base = baseline(tmp_path, before, "ipvs")
    code, doc = post(BUNDLES / "B4-ipvs-unavailable" / "bundle", "ipvs", base)
    assert code == 1
    edge1 = [r for r in reasons(doc, "reports-target", "blocking") if r["subject"] == "Node edge-1"]
    assert edge1 and "is not running (CrashLoopBackOff" in edge1[0]["message"]


def test_crash_on_the_new_mode_in_the_lab(tmp_path: Path) -> None:
    """5-ipvs-crashed (real): n0's kube-proxy exited in IPVS mode; the lab's Pod status still says Running (no
    kubelet), so the only sign is the missing /proxyMode: cannot prove, never a pass."""
    base = baseline(tmp_path, SWITCH / "4-iptables", "ipvs")
    code, doc = post(SWITCH / "5-ipvs-crashed", "ipvs", base)
    assert code in (1, 3)
    n0 = [r for r in reasons(doc, "reports-target", "unknown") if r["subject"] == f"Node {N0}"]
    assert n0 and "no /proxyMode" in n0[0]["message"]


def _pod_status(bundle: Path, node: str, status: dict[str, Any]) -> None:
    path = bundle / "cluster" / "pods.json"
    doc = json.loads(path.read_text())
    pod = next(p for p in doc["items"] if p["spec"].get("nodeName") == node
               and p["metadata"]["name"].startswith("kube-proxy"))
    pod["status"]["containerStatuses"][0].update(status)
    path.write_text(json.dumps(doc))


def test_crash_loop_status_alone_blocks(tmp_path: Path, to_nft: str) -> None:
    """3-nftables with n0's kube-proxy container status edited to CrashLoopBackOff (the lab has no kubelet)."""
    bundle = copy(tmp_path, "3-nftables")
    _pod_status(bundle, N0, {"restartCount": 5, "ready": False,
                             "state": {"waiting": {"reason": "CrashLoopBackOff"}}})
    code, doc = post(bundle, "nftables", to_nft)
    assert code == 1 and failing(doc) == {"reports-target": "fail"}


def test_restarts_cannot_be_proven_stable(tmp_path: Path, to_nft: str) -> None:
    """3-nftables with n0's kube-proxy restartCount edited to 3 (running)."""
    bundle = copy(tmp_path, "3-nftables")
    _pod_status(bundle, N0, {"restartCount": 3})
    code, doc = post(bundle, "nftables", to_nft)
    assert code == 3 and failing(doc) == {"reports-target": "unknown"}


def test_no_proxymode_is_unknown_and_the_log_line_proves_it(tmp_path: Path, to_nft: str) -> None:
    """3-nftables without n0's kube-proxy/proxyMode.txt: cannot prove (3); with kube-proxy's log line (the
    line real kube-proxy v1.36 logs, B1's edge-2 log) it is proven again."""
    bundle = copy(tmp_path, "3-nftables")
    (bundle / "nodes" / N0 / "kube-proxy" / "proxyMode.txt").unlink()
    code, doc = post(bundle, "nftables", to_nft)
    assert code == 3 and failing(doc) == {"reports-target": "unknown"}
    b1_log = next((BUNDLES / "B1-healthy" / "bundle" / "cluster" / "logs" / "kube-system").glob("kube-proxy-nft*"))
    line = next(ln for ln in b1_log.read_text().splitlines() if "Using nftables Proxier" in ln)
    (bundle / "nodes" / N0 / "kube-proxy" / "log.txt").write_text(line + "\n")
    code, doc = post(bundle, "nftables", to_nft)
    assert code == 0, failing(doc)


def test_rules_that_differ_from_the_reference_block(tmp_path: Path, to_nft: str) -> None:
    """3-nftables with one endpoint address in n0's nft ruleset edited (a hand-made stale DNAT)."""
    bundle = copy(tmp_path, "3-nftables")
    path = bundle / "nodes" / N0 / "nft-ruleset.json"
    text = path.read_text()
    assert text.count('["10.244.1.10", 8080]') == 2  # the DNAT maps of lab/web and lab/api
    path.write_text(text.replace('["10.244.1.10", 8080]', '["10.244.1.99", 8080]'))
    code, doc = post(bundle, "nftables", to_nft)
    assert code == 1
    assert {r["subject"] for r in reasons(doc, "target-rules", "blocking")} == {f"Node {N0}"}
    assert reasons(doc, "baseline-unchanged", "blocking")


@pytest.mark.parametrize("args, message", [
    (["--phase", "post-switch"], "needs --baseline FILE"),
    (["--write-baseline", "/tmp/x.json", "--phase", "post-switch", "--baseline", "/tmp/x.json"], "--write-baseline"),
    (["--baseline", "/tmp/x.json"], "--baseline goes with --phase post-switch"),
])
def test_cli_misuse_exits_2(args: list[str], message: str) -> None:
    proc = gate("--to", "nftables", "--bundle", str(SWITCH / "3-nftables"), *args)
    assert proc.returncode == 2 and message in proc.stderr and proc.stdout == ""
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_baseline_for_another_target_exits_2(to_nft: str) -> None:
    proc = gate("--to", "iptables", "--bundle", str(SWITCH / "4-iptables"), "--phase", "post-switch",
                "--baseline", to_nft)
    assert proc.returncode == 2 and "written for --to nftables" in proc.stderr


def test_legacy_leftovers_block(tmp_path: Path) -> None:
    """Real: kube-proxy v1.36.3 moved from iptables-legacy to nftables left all 17 legacy KUBE-* chains."""
    base = baseline(tmp_path, SWITCH / "7-legacy-iptables", "nftables")
    code, doc = post(SWITCH / "8-legacy-to-nftables", "nftables", base)
    assert code == 1 and failing(doc) == {"old-mode-gone": "fail"}
    [left] = reasons(doc, "old-mode-gone", "blocking")
    assert left["message"].startswith("left by the old iptables mode: iptables-legacy: 17 KUBE-* chains")
    assert left["commands"][0] == "iptables-legacy-save > /root/iptables-legacy-save-before-cleanup.txt"
    assert "iptables-legacy-save | grep -v KUBE | iptables-legacy-restore" in left["commands"][1]
