"""JUnit XML: one testcase per check x subject, so CI systems show kpdoctor like a test run.

A group at/above `--fail-on` is a <failure> whose text carries the evidence
and the remediation commands; below the threshold it passes with its message
in <system-out>; silenced and not-evaluated groups are <skipped> with why;
a check that crashed is an <error>; a check with no findings is one passing
testcase named after the check.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import Any

from kpdoctor.findings import Severity
from kpdoctor.report.layout import group_view, ordered_checks


def _case_name(group: Mapping[str, Any]) -> str:
    nodes = group["nodes"]
    if not nodes:
        return str(group["subject"])
    shown = ", ".join(nodes[:5]) + (f" (+{len(nodes) - 5} more)" if len(nodes) > 5 else "")
    return f"{group['subject']} on {shown}"


def _body(report: Mapping[str, Any], group: Mapping[str, Any]) -> str:
    lines = [group["message"], ""]
    view = group_view(report, group)
    if view.cause:
        lines += [f"cause: {view.cause}", ""]
    if group["nodes"]:
        lines.append("nodes: " + ", ".join(group["nodes"]))
    lines += [f"evidence[{scope}]: {line}" for scope, line in view.evidence]
    rem = group.get("remediation")
    if rem:  # JUnit is read alone (a CI test case): every command, also those listed under the cause
        lines += ["", "remediation: " + view.fix]
        lines += [f"  $ {c}" for c in rem["commands"]]
    if group.get("docs"):
        lines += ["", "docs: " + group["docs"]]
    return "\n".join(lines)


def render_junit(report: Mapping[str, Any]) -> str:
    fail_on = report.get("fail_on")
    limit = Severity.parse(fail_on) if fail_on else None
    src = report["source"]
    suites = ET.Element("testsuites", name=f"kpdoctor scan of {src['kind']} {src['location']}")
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    # checks with findings in the report's order (kpdoctor.report.layout), then the ones without
    order = [*ordered_checks(report), *(c for c in report["checks"] if not c["groups"])]
    for check in order:
        suite = ET.SubElement(suites, "testsuite", name=f"{check['id']}: {check['title']}")
        counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
        groups = check["groups"]
        if not groups:
            case = ET.SubElement(suite, "testcase", classname=check["id"], name=f"{check['id']}: no findings",
                                 time=f"{check['duration_ms'] / 1000:.3f}")
            counts["tests"] += 1
            if check["status"] == "not_evaluated":
                ET.SubElement(case, "skipped", message="not evaluated (no reachable node)")
                counts["skipped"] += 1
        for group in groups:
            case = ET.SubElement(suite, "testcase", classname=check["id"], name=_case_name(group), time="0")
            counts["tests"] += 1
            title = f"[{group['severity']}] {group['message']}"
            if group["silenced"]:
                ET.SubElement(case, "skipped", message=f"silenced: {group['silenced_reason']}")
                counts["skipped"] += 1
            elif group["message"].startswith(f"check {check['id']} failed:"):
                el = ET.SubElement(case, "error", message=title, type="check-error")
                el.text = _body(report, group)
                counts["errors"] += 1
            elif group["not_evaluated"]:
                ET.SubElement(case, "skipped", message=title)
                counts["skipped"] += 1
            elif limit is not None and Severity.parse(group["severity"]) >= limit:
                el = ET.SubElement(case, "failure", message=title, type=group["severity"])
                el.text = _body(report, group)
                counts["failures"] += 1
            else:
                out = ET.SubElement(case, "system-out")
                out.text = _body(report, group)
        for key, value in counts.items():
            suite.set(key, str(value))
            totals[key] += value
    for key, value in totals.items():
        suites.set(key, str(value))
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"
