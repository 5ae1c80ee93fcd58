"""The report: grouping, the versioned JSON schema, and the JUnit / HTML / Markdown / console renderers.

The cluster is the real B1-healthy capture (kube-apiserver v1.36.2 objects); the
checks here are test-only ones that produce known findings, so the assertions
are about the report, independent of the built-in checks.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from html.parser import HTMLParser
from pathlib import Path
from types import MappingProxyType

import jsonschema
import pytest

from kpdoctor.checks_api import Check, CheckContext
from kpdoctor.cluster.model import ResourceGap
from kpdoctor.engine import SCAN_CHECK_ID, run_checks
from kpdoctor.findings import Finding, Severity
from kpdoctor.node.state import Fact, NodeState
from kpdoctor.report import render
from kpdoctor.report.model import SourceInfo, build_report
from kpdoctor.scanner import load_bundle
from kpdoctor.silences import parse_silences
from tests.support.checks import hand_made_check

REPO = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((REPO / "docs" / "report-schema.json").read_text())
B1 = Path(__file__).resolve().parents[1] / "fixtures" / "bundles" / "B1-healthy" / "bundle"


def _forwarding_off(check: Check, ctx: CheckContext) -> Iterable[Finding]:
    """Fires on every node whose sysctl.txt says ip_forward = 0 (node name in subject, message, command)."""
    assert ctx.node is not None
    text = ctx.node.text("sysctl.txt") or ""
    if "net.ipv4.ip_forward = 0" in text:
        yield check.finding(ctx, f"Node {ctx.node.name}", f"{ctx.node.name} does not forward IPv4 packets",
                            evidence=[f"sysctl.txt: net.ipv4.ip_forward = 0 (node {ctx.node.name})"],
                            commands=[f"ssh {ctx.node.name} sudo sysctl -w net.ipv4.ip_forward=1"])


def _per_service(check: Check, ctx: CheckContext) -> Iterable[Finding]:
    for svc in ctx.cluster.services:
        if svc.namespace == "storefront":
            yield check.finding(ctx, f"Service {svc.namespace}/{svc.name}", f"{svc.name} noticed",
                                severity=Severity.INFO if svc.name != "gateway" else Severity.WARNING,
                                commands=[f"kubectl -n {svc.namespace} get endpointslices "
                                          f"-l kubernetes.io/service-name={svc.name}"])


def _boom(check: Check, ctx: CheckContext) -> Iterable[Finding]:
    raise KeyError("spec")


def _no_slices(check: Check, ctx: CheckContext) -> Iterable[Finding]:
    if not ctx.cluster.endpoint_slices:
        yield check.finding(ctx, "Cluster", "no endpoint slices")


ForwardingOff = hand_made_check("T-FORWARD", _forwarding_off, scope="node", severity=Severity.ERROR,
                                title="IP forwarding", remediation="Enable forwarding.")
PerService = hand_made_check("T-SVC", _per_service, title="Services")
Boom = hand_made_check("T-BOOM", _boom, severity=Severity.INFO, title="Crashes")
NeedsSlices = hand_made_check("T-SLICES", _no_slices, severity=Severity.ERROR, title="Reads EndpointSlices")
Quiet = hand_made_check("T-QUIET", scope="node", severity=Severity.CRITICAL, title="Never fires")


def _nodes(count: int, forward_off: bool = True) -> list[NodeState]:
    value = "0" if forward_off else "1"
    return [
        NodeState(name=f"pool-a-{i:02d}", transport="bundle", facts=MappingProxyType({
            "sysctl.txt": Fact("sysctl.txt", f"net.ipv4.ip_forward = {value}\n", source="sysctl")}))
        for i in range(count)
    ]


def _full_report(fail_on: Severity = Severity.ERROR) -> dict:
    cluster, _ = load_bundle(B1)
    from dataclasses import replace

    cluster = replace(cluster, gaps=(ResourceGap("endpointslices", "403 Forbidden: cannot list"),))
    nodes = _nodes(40) + [NodeState(name="dead-1", transport="ssh", address="10.9.9.9", error="timed out after 5s")]
    silences = parse_silences("silences:\n  - check: T-SVC\n    service: storefront/catalog\n"
                              "    reason: catalog owned by team X\n", ".kpdoctor.yaml")
    checks = [ForwardingOff(), PerService(), Boom(), NeedsSlices(), Quiet()]
    result = run_checks(checks, cluster, nodes, silences=silences)
    return build_report(result, source=SourceInfo("bundle", str(B1), "bundle"), fail_on=fail_on, exit_code=1)


def test_same_fault_on_40_nodes_is_one_group_with_40_nodes() -> None:
    report = _full_report()
    check = next(c for c in report["checks"] if c["id"] == "T-FORWARD")
    assert len(check["groups"]) == 1
    group = check["groups"][0]
    assert group["count"] == 40 and len(group["nodes"]) == 40 and group["nodes"][0] == "pool-a-00"
    assert group["subject"] == "Node *"
    assert group["message"] == "<node> does not forward IPv4 packets"
    # every occurrence keeps its real node name, and the group's commands name each real node
    assert group["occurrences"][7]["message"] == "pool-a-07 does not forward IPv4 packets"
    assert len(group["remediation"]["commands"]) == 40
    assert "ssh pool-a-39 sudo sysctl -w net.ipv4.ip_forward=1" in group["remediation"]["commands"]


def test_json_validates_against_published_schema() -> None:
    report = _full_report()
    text = render("json", report)
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    jsonschema.validate(json.loads(text), SCHEMA)
    # the features this report exercises are all present
    by_id = {c["id"]: c for c in report["checks"]}
    assert by_id["T-BOOM"]["status"] == "error"
    assert by_id["T-SLICES"]["status"] == "not_evaluated"
    assert by_id["T-QUIET"]["status"] == "passed"
    assert by_id[SCAN_CHECK_ID]["groups"][0]["nodes"] == ["dead-1"]
    assert report["summary"]["silenced"] == 1
    assert report["gaps"] == [{"kind": "endpointslices", "reason": "403 Forbidden: cannot list"}]


def test_schema_rejects_a_broken_report() -> None:
    report = _full_report()
    report["checks"][0]["groups"][0]["severity"] = "fatal"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(report, SCHEMA)


def test_junit_parses_with_right_counts() -> None:
    report = _full_report(Severity.WARNING)
    root = ET.fromstring(render("junit", report))
    cases = root.findall(".//testcase")
    groups = sum(max(1, len(c["groups"])) for c in report["checks"])
    assert int(root.get("tests")) == len(cases) == groups
    failures = root.findall(".//testcase/failure")
    errors = root.findall(".//testcase/error")
    skipped = root.findall(".//testcase/skipped")
    assert int(root.get("failures")) == len(failures)
    assert int(root.get("errors")) == len(errors) == 1  # T-BOOM
    assert int(root.get("skipped")) == len(skipped)
    # failing at warning: T-FORWARD (error, 40 nodes, 1 group), T-SVC gateway (warning);
    # the silenced catalog and the info-level Services are not failures
    failed = {(c.get("classname"), c.get("name").split(" on ")[0]) for c in cases if c.find("failure") is not None}
    assert failed == {("T-FORWARD", "Node *"), ("T-SVC", "Service storefront/gateway")}
    fwd = next(c for c in cases if c.get("classname") == "T-FORWARD").find("failure")
    assert "ssh pool-a-00 sudo sysctl -w net.ipv4.ip_forward=1" in fwd.text  # the remediation travels with it
    assert any("silenced: catalog owned by team X" in (s.get("message") or "") for s in skipped)
    for suite in root.findall("testsuite"):
        assert int(suite.get("tests")) == len(suite.findall("testcase"))


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.open: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.append((tag, dict(attrs)))


def test_html_is_one_self_contained_file(tmp_path: Path) -> None:
    html = render("html", _full_report())
    parser = _Collect()
    parser.feed(html)
    names = [t for t, _ in parser.tags]
    assert names.count("style") == 1 and "script" not in names and "link" not in names
    assert "img" not in names and "iframe" not in names
    assert not any("src" in attrs for _, attrs in parser.tags)
    assert "url(" not in html and "@import" not in html
    hrefs = [a["href"] for t, a in parser.tags if t == "a"]
    assert all(h.startswith("https://") for h in hrefs)  # only hyperlinks to docs, never loaded assets
    assert "ssh pool-a-12 sudo sysctl -w net.ipv4.ip_forward=1" in html
    assert html.rstrip().endswith("</html>")


def test_markdown_and_console_carry_groups_evidence_and_commands() -> None:
    report = _full_report()
    md = render("markdown", report)
    assert "## T-FORWARD: IP forwarding" in md and "on 40 nodes: pool-a-00" in md and "node(s)" not in md
    assert "kubectl -n storefront get endpointslices -l kubernetes.io/service-name=gateway" in md
    con = render("console", report, width=200)
    assert "T-FORWARD" in con and "on 40 nodes" in con
    assert "silenced: catalog owned by team X (.kpdoctor.yaml:2)" in con
    assert "check T-BOOM failed: KeyError: 'spec'" in con
    assert "not evaluated: forbidden: cannot read endpointslices" in con
    assert "could not be reached over ssh" in con
    assert "\x1b[" not in con  # no colour codes unless asked


def test_remediation_commands_have_real_names_not_placeholders() -> None:
    report = _full_report()
    placeholder = re.compile(r"<[A-Za-z_ -]+>|\{[A-Za-z_]+\}|\$\{|NODE_NAME|SERVICE_NAME")
    commands = [cmd for c in report["checks"] for g in c["groups"] if g["remediation"]
                for cmd in g["remediation"]["commands"]]
    assert commands
    for cmd in commands:
        assert not placeholder.search(cmd), cmd
