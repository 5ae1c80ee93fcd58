"""layout.GroupView: what a finding group says (cause, evidence, fix, commands not under its cause), computed
once from the report and read by the console, Markdown, HTML and JUnit renderers, on the real bundles."""

from __future__ import annotations

from html import escape

import pytest

from kpdoctor.report import render
from kpdoctor.report.layout import AFTER_CAUSE, group_view, passed_checks
from tests.support.report import bundle_report


@pytest.mark.parametrize("scenario", ["B2-stale-endpoint", "B3-backend-split", "B4-ipvs-unavailable"])
def test_views_agree_with_the_report_and_every_renderer_shows_them(scenario: str) -> None:
    report = bundle_report(scenario)
    groups = [g for c in report["checks"] for g in c["groups"]]
    assert groups, scenario  # these bundles have findings
    html, junit = render("html", report), render("junit", report)
    for g in groups:
        view = group_view(report, g)
        rem = g.get("remediation")
        assert view.remedy == (rem["text"] if rem else None)
        assert view.fix.endswith(view.remedy or "") and view.fix.startswith(AFTER_CAUSE if view.outranks else "")
        listed = rem["commands"] if rem else []
        assert view.commands == [c for c in listed if c in view.commands]  # a subsequence, in order
        assert len(view.commands) + view.covered == len(listed)
        assert [line for _scope, line in view.evidence] == [e for o in g["occurrences"] for e in o["evidence"]]
        assert view.occurrences == len(g["occurrences"]) and 1 <= view.scopes <= view.occurrences
        if view.remedy:
            assert f"remediation: {view.fix}" in junit
        for line in view.evidence_lines():
            assert escape(line) in html, line  # inside <pre class="evidence">, escaped
    assert passed_checks(report) == [c["id"] for c in report["checks"] if c["status"] == "passed"]
    assert all(f"{cid}" in html for cid in passed_checks(report))


def test_several_occurrences_prefix_their_scope() -> None:
    """No fixture bundle has a group seen on several nodes, so this group is hand-made (said so): the same
    fault on two nodes, as report.model.group_findings writes it."""
    occurrence = {"subject": "Service default/web:http/TCP", "evidence": ["KUBE-SEP-X -> 10.0.0.9"]}
    group = {"id": "g1", "severity": "error", "subject": "Service default/web:http/TCP", "nodes": ["a", "b"],
             "occurrences": [{**occurrence, "scope": "a"}, {**occurrence, "scope": "b"}],
             "remediation": {"text": "Restart kube-proxy.", "commands": ["kubectl -n kube-system delete pod x"]}}
    view = group_view({"causes": []}, group)
    assert view.evidence_lines() == ["a: KUBE-SEP-X -> 10.0.0.9", "b: KUBE-SEP-X -> 10.0.0.9"]
    assert (view.scopes, view.occurrences, view.cause, view.fix) == (2, 2, "", "Restart kube-proxy.")
    assert (view.commands, view.covered) == (["kubectl -n kube-system delete pod x"], 0)
