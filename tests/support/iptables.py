"""Helpers for the iptables tests: golden scenarios, a throwaway netns, and a kernel round trip.

The comparison normalization is `kpdoctor.dataplane.iptables_save.normalize` (documented there
and in docs/perf/iptables.md): it drops header comments and counters, sorts tables, and sorts
ONLY the per-service rules of the chains kube-proxy fills in Go map order.
"""

from __future__ import annotations

import contextlib
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

from kpdoctor.cluster.snapshot import load_snapshot
from kpdoctor.proxier.context import ProxierInput, build_input

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "kube-proxy-v1.36"
NFACCT_COUNTERS = ("ct_state_invalid_dropped_pkts", "localhost_nps_accepted_pkts")


def iptables_scenarios() -> list[Path]:
    return sorted(p for p in GOLDEN.glob("V*") if (p / "iptables" / "iptables-save.txt").is_file())


def node_for(scenario: Path, mode: str) -> str:
    """The node `node.txt` says ran `mode` (iptables / nftables / iptables-legacy)."""
    for line in (scenario / "node.txt").read_text().splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == mode:
            return parts[1]
    raise LookupError(f"{scenario.name}: no {mode} node in node.txt")


def scenario_input(scenario: Path, family: str = "IPv4", mode: str = "iptables") -> ProxierInput:
    """The scenario's cluster for its `mode` node, with the stored config and mode iptables.

    The run-configs differ from the stored one only in hostnameOverride, bind addresses and
    mode (see each scenario's README), none of which change rules, so the stored config is used.
    """
    cluster = load_snapshot(scenario / "cluster")
    return build_input(cluster, node_for(scenario, mode), mode="iptables", family=family)


@contextlib.contextmanager
def netns() -> Iterator[str]:
    """A fresh network namespace with kube-proxy's nfacct counters; deleted even on failure."""
    name = f"kpd-ipt-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
    try:
        for counter in NFACCT_COUNTERS:
            subprocess.run(["ip", "netns", "exec", name, "nfacct", "add", counter], check=True, capture_output=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)


def tool(family: str, legacy: bool, kind: str) -> str:
    """e.g. ("IPv6", False, "restore") -> "ip6tables-nft-restore"."""
    base = "ip6tables" if family == "IPv6" else "iptables"
    return f"{base}-{'legacy' if legacy else 'nft'}-{kind}"


def kernel_round_trip(ruleset: str, *, family: str = "IPv4", legacy: bool = False) -> str:
    """Restore `ruleset` into a fresh namespace and return what iptables-save prints there."""
    with netns() as ns:
        restore = subprocess.run(["ip", "netns", "exec", ns, tool(family, legacy, "restore")], input=ruleset,
                                 capture_output=True, text=True, timeout=120)
        assert restore.returncode == 0, f"{tool(family, legacy, 'restore')} failed: {restore.stderr}"
        save = subprocess.run(["ip", "netns", "exec", ns, tool(family, legacy, "save")], capture_output=True,
                              text=True, timeout=120, check=True)
        return save.stdout
