"""Docs links in reports point to pages that exist for the installed version: the check pages shipped with
this copy of kpdoctor (file: URIs, there being no public docs site), a plugin's own URL, or nothing."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import unquote, urlparse

from kpdoctor.checks_api import Check
from tests.support.cli import kpd

ROOT = Path(__file__).resolve().parents[1]
B2 = ROOT / "tests" / "fixtures" / "bundles" / "B2-stale-endpoint" / "bundle"


def test_every_docs_link_of_a_report_is_an_existing_page() -> None:
    proc = kpd("scan", "--bundle", str(B2), "-o", "json")
    report = json.loads(proc.stdout)
    links = {c["docs"] for c in report["checks"]} | {g["docs"] for c in report["checks"] for g in c["groups"]}
    links.discard("")
    assert len(links) >= 10
    for link in links:
        url = urlparse(link)
        assert url.scheme == "file", link
        page = Path(unquote(url.path))
        assert page.is_file() and page.parent.name == "checks", link
        assert page.read_text().startswith("# "), link


def test_plugin_pages() -> None:
    class Own(Check):
        id = "X-OWN"
        docs_page = "https://example.org/x-own.html"

    class Missing(Check):
        id = "X-NO-PAGE"

    assert Own.docs_url() == "https://example.org/x-own.html"
    assert Missing.docs_url() == ""
