"""`host-firewall` of the mode-switch gate (--to nftables): what a default-deny host firewall blocks once kube-proxy's
iptables accepts are gone.

`6-forward-drop-iptables` is a real lab capture (kube-proxy v1.36.3, tests/fixtures/mode-switch/README.md) of a node
whose FORWARD policy is DROP; the lab test proved with real TCP that its NodePort stops answering after the switch.
The INPUT-DROP and accept-rule cases edit exactly one line of B1's real dump in a copy, and say so.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from kpdoctor.gate.mode_firewall import host_firewall
from kpdoctor.gate.mode_nodes import nodes_of
from kpdoctor.gate.sources import from_bundle

ROOT = Path(__file__).resolve().parents[2]
FWD = ROOT / "tests" / "fixtures" / "mode-switch" / "6-forward-drop-iptables"
B1 = ROOT / "tests" / "fixtures" / "bundles" / "B1-healthy" / "bundle"


def condition(bundle: Path, target: str = "nftables"):  # type: ignore[no-untyped-def]
    src = from_bundle(str(bundle))
    return host_firewall(src.cluster, nodes_of(src.cluster, src.nodes), target)


def test_forward_drop_blocks_with_the_nodeports_of_this_cluster() -> None:
    cond = condition(FWD)
    assert cond.status == "fail"
    [reason] = cond.all_reasons
    assert reason.subject == "Node kpk-3fa2d5-n0" and "NodePorts 30080/TCP stop answering" in reason.message
    assert reason.commands == ("iptables -I FORWARD -d 10.244.1.0/24 -j ACCEPT   # on kpk-3fa2d5-n0",
                               "iptables -I FORWARD -d 10.244.2.0/24 -j ACCEPT   # on kpk-3fa2d5-n0")
    proc = subprocess.run([sys.executable, "-m", "kpdoctor", "gate", "mode-switch", "--to", "nftables", "--bundle",
                           str(FWD), "-o", "json"], capture_output=True, text=True, timeout=120, cwd=ROOT,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 1 and json.loads(proc.stdout)["verdict"] == "fail"


def test_other_targets_and_accept_policies_pass() -> None:
    assert condition(FWD, "iptables").status == "pass"  # kube-proxy keeps its accepts
    cond = condition(B1)
    assert cond.status == "pass" and any("FORWARD policy ACCEPT" in e for e in cond.evidence)


def _edit(tmp: Path, node: str, old: str, new: str, *, src: Path = B1) -> Path:
    dst = tmp / "bundle"
    shutil.copytree(src, dst)
    for fact in ("iptables-save.txt", "iptables-nft-save.txt"):
        path = dst / "nodes" / node / fact
        text = path.read_text()
        assert old in text
        path.write_text(text.replace(old, new, 1))
    return dst


def test_host_accepting_the_pod_cidr_is_enough(tmp_path: Path) -> None:
    """6-forward-drop-iptables with `-A FORWARD -d 10.244.0.0/16 -j ACCEPT` added before COMMIT of filter."""
    bundle = _edit(tmp_path, "kpk-3fa2d5-n0", "-A FORWARD -m comment --comment \"kubernetes forwarding rules\"",
                   "-A FORWARD -d 10.244.0.0/16 -j ACCEPT\n-A FORWARD -m comment --comment "
                   "\"kubernetes forwarding rules\"", src=FWD)
    cond = condition(bundle)
    assert cond.status == "pass"
    assert any("accepts pod traffic: -A FORWARD -d 10.244.0.0/16 -j ACCEPT" in e for e in cond.evidence)


def test_input_drop_blocks_the_health_check_node_port(tmp_path: Path) -> None:
    """B1 (storefront/gateway: eTP=Local LoadBalancer, healthCheckNodePort 31119) with edge-1's filter INPUT policy
    edited to DROP, as ufw sets it."""
    bundle = _edit(tmp_path, "edge-1", "*filter\n:INPUT ACCEPT [0:0]", "*filter\n:INPUT DROP [0:0]")
    cond = condition(bundle)
    [reason] = cond.all_reasons
    assert reason.subject == "Node edge-1" and "health-check node ports 31119" in reason.message
    bundle2 = _edit(tmp_path / "2", "edge-1", "*filter\n:INPUT ACCEPT [0:0]",
                    "*filter\n:INPUT DROP [0:0]")
    for fact in ("iptables-save.txt", "iptables-nft-save.txt"):  # and the host accepting the NodePort range
        path = bundle2 / "nodes" / "edge-1" / fact
        path.write_text(path.read_text().replace("-A INPUT -j KUBE-FIREWALL",
                                                 "-A INPUT -p tcp -m tcp --dport 30000:32767 -j ACCEPT\n"
                                                 "-A INPUT -j KUBE-FIREWALL", 1))
    assert condition(bundle2).status == "pass"


def test_no_filter_table_collected_cannot_prove(tmp_path: Path) -> None:
    dst = tmp_path / "bundle"
    shutil.copytree(B1, dst)
    for fact in ("iptables-save.txt", "iptables-nft-save.txt", "iptables-legacy-save.txt"):
        (dst / "nodes" / "edge-1" / fact).unlink()
    cond = condition(dst)
    assert cond.status == "unknown" and cond.all_reasons[0].subject == "Node edge-1"
