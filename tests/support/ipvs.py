"""Shared inputs of the IPVS/ipset tests: golden scenario V2 (node kpnode1) in IPVS mode and its samples."""

from __future__ import annotations

from pathlib import Path

from kpdoctor.cluster.config import load_config_file
from kpdoctor.cluster.snapshot import load_snapshot
from kpdoctor.proxier.context import ProxierInput, build_input

_TESTS = Path(__file__).resolve().parents[1]
SAMPLES = _TESTS / "fixtures" / "ipvs" / "v2-kpnode1"
DRIFT = _TESTS / "fixtures" / "ipvs" / "drift"


def v2_input() -> ProxierInput:
    """The reference proxier's input for golden scenario V2, node kpnode1, mode ipvs."""
    scenario = _TESTS / "fixtures" / "kube-proxy-v1.36" / "V2-nodeport-lb"
    cluster = load_snapshot(scenario / "cluster")
    return build_input(cluster, "kpnode1", config=load_config_file(str(scenario / "kube-proxy-config.yaml")), mode="ipvs")


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")
