"""The parts of the check documentation that come from the check classes (their one source of metadata).

A check's title, scope, default severity, tags, references, remediation and the one line saying what it catches
are class attributes (`kpdoctor.checks_api.Check`). Generated from them here:

- in `docs/checks/<ID>.md`: the first lines (title, scope/severity/tags), the first paragraph of `## How to fix`
  (`In short: ` + the class's remediation, the text every finding carries) and the `## References` section;
  everything else on the page (what it means, how it is detected, the detailed fix) is prose;
- in `README.md`: the check table between the `checks table` markers (id, scope, what it catches).

    python3 -m kpdoctor.checkdocs           # exit 1 and name the pages (and README) that disagree with the checks
    python3 -m kpdoctor.checkdocs --write   # rewrite those parts of every built-in check's page and the README table
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from kpdoctor.checks_api import Check

REFERENCES = "## References"
FIX = "## How to fix"
FIX_LEAD = "In short: "
TABLE_BEGIN = "<!-- checks table: generated from the check classes by `python3 -m kpdoctor.checkdocs --write` -->"
TABLE_END = "<!-- end of checks table -->"


def page_header(check: Check) -> str:
    """The page's first lines: `# ID — title` and the scope/severity/tags line."""
    tags = ", ".join(check.tags) or "-"
    return (f"# {check.id} — {check.title}\n\n"
            f"Scope: {check.scope} · default severity: {check.severity.label} · tags: {tags}\n")


def references_section(check: Check) -> str:
    return REFERENCES + "\n" + "".join(f"- {ref}\n" for ref in check.references)


def fix_lead(check: Check) -> str:
    """The first paragraph of the page's `## How to fix`: the remediation findings carry, word for word."""
    return FIX_LEAD + " ".join(check.remediation.split()) + "\n" if check.remediation.strip() else ""


def _sections(lines: list[str]) -> list[tuple[str, str]]:
    """(heading line, body text) of each `## ` section, in order."""
    out: list[tuple[str, str]] = []
    for line in lines:
        if line.startswith("## "):
            out.append((line.rstrip(), ""))
        else:
            heading, body = out[-1]
            out[-1] = (heading, body + line)
    return out


def _fix_body(check: Check, body: str) -> str:
    """`body` of `## How to fix` with its generated lead paragraph (replaced when it has one)."""
    rest = body.strip("\n")
    if rest.startswith(FIX_LEAD):
        rest = rest.partition("\n\n")[2].strip("\n")
    lead = fix_lead(check)
    return lead + ("\n" if lead and rest else "") + (rest + "\n" if rest else "")


def synced_page(check: Check, text: str) -> str:
    """`text` (a docs page) with its header, `How to fix` lead and References section generated from `check`.

    The header is everything before the first `## ` heading; a section runs to the next `## ` heading or the end
    of the page. A page without `## How to fix` gets one before its References (when the check has a remediation);
    a page without References gets them at its end.
    """
    lines = text.splitlines(keepends=True)
    first = next((i for i, line in enumerate(lines) if line.startswith("## ")), len(lines))
    sections = _sections(lines[first:])
    headings = [heading for heading, _ in sections]
    if FIX not in headings and fix_lead(check):
        at = headings.index(REFERENCES) if REFERENCES in headings else len(sections)
        sections.insert(at, (FIX, ""))
    if REFERENCES not in headings:
        sections.append((REFERENCES, ""))
    parts: list[str] = []
    for heading, body in sections:
        if heading == REFERENCES:
            parts.append(references_section(check))
        elif heading == FIX:
            parts.append(FIX + "\n" + _fix_body(check, body))
        else:
            parts.append(heading + "\n" + body.strip("\n") + "\n" if body.strip() else heading + "\n")
    return page_header(check) + "\n" + "\n".join(parts)


def page_path(check: Check, docs: Path) -> Path:
    return docs / (check.docs_page or f"{check.id}.md")


def stale_pages(checks: Sequence[Check], docs: Path, *, write: bool = False) -> list[str]:
    """Pages whose generated parts disagree with their check (rewritten first when `write`)."""
    stale: list[str] = []
    for check in checks:
        path = page_path(check, docs)
        text = path.read_text(encoding="utf-8") if path.is_file() else ""
        want = synced_page(check, text)
        if want != text:
            stale.append(path.name)
            if write:
                path.write_text(want, encoding="utf-8")
    return stale


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def readme_table(checks: Sequence[Check]) -> str:
    """The README's check table (between and including its markers), one row per check in registry order."""
    rows = "".join(f"| {c.id} | {c.scope} | {_cell(c.catches or c.title)} |\n" for c in checks)
    return f"{TABLE_BEGIN}\n| id | scope | what it catches |\n|---|---|---|\n{rows}{TABLE_END}\n"


def synced_readme(checks: Sequence[Check], text: str) -> str:
    """`text` (README.md) with the block between the checks-table markers generated; ValueError without them."""
    start = text.find(TABLE_BEGIN)
    end = text.find(TABLE_END, start + 1) if start >= 0 else -1
    if start < 0 or end < 0:
        raise ValueError(f"README.md has no `{TABLE_BEGIN}` ... `{TABLE_END}` block")
    end += len(TABLE_END)
    if text[end:end + 1] == "\n":
        end += 1
    return text[:start] + readme_table(checks) + text[end:]


def stale_readme(checks: Sequence[Check], readme: Path, *, write: bool = False) -> bool:
    """True when README's check table disagrees with the checks (rewritten first when `write`)."""
    text = readme.read_text(encoding="utf-8")
    want = synced_readme(checks, text)
    if want != text and write:
        readme.write_text(want, encoding="utf-8")
    return want != text


def main(argv: Sequence[str] | None = None) -> int:
    from kpdoctor.registry import builtin_checks, docs_dir

    args = list(sys.argv[1:] if argv is None else argv)
    write = args == ["--write"]
    if args and not write:
        sys.stderr.write("usage: python3 -m kpdoctor.checkdocs [--write]\n")
        return 2
    docs = docs_dir()
    if docs is None:
        sys.stderr.write("kpdoctor.checkdocs: docs/checks not found next to the kpdoctor package\n")
        return 2
    checks = [check for check, _ in builtin_checks()]
    stale = [docs / name for name in stale_pages(checks, docs, write=write)]
    readme = docs.parents[1] / "README.md"  # the checkout's README (an installed package has none)
    if readme.is_file():
        try:
            if stale_readme(checks, readme, write=write):
                stale.append(readme)
        except ValueError as exc:
            sys.stderr.write(f"kpdoctor.checkdocs: {readme}: {exc}\n")
            return 2
    verb = "rewrote" if write else "out of date (run python3 -m kpdoctor.checkdocs --write)"
    for path in stale:
        sys.stdout.write(f"{verb}: {path}\n")
    return 1 if stale and not write else 0


if __name__ == "__main__":
    raise SystemExit(main())
