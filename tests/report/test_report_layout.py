"""Issue 13 item 3: one report, five renderings that agree (kpdoctor/report/layout.py).

The same groups, in the same order (severity, then cause), in console, Markdown, HTML and JUnit, and the
same set in JSON; the summary first; --min-severity; headings without redundancy; commands never wrapped.
"""

from __future__ import annotations

import html
import json
import re
import xml.etree.ElementTree as ET
from typing import Any

import pytest

from kpdoctor.report import render
from kpdoctor.report.layout import ordered_checks
from tests.support.report import HOSTILE, LONG_COMMAND, bundle_report, hostile_report

Row = tuple[str, str, str]  # (severity, check id, subject)
_SEV = r"(CRITICAL|ERROR|WARNING|INFO)"


def expected(report: dict[str, Any]) -> list[Row]:
    return [(g["severity"], c["id"], g["subject"]) for c in ordered_checks(report) for g in c["groups"]]


def from_json(text: str) -> set[Row]:
    doc = json.loads(text)
    return {(g["severity"], c["id"], g["subject"]) for c in doc["checks"] for g in c["groups"]}


def from_console(text: str, subjects: set[str]) -> list[Row]:
    rows, check = [], ""
    for line in text.splitlines():
        rule = re.match(r"^(\S+) .*─+$", line)
        if rule:
            check = "" if rule.group(1) == "Root" else rule.group(1)
            continue
        m = re.match(rf"^{_SEV} +(.*)$", line)
        if m and check:
            rows.append((m.group(1).lower(), check, _subject(m.group(2), subjects)))
    return rows


def _subject(text: str, subjects: set[str]) -> str:
    """The longest known subject the heading starts with (the heading may add " on <nodes>")."""
    return max((s for s in subjects if text.startswith(s)), key=len, default=text)


def _unmd(text: str) -> str:
    """The text kpdoctor's Markdown renderer escaped (backslashed punctuation, &amp; &lt; &gt;), as it was."""
    text = re.sub(r"\\(.)", r"\1", text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def from_markdown(text: str, subjects: set[str]) -> list[Row]:
    rows, check = [], ""
    for line in text.splitlines():
        if line.startswith("## ") and ": " in line:
            check = _unmd(line[3:].split(":", 1)[0])
        m = re.match(rf"^### \\\[{_SEV}\\\] (.*)$", line)  # the renderer escapes Markdown punctuation
        if m:
            rows.append((m.group(1).lower(), check, _subject(_unmd(m.group(2)), subjects)))
    return rows


def from_html(text: str) -> list[Row]:
    rows, check = [], ""
    for m in re.finditer(r'<section class="check c\d+"><h2>([^<:]*):|<div class="group (\w+)[^"]*"><span class='
                         r'"sev \w+">\w+</span> <strong>(.*?)</strong>', text):
        if m.group(1) is not None:
            check = html.unescape(m.group(1))
        else:
            rows.append((m.group(2), check, html.unescape(m.group(3))))
    return rows


def from_junit(text: str, report: dict[str, Any]) -> list[Row]:
    by_case = {(c["id"], _case(g)): (g["severity"], c["id"], g["subject"]) for c in report["checks"]
               for g in c["groups"]}
    root = ET.fromstring(text)
    return [by_case[(case.get("classname", ""), case.get("name", ""))] for case in root.iter("testcase")
            if (case.get("classname", ""), case.get("name", "")) in by_case]


def _case(g: dict[str, Any]) -> str:
    from kpdoctor.report.junit import _case_name

    return _case_name(g)


@pytest.mark.parametrize("name", ["B2-stale-endpoint", "B3-backend-split", "B4-ipvs-unavailable", "hostile"])
def test_five_renderings_carry_the_same_findings_in_the_same_order(name: str) -> None:
    report = hostile_report() if name == "hostile" else bundle_report(name)
    want = expected(report)
    subjects = {s for _sev, _c, s in want}
    assert want and len(want) == sum(len(c["groups"]) for c in report["checks"])
    assert from_json(render("json", report)) == set(want)
    assert from_console(render("console", report, width=400), subjects) == want
    assert from_markdown(render("markdown", report), subjects) == want
    assert from_html(render("html", report)) == want
    assert from_junit(render("junit", report), report) == want


def test_order_is_severity_then_cause() -> None:
    want = expected(bundle_report("B4-ipvs-unavailable"))
    ranks = [("critical", "error", "warning", "info").index(sev) for sev, _c, _s in want]
    assert ranks == sorted(ranks)
    assert want[0] == ("critical", "KP-PROXIER-MODE", "Node edge-1")  # the cause before its consequences


def test_summary_comes_first_in_every_human_format() -> None:
    report = bundle_report("B2-stale-endpoint")
    line = "2 Services affected on 1 node (edge-1); 1 root cause"
    for fmt in ("console", "markdown", "html"):
        text = render(fmt, report, width=200)
        assert line in text, fmt
        assert text.index(line) < text.index("KP-STALE-ENDPOINTS"), fmt


def test_min_severity_hides_info_in_console_markdown_html_but_not_json() -> None:
    report = bundle_report("B3-backend-split")
    for fmt in ("console", "markdown", "html"):
        full = render(fmt, report, width=200)
        quiet = render(fmt, report, width=200, min_severity="warning")
        assert "inventory/inv-gateway" in full and "inventory/inv-gateway" not in quiet, fmt
        assert "KP-BACKEND-SPLIT" in quiet, fmt
    assert "inventory/inv-gateway" in render("json", report, min_severity="warning")


def test_headings_are_not_redundant() -> None:
    report = hostile_report()
    for fmt in ("console", "markdown", "html"):
        text = render(fmt, report, width=200)
        assert "node(s)" not in text and "Node edge-1 on 1" not in text, fmt
        plain = html.unescape(re.sub(r"<[^>]+>", "", text))
        assert "Service payments/pay-gateway:http/TCP on edge-2" in plain, fmt


@pytest.mark.parametrize("width", [60, 100, 200])
def test_commands_are_never_wrapped(width: int) -> None:
    """Every command of the report is one whole console line ("$ <command>") at any width."""
    report = hostile_report()
    lines = {ln.strip() for ln in render("console", report, width=width).splitlines()}
    commands = {c for ch in report["checks"] for g in ch["groups"] for c in (g["remediation"] or {}).get(
        "commands", [])}
    assert LONG_COMMAND in commands and len(LONG_COMMAND) > 200
    assert {c for c in commands if f"$ {c}" not in lines} == set()


def test_hostile_names_are_escaped_in_every_format() -> None:
    report = hostile_report()
    page = render("html", report)
    assert "<img" not in page and "<script>" not in page and html.escape(HOSTILE) in page
    junit = render("junit", report)
    assert HOSTILE in "".join(ET.fromstring(junit).itertext()) + " ".join(
        c.get("name", "") for c in ET.fromstring(junit).iter("testcase"))
    assert json.loads(render("json", report))["source"]["location"].endswith(HOSTILE)
