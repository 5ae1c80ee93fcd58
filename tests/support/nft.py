"""Helpers for the nftables tests: a throwaway network namespace and the golden normalization.

Normalization of `nft list ruleset` output (documented in docs/perf/nftables.md too) removes
ONLY what kube-proxy randomizes or nft reflows:
  * the order of sets, maps and chains inside a table (kube-proxy creates per-service chains,
    sets and map elements while iterating a Go map: random order);
  * the order of elements inside a named set/map, and how nft wraps them over lines;
  * handles (never printed by `nft list ruleset` without `-a`; stripped if present).
Rules inside a chain keep their order, and every rule's text is compared byte for byte.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from kpdoctor.cluster.snapshot import load_snapshot
from kpdoctor.proxier.context import ProxierInput, build_input

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "kube-proxy-v1.36"
# The apiserver of the golden capture ran with --service-cluster-ip-range=10.96.0.0/16 (its
# "Drop traffic to unallocated ClusterIPs" rule says so); snapshots carry no ServiceCIDR objects.
GOLDEN_SERVICE_CIDRS = ("10.96.0.0/16",)


def nft_scenarios() -> list[Path]:
    return sorted(p for p in GOLDEN.glob("V*") if (p / "nftables" / "nft-ruleset.txt").is_file())


def scenario_inputs(scenario: Path, version: tuple[int, int] = (1, 36)) -> list[ProxierInput]:
    """Both families for the scenario's nftables node, with the stored config switched to mode nftables."""
    cluster = load_snapshot(scenario / "cluster")
    node = next(
        line.split()[1] for line in (scenario / "node.txt").read_text().splitlines() if line.startswith("nftables ")
    )
    found = cluster.proxy_config_for(node)
    assert found is not None
    config = replace(found.config, mode="nftables")
    return [build_input(cluster, node, config=config, family=f, version=version) for f in ("IPv4", "IPv6")]


def normalize(text: str) -> dict[tuple[str, str], list[str]]:
    """(table header, object header) -> its lines; elements sorted and unwrapped."""
    out: dict[tuple[str, str], list[str]] = {}
    table = ""
    current = ("", "")
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = re.sub(r"\s+# handle \d+$", "", lines[i].strip())
        i += 1
        if not line:
            continue
        if line.startswith("table "):
            table = re.sub(r"\s+# handle \d+", "", line)
            current = (table, "")
            out[current] = []
            continue
        if re.match(r"(set|map|chain) ", line):
            current = (table, line)
            out[current] = []
            continue
        if line == "}":
            current = (table, "")
            continue
        if line.startswith("elements = {"):
            buf = line
            while not buf.endswith("}"):
                buf += " " + lines[i].strip()
                i += 1
            items = sorted(e.strip() for e in buf[len("elements = {"):-1].split(","))
            out[current].append("elements = " + " | ".join(items))
            continue
        out[current].append(line)
    return out


def diff_normalized(want: dict[tuple[str, str], list[str]], got: dict[tuple[str, str], list[str]]) -> str:
    lines = []
    for key in sorted(set(want) | set(got)):
        if want.get(key) != got.get(key):
            lines.append(f"{key}:\n  want {want.get(key)}\n  got  {got.get(key)}")
    return "\n".join(lines)


def assert_same_ruleset(want: str, got: str) -> None:
    """Two `nft list ruleset` texts are equal after normalize() (what kube-proxy randomizes); the assertion
    message is the diff."""
    want_n, got_n = normalize(want), normalize(got)
    assert got_n == want_n, diff_normalized(want_n, got_n)


def assert_golden(scenario: Path, listed: str) -> None:
    """`listed` (an `nft list ruleset`) is what real kube-proxy v1.36.2 left for `scenario`, after normalize()."""
    assert_same_ruleset((scenario / "nftables" / "nft-ruleset.txt").read_text(), listed)


@contextlib.contextmanager
def netns() -> Iterator[str]:
    """A fresh, uniquely named network namespace, always deleted."""
    name = "kpd-" + uuid.uuid4().hex[:10]
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)


def nft(ns: str, *args: str, stdin: str | None = None, timeout: float = 120) -> str:
    result = subprocess.run(
        ["ip", "netns", "exec", ns, "nft", *args], input=stdin, text=True, capture_output=True, timeout=timeout
    )
    if result.returncode != 0:
        raise AssertionError(f"nft {' '.join(args)} failed: {result.stderr[:3000]}")
    return result.stdout


def apply_and_list(ruleset: str) -> tuple[str, str]:
    """`nft -f` into a throwaway namespace; return (`nft list ruleset`, `nft -j list ruleset`)."""
    with netns() as ns:
        nft(ns, "-f", "-", stdin=ruleset)
        return nft(ns, "list", "ruleset"), nft(ns, "-j", "list", "ruleset")
