"""The report model: a scan result as the versioned JSON document every renderer is derived from.

The JSON (format `kpdoctor-report/v1`, schema `docs/report-schema.json`) is the
source of truth; console, JUnit, Markdown and HTML all render this dict, so
they can never disagree with it and a saved JSON report can be re-rendered.

Findings are grouped by check, then by subject. The same fault on 40 nodes is
one group listing its 40 nodes: a node-scope finding's node name is
normalised out of its subject and message before grouping, while every
occurrence keeps its own evidence and its own (real-name) remediation commands.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kpdoctor import __version__
from kpdoctor.engine import SCAN_CHECK_ID, SCAN_CHECK_TITLE, ScanResult
from kpdoctor.findings import Finding, Severity
from kpdoctor.gcpause import gc_paused
from kpdoctor.report.causes import attach_causes

REPORT_FORMAT = "kpdoctor-report/v1"
SEVERITIES = [s.label for s in sorted(Severity, reverse=True)]  # critical, error, warning, info
_TOKEN = "\x00node\x00"


@dataclass(frozen=True)
class SourceInfo:
    kind: str  # live | snapshot | bundle | demo
    location: str
    transport: str = "none"


@functools.lru_cache(maxsize=4096)
def _node_pattern(node: str) -> re.Pattern[str]:
    return re.compile(r"(?<![\w.-])" + re.escape(node) + r"(?![\w-]|\.\w)")


def _normalize(text: str, node: str | None) -> str:
    return _node_pattern(node).sub(_TOKEN, text) if node and node in text else text


def _remediation(f: Finding) -> dict[str, Any] | None:
    if f.remediation is None:
        return None
    return {"text": f.remediation.text, "commands": list(f.remediation.commands)}


def _occurrence(f: Finding) -> dict[str, Any]:
    return {
        "scope": f.scope,
        "subject": f.subject,
        "message": f.message,
        "evidence": list(f.evidence),
        "remediation": _remediation(f),
        "silenced_reason": f.silenced_reason,
        "labels": dict(f.labels),
    }


def group_findings(findings: list[Finding]) -> list[dict[str, Any]]:
    """Group one check's findings by (severity, subject, message) with node names normalised out."""
    groups: dict[tuple[Any, ...], list[Finding]] = {}
    for f in findings:
        node = f.scope if f.scope != "cluster" else None
        key = (
            int(f.severity),
            f.not_evaluated,
            bool(f.silenced_reason),
            _normalize(f.subject, node),
            _normalize(f.message, node),
        )
        groups.setdefault(key, []).append(f)
    out: list[dict[str, Any]] = []
    for (_sev, not_evaluated, silenced, subject_n, message_n), members in groups.items():
        first = members[0]
        subjects = {m.subject for m in members}
        messages = {m.message for m in members}
        nodes = sorted({m.scope for m in members if m.scope != "cluster"})
        commands: list[str] = []
        for m in members:
            if m.remediation is not None:
                commands += [c for c in m.remediation.commands if c not in commands]
        texts = {m.remediation.text for m in members if m.remediation is not None}
        remediation = None
        if first.remediation is not None or commands:
            text = first.remediation.text if first.remediation is not None else ""
            if len(texts) > 1:
                text = _normalize(text, first.scope if first.scope != "cluster" else None).replace(_TOKEN, "<node>")
            remediation = {"text": text, "commands": commands}
        out.append({
            "severity": first.severity.label,
            "subject": first.subject if len(subjects) == 1 else subject_n.replace(_TOKEN, "*"),
            "message": first.message if len(messages) == 1 else message_n.replace(_TOKEN, "<node>"),
            "scope": "cluster" if not nodes else "node",
            "nodes": nodes,
            "count": len(members),
            "not_evaluated": not_evaluated,
            "silenced": silenced,
            "silenced_reason": first.silenced_reason,
            "evidence": list(first.evidence),
            "remediation": remediation,
            "docs": first.docs,
            "occurrences": [_occurrence(m) for m in members],
        })
    out.sort(key=lambda g: (g["silenced"], -Severity.parse(g["severity"]), g["subject"], g["message"]))
    return out


@gc_paused()  # 1,000 nodes' findings: ~1M dicts and lists, no cycles (kpdoctor/gcpause.py)
def build_report(
    result: ScanResult,
    *,
    source: SourceInfo,
    fail_on: Severity | None,
    exit_code: int,
    origins: Mapping[str, str] | None = None,
    generated_at: dt.datetime | None = None,
) -> dict[str, Any]:
    by_check: dict[str, list[Finding]] = {}
    for f in result.findings:
        by_check.setdefault(f.check_id, []).append(f)
    checks: list[dict[str, Any]] = []
    for run in result.runs:
        c = run.check
        checks.append({
            "id": c.id,
            "title": c.title,
            "scope": c.scope,
            "severity": c.severity.label,
            "tags": list(c.tags),
            "docs": c.docs_url(),
            "origin": (origins or {}).get(c.id, ""),
            "status": run.status,
            "duration_ms": round(run.duration * 1000, 3),
            "evaluated_on": run.evaluated,
            "groups": group_findings(by_check.pop(c.id, [])),
        })
    scan_findings = by_check.pop(SCAN_CHECK_ID, [])
    if scan_findings:
        checks.insert(0, {
            "id": SCAN_CHECK_ID, "title": SCAN_CHECK_TITLE, "scope": "cluster", "severity": "error",
            "tags": ["scan"], "docs": "", "origin": "kpdoctor", "status": "findings", "duration_ms": 0.0,
            "evaluated_on": [], "groups": group_findings(scan_findings),
        })
    for check_id, stray in sorted(by_check.items()):  # findings of checks not in the run list (defensive)
        checks.append({
            "id": check_id, "title": check_id, "scope": "cluster", "severity": stray[0].severity.label,
            "tags": [], "docs": stray[0].docs, "origin": "", "status": "findings", "duration_ms": 0.0,
            "evaluated_on": [], "groups": group_findings(stray),
        })
    counts = {s: 0 for s in SEVERITIES}
    silenced = not_evaluated = 0
    for f in result.findings:
        if f.silenced_reason:
            silenced += 1
        elif f.not_evaluated:
            not_evaluated += 1
        if not f.silenced_reason:
            counts[f.severity.label] += 1
    reachable = sum(1 for n in result.nodes if n.reachable)
    when = generated_at or dt.datetime.now(dt.UTC)
    report = {
        "format": REPORT_FORMAT,
        "kpdoctor_version": __version__,
        "generated_at": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "source": {"kind": source.kind, "location": source.location, "transport": source.transport},
        "fail_on": fail_on.label if fail_on is not None else None,
        "exit_code": exit_code,
        "summary": {
            "checks_run": len(result.runs),
            "findings": counts,
            "silenced": silenced,
            "not_evaluated": not_evaluated,
            "groups": sum(len(c["groups"]) for c in checks),
            "nodes_total": len(result.nodes),
            "nodes_reachable": reachable,
            "duration_ms": round(result.duration * 1000, 3),
        },
        "options": result.options.report(),
        "nodes": [
            {"name": n.name, "transport": n.transport, "address": n.address, "reachable": n.reachable,
             "error": n.error, **({"services_by": result.service_proxies[n.name]}
                                  if n.name in result.service_proxies else {})}
            for n in result.nodes
        ],
        "gaps": [{"kind": g.kind, "reason": g.reason} for g in result.cluster.gaps],
        "checks": checks,
        "silences": [
            {"check": s.check, "node": s.node, "namespace": s.namespace, "service": s.service, "reason": s.reason,
             "where": s.where, "expires": s.expires.isoformat() if s.expires else None, "expired": s.expired,
             "used": s.used}
            for s in result.silences.silences
        ],
    }
    attach_causes(report, result.cluster)  # one root cause, one headline (kpdoctor/report/causes.py)
    return report


def failing(report: Mapping[str, Any], fail_on: str | None) -> list[dict[str, Any]]:
    """Groups at/above `fail_on` that are not silenced (what makes the exit code 1)."""
    if fail_on is None:
        return []
    limit = Severity.parse(fail_on)
    return [g for c in report["checks"] for g in c["groups"]
            if not g["silenced"] and Severity.parse(g["severity"]) >= limit]
