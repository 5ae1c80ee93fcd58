"""`kpdoctor.withhold`: a scan never prints a runnable command that removes what serves Services on a node.

Real captures (tests/fixtures/bundles) through the real engine; the Cilium agent files are the hand-built
shapes of tests/fixtures/cilium (Cilium cannot run here, see tests/support/gate.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kpdoctor.cluster.state import ClusterState
from kpdoctor.destructive import is_destructive
from kpdoctor.engine import run_checks
from kpdoctor.findings import Finding
from kpdoctor.node.state import NodeState
from kpdoctor.withhold import IPT_NFT, IPVS, LEGACY, NFT, OBJECTS, Serving, targets
from tests.support.checks import all_checks, not_answering, without_kube_proxy
from tests.support.gate import BUNDLES, build_bundle, load


@pytest.mark.parametrize(("command", "default", "expected"), [
    ("kubectl -n kube-system delete daemonset kube-proxy", "", {OBJECTS}),
    ("iptables-save | grep -v KUBE | iptables-restore   # on edge-1", "nf_tables", {IPT_NFT}),
    ("iptables-save | grep -v KUBE | iptables-restore", "legacy", {LEGACY}),
    ("iptables-save | grep -v KUBE | iptables-restore", "", {LEGACY, IPT_NFT}),
    ("for t in nat filter mangle; do iptables-legacy -t $t -F; iptables-legacy -t $t -X; done", "nf_tables",
     {LEGACY}),
    ("nft delete table ip kube-proxy   # on edge-1", "", {NFT}),
    ("ipvsadm --clear   # on edge-1", "", {IPVS}),
    ("iptables-save > /root/iptables-before-cleanup.txt   # on edge-1", "", set()),
    ("# kubectl -n kube-system delete daemonset kube-proxy", "", set()),
])
def test_targets(command: str, default: str, expected: set[str]) -> None:
    assert targets(command, default) == expected


def test_unknown_mode_withholds_everything_a_proven_replacement_nothing() -> None:
    cmd = "nft delete table ip kube-proxy"
    assert Serving("n", False, None, "").unsafe(cmd)
    assert not Serving("n", True, frozenset(), "").unsafe(cmd)
    assert not Serving("n", False, frozenset({IPT_NFT}), "").unsafe(cmd)  # nftables leftovers on an iptables node
    assert Serving("n", False, frozenset({NFT}), "").unsafe(cmd)
    assert Serving("n", False, frozenset({IPT_NFT}), "").unsafe("kube-proxy --cleanup")


def _scan(cluster: ClusterState, nodes: dict[str, NodeState]) -> list[Finding]:
    return run_checks(all_checks(), cluster, list(nodes.values())).findings


def _commands(findings: list[Finding], check_id: str) -> list[str]:
    return [c for f in findings if f.check_id == check_id and f.remediation for c in f.remediation.commands]


def test_frozen_rules_with_nothing_else_serving_are_not_flushed() -> None:
    """kube-proxy deleted, no replacement: its frozen rules are the only thing serving Services on the nodes."""
    cluster, nodes = load(BUNDLES / "B1-healthy" / "bundle")
    findings = _scan(without_kube_proxy(cluster), not_answering(nodes))
    cmds = _commands(findings, "KP-LEFTOVER-RULES")
    assert cmds and not [c for c in cmds if is_destructive(c)]
    assert any(c.startswith("# ") and "grep -v KUBE" in c for c in cmds)
    assert any(c.startswith("iptables-save > /root/") for c in cmds)  # the harmless backup stays runnable
    left = [f for f in findings if f.check_id == "KP-LEFTOVER-RULES"]
    assert all(f.remediation and "NOT SAFE TO RUN now" in f.remediation.text for f in left)
    assert all(("withheld", "2") in f.labels for f in left)


def test_with_a_proven_replacement_the_leftovers_are_removable(tmp_path: Path) -> None:
    cluster, nodes = load(build_bundle(tmp_path, version="1.18"))
    findings = _scan(without_kube_proxy(cluster), not_answering(nodes))
    cmds = _commands(findings, "KP-LEFTOVER-RULES")
    assert "iptables-save | grep -v KUBE | iptables-restore" in [c.split("#")[0].strip() for c in cmds]


def test_backend_split_stale_copy_stays_removable() -> None:
    """B3: the nft copy is maintained, the legacy copy is not what serves Services: its flush is printed."""
    cluster, nodes = load(BUNDLES / "B3-backend-split" / "bundle")
    cmds = _commands(_scan(cluster, nodes), "KP-BACKEND-SPLIT")
    assert any(c.startswith("for t in nat filter mangle; do iptables-legacy -t $t -F") for c in cmds)


def test_kube_proxy_objects_deleted_only_when_the_replacement_is_proven(tmp_path: Path) -> None:
    cluster, nodes = load(build_bundle(tmp_path / "a", version="1.18"))
    cmds = _commands(_scan(cluster, nodes), "KP-CILIUM-KPR")
    assert "kubectl -n kube-system delete daemonset kube-proxy" in cmds
    bundle = build_bundle(tmp_path / "b", version="1.18")
    status = bundle / "nodes" / "edge-2" / "cilium" / "status.json"
    doc = json.loads(status.read_text())
    doc["kube-proxy-replacement"]["mode"] = "False"
    status.write_text(json.dumps(doc))
    cluster, nodes = load(bundle)
    cmds = _commands(_scan(cluster, nodes), "KP-CILIUM-KPR")
    assert "# kubectl -n kube-system delete daemonset kube-proxy" in cmds
    assert not [c for c in cmds if is_destructive(c)]
