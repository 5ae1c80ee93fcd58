"""Reports for the renderer tests: the real bundles scanned, plus one with hostile names (a hand-made check,
said so: its subjects are the hostile strings a real cluster may carry in names, labels and node output)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from kpdoctor.checks_api import Check, CheckContext
from kpdoctor.engine import run_checks
from kpdoctor.findings import Finding, Severity
from kpdoctor.report.model import SourceInfo, build_report
from kpdoctor.scanner import ScanRequest, load_bundle, scan

BUNDLES = Path(__file__).resolve().parents[1] / "fixtures" / "bundles"
HOSTILE = '<img src=x onerror="document.title=\'pwned\'">'
LONG_COMMAND = ("iptables-save -t nat | grep -E '" + "|".join(f"10.244.{i}.{i}" for i in range(60)) + "'   # on edge-1")


def bundle_report(scenario: str) -> dict[str, Any]:
    return scan(ScanRequest(bundle=str(BUNDLES / scenario / "bundle"))).report


def _hostile_findings(check: Check, ctx: CheckContext) -> Iterable[Finding]:
    yield check.finding(ctx, f"Service default/{HOSTILE}:http/TCP", f"name {HOSTILE} and </pre></div><script>"
                        "document.title='pwned'</script>", severity=Severity.WARNING,
                        evidence=[f"label app={HOSTILE}", "x" * 400], commands=[LONG_COMMAND])
    yield check.finding(ctx, "Node edge-9", "an info finding", severity=Severity.INFO)


def hostile_report() -> dict[str, Any]:
    cluster, nodes = load_bundle(BUNDLES / "B2-stale-endpoint" / "bundle")
    from tests.support.checks import all_checks, hand_made_check

    hostile = hand_made_check("T-HOSTILE", _hostile_findings, title="Hostile names reach every renderer escaped",
                              tags=("test",))
    result = run_checks([*all_checks(), hostile()], cluster, nodes)
    return build_report(result, source=SourceInfo("bundle", f"B2 {HOSTILE}", "bundle"), fail_on=Severity.ERROR,
                        exit_code=1)


__all__ = ["HOSTILE", "LONG_COMMAND", "bundle_report", "hostile_report"]
