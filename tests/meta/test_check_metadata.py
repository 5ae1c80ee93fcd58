"""Check metadata lives once, in the check classes; the docs pages, the README table and `checks list` follow it.

Each built-in check also has its docs page and its own test module (tests/checks/test_<module>.py): a 12th
check added without them fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kpdoctor.checkdocs import (
    FIX,
    TABLE_BEGIN,
    TABLE_END,
    fix_lead,
    page_header,
    page_path,
    readme_table,
    references_section,
    stale_pages,
    stale_readme,
    synced_page,
    synced_readme,
)
from kpdoctor.registry import builtin_checks, docs_dir

ROOT = Path(__file__).resolve().parents[2]
BUILTINS = builtin_checks()
IDS = [check.id for check, _ in BUILTINS]


def _docs() -> Path:
    docs = docs_dir()
    assert docs is not None
    return docs


def test_every_docs_page_agrees_with_its_check_class() -> None:
    stale = stale_pages([check for check, _ in BUILTINS], _docs())
    assert stale == [], f"run `python3 -m kpdoctor.checkdocs --write`: {stale}"


@pytest.mark.parametrize(("check", "origin"), BUILTINS, ids=IDS)
def test_each_check_has_its_docs_page_and_test_module(check, origin: str) -> None:  # type: ignore[no-untyped-def]
    assert page_path(check, _docs()).is_file()
    module = origin.removeprefix("builtin:checks.")
    assert (ROOT / "tests" / "checks" / f"test_{module}.py").is_file(), (
        f"{check.id}: add tests/checks/test_{module}.py (copy another check's test module, see docs/adding-a-check.md)")


@pytest.mark.parametrize(("check", "origin"), BUILTINS, ids=IDS)
def test_references_are_links(check, origin: str) -> None:  # type: ignore[no-untyped-def]
    assert check.references, f"{check.id} has no references"
    assert all(ref.startswith("https://") for ref in check.references), check.references


def test_readme_check_table_is_the_generated_one() -> None:
    checks = [check for check, _ in BUILTINS]
    assert not stale_readme(checks, ROOT / "README.md"), "run `python3 -m kpdoctor.checkdocs --write`"
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| (KP-[A-Z-]+) \| (cluster|node) \| (.+) \|$", readme, re.MULTILINE)
    assert rows == [(check.id, check.scope, " ".join(check.catches.split())) for check in checks]


@pytest.mark.parametrize(("check", "origin"), BUILTINS, ids=IDS)
def test_each_check_says_what_it_catches_and_how_to_fix_it(check, origin: str) -> None:  # type: ignore[no-untyped-def]
    assert check.catches.strip() and check.remediation.strip()
    page = page_path(check, _docs()).read_text(encoding="utf-8")
    assert f"{FIX}\n{fix_lead(check)}" in page  # the remediation findings carry, once, in the class


def test_synced_readme_rewrites_only_the_marked_block() -> None:
    checks = [check for check, _ in BUILTINS]
    text = f"intro\n\n{TABLE_BEGIN}\n| KP-OLD | node | gone |\n{TABLE_END}\n\nafter\n"
    got = synced_readme(checks, text)
    assert got == "intro\n\n" + readme_table(checks) + "\nafter\n"
    assert "KP-OLD" not in got and synced_readme(checks, got) == got
    with pytest.raises(ValueError, match="checks table"):
        synced_readme(checks, "no markers\n")


def test_checks_list_shows_the_class_titles() -> None:
    import json

    from typer.testing import CliRunner

    from kpdoctor.cli import app

    out = CliRunner().invoke(app, ["checks", "list", "-o", "json"]).output
    rows = {r["id"]: (r["title"], r["scope"], r["severity"], tuple(r["tags"])) for r in json.loads(out)["checks"]}
    for check, _ in BUILTINS:
        assert rows[check.id] == (check.title, check.scope, check.severity.label, check.tags)


def test_synced_page_rewrites_header_fix_lead_and_references_only() -> None:
    check = BUILTINS[0][0]
    page = ("# old title\n\nScope: ?\n\n## What it means\nprose\n\n## How to fix\nIn short: old\nwords\n\n"
            "details\n\nmore details\n\n## References\n- https://old.example/\n\n## Later\nmore\n")
    got = synced_page(check, page)
    assert got.startswith(page_header(check) + "\n## What it means\nprose\n\n" + FIX + "\n" + fix_lead(check)
                          + "\ndetails\n\nmore details\n\n" + references_section(check))
    assert got.endswith("\n## Later\nmore\n") and "old.example" not in got and "old title" not in got
    assert "In short: old" not in got
    assert synced_page(check, got) == got  # a synced page is a fixed point


def test_synced_page_adds_fix_lead_and_references_to_a_page_without_them() -> None:
    check = BUILTINS[0][0]
    got = synced_page(check, "## What it means\nprose\n")
    assert got == (page_header(check) + "\n## What it means\nprose\n\n" + FIX + "\n" + fix_lead(check) + "\n"
                   + references_section(check))
    assert synced_page(check, got) == got
