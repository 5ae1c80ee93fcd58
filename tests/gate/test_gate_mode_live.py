"""The live source of `kpdoctor gate mode-switch` (kpdoctor.gate.mode_live), without a cluster.

What runs for real: the CLI against an API server that is not there (a closed loopback port), and the real
kube-exec collector (`kpdoctor.node.collect`) against that dead API, so the nodes it cannot reach are real
collection failures. The cluster objects come from tests/fixtures/mode-switch/1-iptables (bundles of the lab's
real kube-proxy v1.36.3, see its README) because no API server runs here; the lab test
tests/lab/test_klab_mode_switch_live.py runs the whole live path against real kube-proxy.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kpdoctor.errors import InputError
from kpdoctor.gate.mode_live import check_transport, from_live_nodes
from kpdoctor.gate.mode_switch import run_mode_switch
from kpdoctor.gate.sources import from_bundle

ROOT = Path(__file__).resolve().parents[2]
PRE = ROOT / "tests" / "fixtures" / "mode-switch" / "1-iptables"
KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: dead, context: {cluster: c, user: u}}]
current-context: dead
"""


def gate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kpdoctor", "gate", "mode-switch", *args], capture_output=True,
                          text=True, timeout=120, cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})


def dead_kubeconfig(tmp_path: Path) -> str:
    path = tmp_path / "kubeconfig"
    path.write_text(KUBECONFIG)
    return str(path)


def kube_exec_options(kubeconfig: str) -> Any:
    """Real CollectOptions for --transport kube-exec, built as the command builds them."""
    from kpdoctor.commands.nodeflags import NodeFlags, node_collect_options
    from kpdoctor.commands.optgroups import ApiFlags

    return node_collect_options(NodeFlags("kube-exec", timeout=5.0), ApiFlags(kubeconfig, None))


def test_unreachable_api_exits_3_in_one_line(tmp_path: Path) -> None:
    proc = gate("--to", "nftables", "--transport", "kube-exec", "--kubeconfig", dead_kubeconfig(tmp_path))
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout == "" and "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1 and "cannot reach the API server" in proc.stderr


@pytest.mark.parametrize("args", [
    ["--transport", "local"],  # local needs --node
    ["--transport", "kube-exec", "--node", "n1"],  # --node only with local
    ["--transport", "bundle"],
    [],  # no source at all
    ["--demo", "--transport", "kube-exec"],  # live flags with an offline source
    ["--bundle", str(PRE), "--kubeconfig", "/x"],
])  # fmt: skip
def test_bad_live_flags_exit_2_before_contacting_anything(args: list[str]) -> None:
    proc = gate("--to", "nftables", *args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.startswith("kpdoctor: error:") and "Traceback" not in proc.stderr


def test_check_transport() -> None:
    check_transport("kube-exec", None)
    check_transport("local", "node-a")
    with pytest.raises(InputError):
        check_transport(None, None)


def test_nodes_the_real_collector_cannot_reach_are_cannot_prove_never_pass(tmp_path: Path) -> None:
    bundle = from_bundle(str(PRE))
    assert run_mode_switch(bundle.cluster, bundle.nodes, target="nftables").verdict == "pass"  # the bundle passes
    names = sorted(bundle.nodes)
    assert len(names) == 2
    options = kube_exec_options(dead_kubeconfig(tmp_path))

    from kpdoctor.node.collect import collect_nodes

    def half(chosen: list[str], cluster: Any, opts: Any) -> dict[str, Any]:
        # the first node's real facts (from the bundle); the second through the real kube-exec collector,
        # whose API is not there
        reached = dict(collect_nodes(chosen[1:], cluster=cluster, options=opts))
        return {chosen[0]: bundle.nodes[chosen[0]], **reached}

    live = from_live_nodes(None, None, options, loader=lambda _k, _c: bundle.cluster, collector=half)
    assert not live.nodes[names[1]].reachable and live.nodes[names[0]].reachable
    assert any(f"not reached: {names[1]}" in n for n in live.notes)
    result = run_mode_switch(live.cluster, live.nodes, target="nftables")
    assert result.verdict == "cannot-prove" and result.exit_code == 3
    unknown = {(c.id, r.subject) for c in result.conditions
               for r in (*c.reasons, *(r for case in c.cases for r in case.reasons)) if r.kind == "unknown"}
    assert {s for _c, s in unknown} == {f"Node {names[1]}"}, unknown  # only the node not reached is unknown
    assert ("kernel-ready", f"Node {names[1]}") in unknown

    every = from_live_nodes(None, None, options, loader=lambda _k, _c: bundle.cluster)  # the real collector
    assert all(not s.reachable for s in every.nodes.values()) and sorted(every.nodes) == names
    assert run_mode_switch(every.cluster, every.nodes, target="nftables").exit_code == 3


def test_local_collects_only_the_named_node_and_the_others_cannot_be_proven() -> None:
    from kpdoctor.node.collect import CollectOptions

    bundle = from_bundle(str(PRE))
    names = sorted(bundle.nodes)
    seen: list[list[str]] = []

    def local(chosen: list[str], _cluster: Any, _opts: Any) -> dict[str, Any]:
        seen.append(list(chosen))
        return {n: bundle.nodes[n] for n in chosen}  # stands in for this machine's real facts (the bundle's)

    live = from_live_nodes(None, None, CollectOptions(transport="local"), node=names[0],
                           loader=lambda _k, _c: bundle.cluster, collector=local)  # fmt: skip
    assert seen == [[names[0]]]
    assert any("collected only" in n for n in live.notes)
    assert run_mode_switch(live.cluster, live.nodes, target="nftables").exit_code == 3
    with pytest.raises(InputError, match="not a node that runs kube-proxy"):
        from_live_nodes(None, None, CollectOptions(transport="local"), node="no-such-node",
                        loader=lambda _k, _c: bundle.cluster, collector=local)  # fmt: skip
