"""kpdoctor.docs_location: the check pages are found (in this checkout: docs/checks) by the registry and the
check API alike."""

from __future__ import annotations

from pathlib import Path

from kpdoctor import checks_api, registry
from kpdoctor.docs_location import docs_dir


def test_docs_dir_is_the_checkout_pages() -> None:
    found = docs_dir()
    assert found is not None and found == (Path(__file__).resolve().parent.parent / "docs" / "checks")
    assert (found / "KP-LEFTOVER-RULES.md").is_file()
    assert registry.docs_dir is docs_dir


def test_installed_docs_uri_reads_it() -> None:
    uri = checks_api.installed_docs_uri("KP-LEFTOVER-RULES.md")
    assert uri.startswith("file://") and uri.endswith("/docs/checks/KP-LEFTOVER-RULES.md")
    assert checks_api.installed_docs_uri("no-such-page.md") == ""
