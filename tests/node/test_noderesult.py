"""kpdoctor.noderesult on the demo bundle (real kube-proxy v1.36.2 nodes with planted faults): the node
checks run node by node, each node's result is encoded to JSON and decoded again, merged with a run of the
cluster checks, and the report equals the one of checking every node centrally."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from kpdoctor.engine import ListNodes, run_checks
from kpdoctor.errors import InputError
from kpdoctor.findings import Finding, Severity
from kpdoctor.noderesult import FORMAT, decode, encode, merge
from kpdoctor.registry import discover
from kpdoctor.report.model import SourceInfo, build_report
from kpdoctor.scanner import DEMO_BUNDLE, open_bundle

WHEN = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _timeless(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _timeless(v) for k, v in value.items() if k != "duration_ms"}
    if isinstance(value, list):
        return [_timeless(v) for v in value]
    return value


def test_merged_node_results_equal_the_central_scan() -> None:
    reg = discover()
    checks = reg.select()
    cluster, source = open_bundle(DEMO_BUNDLE)
    names = list(source.names())
    assert len(names) >= 2
    whole = run_checks(checks, cluster, node_source=source)
    node_checks = [c for c in checks if c.scope == "node"]
    docs = []
    for name in names:  # what each node's collector sends: JSON text
        alone = run_checks(node_checks, cluster, nodes=[source.load(name)])
        docs.append(json.loads(json.dumps(encode(alone, name))))
    central = run_checks([c for c in checks if c.scope == "cluster"], cluster, node_source=source)
    merged = merge(checks, central, [decode(d, f"node result {i}") for i, d in enumerate(docs)])
    info = SourceInfo("demo", str(DEMO_BUNDLE), "bundle")
    want = build_report(whole, source=info, fail_on=None, exit_code=0, generated_at=WHEN)
    got = build_report(merged, source=info, fail_on=None, exit_code=0, generated_at=WHEN)
    assert sum(len(c["groups"]) for c in want["checks"]) > 0, "the demo's planted faults gave no finding"
    assert _timeless(got) == _timeless(want)


@pytest.mark.parametrize("doc, message", [
    ([], "expected an object"),
    ({"format": "other"}, "not a kpdoctor-node-result/v1"),
    ({"format": FORMAT, "node": {"name": "cluster"}}, "not a node name"),
    ({"format": FORMAT, "node": {"name": "n1"}, "findings": [{"check": "X", "severity": "fatal"}]}, "severity"),
    ({"format": FORMAT, "node": {"name": "n1"}, "findings": [{"check": "X", "severity": "error", "subject": "s",
      "message": "m" * 70000}]}, "longer than"),
    ({"format": FORMAT, "node": {"name": "n1"}, "runs": [{"check": "X", "duration_s": "slow"}]}, "duration_s"),
    ({"format": FORMAT, "node": {"name": "n1"}, "findings": ["x"]}, "findings[0]: expected an object"),
    ({"format": FORMAT, "node": {"name": "n1"}, "findings": [{"check": "X", "severity": 3}]}, "findings[0].severity"),
    ({"format": FORMAT, "node": {"name": "n1"}, "findings": [{"check": "X", "severity": "info", "subject": "s",
      "message": "m", "evidence": ["a", 7]}]}, "findings[0].evidence"),
    ({"format": FORMAT, "node": {"name": "n1"}, "findings": [{"check": "X", "severity": "info", "subject": "s",
      "message": "m", "evidence": ["e"] * 300}]}, "findings[0].evidence"),
    ({"format": FORMAT, "node": {"name": "n1"}, "findings": [{"check": "X", "severity": "info", "subject": "s",
      "message": "m", "remediation": {"text": "t", "commands": "rm -rf /"}}]}, "findings[0].remediation.commands"),
    ({"format": FORMAT, "node": {"name": "n1"}, "findings": [{"check": "X", "severity": "info", "subject": "s",
      "message": "m", "labels": [["k", 1]]}]}, "findings[0].labels"),
    ({"format": FORMAT, "node": {"name": "n1"}, "findings": [{"check": "X", "severity": "info", "subject": "s",
      "message": "m", "not_evaluated": "yes"}]}, "findings[0].not_evaluated"),
    ({"format": FORMAT, "node": {"name": "n1"}, "findings": [{"check": None, "severity": "info", "subject": "s",
      "message": "m"}]}, "findings[0].check"),
])  # fmt: skip
def test_hostile_documents_are_one_line_input_errors(doc: Any, message: str) -> None:
    with pytest.raises(InputError) as err:
        decode(doc, "pod kpdoctor-n1")
    assert message in str(err.value) and err.value.where == "pod kpdoctor-n1"


def test_unreachable_node_result_keeps_its_finding() -> None:
    reg = discover()
    node_checks = [c for c in reg.select() if c.scope == "node"]
    cluster, source = open_bundle(DEMO_BUNDLE)
    from kpdoctor.node.state import NodeState

    down = NodeState(name="gone-1", transport="pod", error="collector pod timed out")
    doc = encode(run_checks(node_checks, cluster, node_source=ListNodes([down])), "gone-1")
    central = run_checks([c for c in reg.select() if c.scope == "cluster"], cluster, nodes=[])
    merged = merge(reg.select(), central, [decode(json.loads(json.dumps(doc)), "gone-1")])
    assert [n.name for n in merged.nodes] == ["gone-1"] and not merged.nodes[0].reachable
    assert any(f.scope == "gone-1" and f.not_evaluated and "timed out" in f.evidence[0] for f in merged.findings)
    assert {r.status for r in merged.runs if r.check.scope == "node"} == {"not_evaluated"}


def test_compact_results_count_what_they_leave_out() -> None:
    reg = discover()
    checks = reg.select()
    cluster, source = open_bundle(DEMO_BUNDLE)
    names = list(source.names())
    whole = run_checks(checks, cluster, node_source=source)
    node_checks = [c for c in checks if c.scope == "node"]
    results = [decode(json.loads(json.dumps(encode(run_checks(node_checks, cluster, nodes=[source.load(n)]), n,
                                                   min_severity=Severity.WARNING))), n) for n in names]  # fmt: skip
    central = run_checks([c for c in checks if c.scope == "cluster"], cluster, node_source=source)
    merged = merge(checks, central, results)

    def key(f: Finding) -> tuple[Any, ...]:
        return (f.check_id, f.scope, f.subject, f.message, f.severity, f.not_evaluated)

    node_scope = [f for f in whole.findings if f.scope != "cluster"]
    dropped = [f for f in node_scope if f.severity < Severity.WARNING and not f.not_evaluated]
    assert dropped, "the demo has no informational node finding: this test would show nothing"
    assert sorted(map(key, merged.findings)) == sorted(key(f) for f in whole.findings if f not in dropped)
    assert merged.options.node_findings_omitted == len(dropped)


def test_decode_keeps_repeated_values_once_and_accepts_what_severity_parse_accepts() -> None:
    def doc(node: str) -> dict[str, Any]:
        return json.loads(json.dumps({"format": FORMAT, "node": {"name": node}, "findings": [
            {"check": "KP-X", "severity": " Warning", "subject": f"Node {node}", "message": f"m on {node}",
             "evidence": ["same line"], "docs": "file:///docs/KP-X.md", "labels": [["service", "a/b"]],
             "remediation": {"text": "do this", "commands": ["kubectl get nodes"]}}]}))

    from kpdoctor.noderesult import Interner

    strings = Interner()
    one, two = (decode(doc(n), n, strings).findings[0] for n in ("n1", "n2"))
    assert one.severity is Severity.WARNING and one.labels == (("service", "a/b"),)
    assert one.remediation is two.remediation and one.evidence is two.evidence and one.docs is two.docs
    assert one.message == "m on n1" and two.message == "m on n2" and two.scope == "n2"
    alone = decode(doc("n3"), "n3").findings[0]  # without a shared Interner: the same values
    assert (alone.remediation, alone.evidence, alone.docs) == (one.remediation, one.evidence, one.docs)


def test_a_label_may_be_longer_than_a_text_field_but_is_bounded() -> None:
    from kpdoctor.noderesult import MAX_LABEL, MAX_TEXT

    def doc(value: str) -> dict[str, Any]:
        return {"format": FORMAT, "node": {"name": "n1"}, "findings": [
            {"check": "KP-X", "severity": "info", "subject": "s", "message": "m", "labels": [["services", value]]}]}

    long = json.dumps([f"ns/svc-{i}:http/TCP" for i in range(MAX_TEXT // 10)])  # > MAX_TEXT characters
    assert MAX_TEXT < len(long) < MAX_LABEL
    assert decode(doc(long), "n1").findings[0].labels == (("services", long),)
    with pytest.raises(InputError) as err:
        decode(doc("x" * (MAX_LABEL + 1)), "pod kpdoctor-n1")
    assert "findings[0].labels" in str(err.value)
