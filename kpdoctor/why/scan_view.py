"""`kpdoctor scan --service NS/NAME`: the scan narrowed to one Service, plus the `why` view of it.

Findings about other Services are left out (node-wide and cluster-wide ones stay: they affect this
Service too); the report gains a "service" key holding the same view `kpdoctor why -o json` prints.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from kpdoctor.engine import NodeSource, ScanResult
from kpdoctor.findings import Finding
from kpdoctor.why.model import Client, Target
from kpdoctor.why.render import to_dict
from kpdoctor.why.run import build

_SERVICE = "Service "


def concerns(finding: Finding, target: Target) -> bool:
    """Whether a finding stays in a scan narrowed to `target` (any finding not about another Service)."""
    if not finding.subject.startswith(_SERVICE):
        return True
    subject = finding.subject[len(_SERVICE):]
    return subject == target.key or subject.startswith(target.key + ":")


def narrow(result: ScanResult, nodes: NodeSource, target: Target, source: str) -> tuple[ScanResult, dict[str, Any]]:
    view = build(result.cluster, nodes, target, Client(), has_api=True, source=source, findings=result.findings)
    kept = [f for f in result.findings if concerns(f, target)]
    with_findings = {f.check_id for f in kept}
    runs = [replace(r, status="passed") if r.status == "findings" and r.check.id not in with_findings else r
            for r in result.runs]
    return replace(result, findings=kept, runs=runs), to_dict(view)
