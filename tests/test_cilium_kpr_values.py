"""One classification of Cilium's `kube-proxy-replacement` values (kpdoctor.cilium.KPR_VALUES) and one
definition of "the agent on this node proves it replaces kube-proxy" (kpdoctor.cilium.proves_replacement),
read by KP-CILIUM-KPR, the removal gate and the remediation withholding (kpdoctor.withhold).

The agent documents are the hand-built shapes of tests/fixtures/cilium/ (see its README), on the real B1
capture (tests/gate_helpers.build_bundle).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

import kpdoctor.checks.cilium_kpr as cilium_check
from kpdoctor import cilium, withhold
from kpdoctor.checks_api import CheckContext
from kpdoctor.gate.context import GateContext
from tests.support.gate import build_bundle, edit_pods, load, set_fact


def test_the_classification_table() -> None:
    # Cilium 1.14 reduced the values to true/false; strict/partial/probe/disabled are the pre-1.14 ones
    assert {v for v, c in cilium.KPR_VALUES.items() if c.replaces} == {"true", "strict"}
    assert {v for v, c in cilium.KPR_VALUES.items() if c.legacy} == {"strict", "partial", "probe", "disabled"}
    assert {v for v, c in cilium.KPR_VALUES.items() if c.relies_on_kube_proxy} == {"partial", "probe"}
    # the derived sets are the ones the gate and the check used before they were derived
    assert {"strict"} == cilium.KPR_LEGACY_ACCEPTED
    assert {"false", "partial", "probe", "disabled"} == cilium.KPR_FAILING
    assert cilium.KPR_LEGACY_MIGRATION["strict"] == "true" and cilium.KPR_LEGACY_MIGRATION["disabled"] == "false"


@pytest.mark.parametrize(("raw", "value"), [
    ("true", "true"), (" True ", "true"), ("STRICT", "strict"), ("probe", "probe"), ("false", "false"),
    (None, None), ("", None), ("yes", None), ("hybrid", None),
])
def test_classify_kpr(raw: str | None, value: str | None) -> None:
    found = cilium.classify_kpr(raw)
    assert (found.value if found is not None else None) == value


def test_the_check_reads_the_same_table() -> None:
    assert cilium_check.LEGACY is cilium.KPR_LEGACY_MIGRATION


def test_config_kpr_enabled_follows_the_table() -> None:
    for value, meaning in cilium.KPR_VALUES.items():
        cfg = replace(_config(), kpr_raw=value.upper())
        assert cfg.kpr_enabled == meaning.replaces


def _config() -> cilium.CiliumConfig:
    return cilium.CiliumConfig(None, "", "", None, None, None, None, None, None, None, None, None, None, None,
                               None, "")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_bundle(tmp_path_factory.mktemp("kpr"), version="1.18")


def test_agent_proof_on_the_shapes(bundle: Path) -> None:
    cluster, nodes = load(bundle)
    for name in ("edge-1", "edge-2"):
        status, error = cilium.read_agent_status(name, nodes[name])
        assert status is not None and error == ""
        pods = [p for p in cluster.cilium_pods if p.node_name == name]
        assert cilium.proves_replacement(status, cilium.agent_ready(pods))
        assert not cilium.proves_replacement(status, False)
    assert cilium.read_agent_status("edge-1", replace(nodes["edge-1"], error="ssh: timeout")) == (
        None, "node not reachable: ssh: timeout")
    broken = set_fact(nodes, "edge-2", cilium.STATUS_FACT, "{not json")
    status, error = cilium.read_agent_status("edge-2", broken["edge-2"])
    assert status is None and error.startswith(f"{cilium.STATUS_FACT} not recognised: not JSON")


@pytest.mark.parametrize("change", ["none", "agent-not-ready", "status-missing", "unknown-version"])
def test_gate_and_withholding_agree(bundle: Path, change: str) -> None:
    """The removal gate's proof and the withholding of kube-proxy commands are the same answer per node."""
    cluster, nodes = load(bundle)
    if change == "agent-not-ready":
        cluster = edit_pods(cluster, lambda p: replace(p, ready=False) if p.node_name == "edge-2" else p)
    elif change == "status-missing":
        nodes = set_fact(nodes, "edge-2", cilium.STATUS_FACT, None)
    elif change == "unknown-version":
        v113 = Path(__file__).parent / "fixtures" / "cilium" / "v1.13" / "status-edge-1.json"
        nodes = set_fact(nodes, "edge-2", cilium.STATUS_FACT, v113.read_text())
    gate = GateContext(cluster, nodes)
    ctx = CheckContext(cluster=cluster, nodes=nodes)
    for name in ("edge-1", "edge-2"):
        expected = change == "none" or name == "edge-1"
        assert gate.proven_kpr(name) is expected
        assert withhold._proven_replacement(ctx, [name]) is expected
    assert withhold._proven_replacement(ctx, ["edge-1", "edge-2"]) is (change == "none")
