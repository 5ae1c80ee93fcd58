"""Evidence counts add up: "nat: 30 (A, B, 3 more, 8 KUBE-SVC-*, 14 KUBE-SEP-*)" lists exactly 30 chains.
Real data: bundle B3 (kube-proxy v1.36.2's rules in both iptables backends, see its README)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.support.cli import kpd

ROOT = Path(__file__).resolve().parents[2]
B3 = ROOT / "tests" / "fixtures" / "bundles" / "B3-backend-split" / "bundle"


def test_backend_split_chain_counts_add_up() -> None:
    proc = kpd("scan", "--bundle", str(B3), "-o", "json")
    report = json.loads(proc.stdout)
    split = next(c for c in report["checks"] if c["id"] == "KP-BACKEND-SPLIT")
    lines = [e for g in split["groups"] for e in g["evidence"] if "kube-proxy chains per table" in e]
    assert len(lines) >= 2
    tables = 0
    for line in lines:
        for table, count, items in re.findall(r"(\w+): (\d+) \(([^)]*)\)", line.split(" - ", 1)[1]):
            listed = 0
            for item in items.split(", "):
                counted = re.fullmatch(r"(\d+) (?:more|KUBE-[A-Z]+-\*)", item)
                listed += int(counted.group(1)) if counted else 1
            assert listed == int(count), (table, count, items)
            tables += 1
    assert tables >= 6
