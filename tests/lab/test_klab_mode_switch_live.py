"""`kpdoctor gate mode-switch` on the live API of the lab's real kube-apiserver and real kube-proxy v1.36.3, the
node's facts collected with `--transport local` run inside the node's network namespace (the lab's nodes have no
kubelet here, so kube-exec is not what reaches them; tests/lab/test_klab_kubelet.py covers kube-exec).

Measured: on the same lab state the live pre-switch gives the same verdict and conditions as the pre-switch on a
bundle `kpdoctor collect` took inside the node; the live post-switch fails before the switch and passes only
after the node's kube-proxy really switched (the plan's `kubectl patch` of the ConfigMap run as printed, with the
real kubectl); on a two-node lab, the node not collected is "cannot prove".
Root only (network namespaces, netfilter); skipped with the reason otherwise, and CI runs it as root.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from kpdoctor.lab import k8sbuild, kcluster
from kpdoctor.lab.kcluster import ClusterState
from tests.support.klab import admin_api, apply_workload, kpdoctor, lab_cluster, wait_for_rules

pytestmark = pytest.mark.root("etcd", "nft", "curl")
VERSION = "1.36"
NODE_PORT = 30080


def live_gate(state: ClusterState, node: str, *args: str) -> tuple[int, dict[str, Any], str]:
    netns = next(n.netns for n in state.nodes if n.name == node)
    proc = kpdoctor("gate", "mode-switch", "--kubeconfig", state.kubeconfig, "--transport", "local", "--node", node,
                    *args, "-o", "json", netns=netns)  # fmt: skip
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    try:
        return proc.returncode, json.loads(proc.stdout), proc.stderr
    except ValueError:
        raise AssertionError(f"exit {proc.returncode}: {proc.stdout[-800:]} {proc.stderr[-800:]}") from None


def bundle_gate(bundle: Path, *args: str) -> tuple[int, dict[str, Any]]:
    proc = kpdoctor("gate", "mode-switch", "--bundle", str(bundle), *args, "-o", "json")
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    return proc.returncode, json.loads(proc.stdout)


def collect(state: ClusterState, node: str, dest: Path) -> Path:
    netns = next(n.netns for n in state.nodes if n.name == node)
    proc = kpdoctor("collect", "--kubeconfig", state.kubeconfig, "--node", node, "--transport", "local",
                    "-f", str(dest), netns=netns)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-1000:] + proc.stderr[-1000:]
    return dest


def conditions(doc: dict[str, Any]) -> list[tuple[str, str, list[tuple[str, str, str]]]]:
    """(id, status, [(kind, subject, message)] of the condition and its cases): what the verdict rests on."""
    out = []
    for cond in doc["conditions"]:
        reasons = cond["reasons"] + [r for case in cond["cases"] for r in case["reasons"]]
        out.append((cond["id"], cond["status"], sorted((r["kind"], r["subject"], r["message"]) for r in reasons)))
    return out


def test_live_pre_switch_equals_bundle_and_post_switch_passes_only_once_switched(tmp_path: Path) -> None:
    with lab_cluster(tmp_path, version=VERSION, nodes=1, mode="iptables") as state:
        apply_workload(state, node_port=NODE_PORT, with_api=False)
        (n0,) = state.nodes
        base = str(tmp_path / "baseline.json")
        code, live, _ = live_gate(state, n0.name, "--to", "nftables", "--write-baseline", base)
        bundle = collect(state, n0.name, tmp_path / "pre")
        bcode, offline = bundle_gate(bundle, "--to", "nftables")
        assert (code, live["verdict"]) == (bcode, offline["verdict"]) == (0, "pass"), (live, offline)
        assert conditions(live) == conditions(offline)
        assert live["source"].startswith("live ") and any("--transport local" in n for n in live["notes"])

        # post-switch before the switch: kube-proxy still runs iptables, so it fails
        code, doc, _ = live_gate(state, n0.name, "--to", "nftables", "--phase", "post-switch", "--baseline", base)
        assert code == 1, doc
        stuck = [r for c in doc["conditions"] if c["id"] == "reports-target"
                 for r in c["reasons"] + [r for case in c["cases"] for r in case["reasons"]]]
        assert any("still runs iptables" in r["message"] for r in stuck), stuck

        # the plan's ConfigMap edit, run as printed with the real kubectl against the lab's API server
        patch = next(c for c in live["cleanup"]["cluster_commands"] if " patch configmap " in c)
        before = admin_api(state).get("ConfigMap", "kube-proxy", "kube-system")["data"]
        # the lab's own kubectl (built with the control plane; a CI machine has no other) first on PATH
        kubectl = k8sbuild.cached(k8sbuild.resolve_release(k8sbuild.CONTROL_PLANE_RELEASE), "kubectl")
        assert kubectl is not None, "kubectl is built with the lab's control plane (python3 -m kpdoctor.lab.k8sbuild)"
        path = f"{Path(kubectl).parent}:{os.environ.get('PATH', '')}"
        ran = subprocess.run(["bash", "-c", patch], capture_output=True, text=True, timeout=60, check=False,
                             env={**os.environ, "KUBECONFIG": state.kubeconfig, "PATH": path})  # fmt: skip
        assert ran.returncode == 0, ran.stderr
        after = admin_api(state).get("ConfigMap", "kube-proxy", "kube-system")["data"]
        assert set(after) == set(before)
        assert yaml.safe_load(after["config.conf"]) == {**yaml.safe_load(before["config.conf"]), "mode": "nftables"}
        kcluster.restart_kube_proxy(state, n0.name, mode="nftables")  # the DaemonSet's restart (no kubelet here)
        state.mode = "nftables"  # wait_for_rules reads the rules of the state's mode
        wait_for_rules(state, "lab/web/tcp/http")
        code, doc, _ = live_gate(state, n0.name, "--to", "nftables", "--phase", "post-switch", "--baseline", base)
        assert code == 0, json.dumps(doc["conditions"], indent=1)[-3000:]
        assert doc["verdict"] == "pass"


def test_a_node_not_collected_is_cannot_prove(tmp_path: Path) -> None:
    with lab_cluster(tmp_path, version=VERSION, nodes=2, mode="iptables") as state:
        apply_workload(state, node_port=NODE_PORT, with_api=False)
        n0, n1 = state.nodes
        code, doc, _ = live_gate(state, n0.name, "--to", "nftables")
        assert code == 3 and doc["verdict"] == "cannot-prove", doc
        unknown = {r["subject"] for c in doc["conditions"]
                   for r in c["reasons"] + [r for case in c["cases"] for r in case["reasons"]] if r["kind"] == "unknown"}
        assert unknown == {f"Node {n1.name}"}, unknown
