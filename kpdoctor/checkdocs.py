"""The parts of a check's docs page that come from the check class (its one source of metadata).

A check's title, scope, default severity, tags and references are class attributes (`kpdoctor.checks_api.Check`);
`docs/checks/<ID>.md` repeats them in its first lines and its `## References` section, so those two parts are
generated here and everything else on the page (what it means, how it is detected, how to fix) is prose.

    python3 -m kpdoctor.checkdocs           # exit 1 and name the pages that disagree with their check
    python3 -m kpdoctor.checkdocs --write   # rewrite those parts of every built-in check's page
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from kpdoctor.checks_api import Check

REFERENCES = "## References"


def page_header(check: Check) -> str:
    """The page's first lines: `# ID — title` and the scope/severity/tags line."""
    tags = ", ".join(check.tags) or "-"
    return (f"# {check.id} — {check.title}\n\n"
            f"Scope: {check.scope} · default severity: {check.severity.label} · tags: {tags}\n")


def references_section(check: Check) -> str:
    return REFERENCES + "\n" + "".join(f"- {ref}\n" for ref in check.references)


def synced_page(check: Check, text: str) -> str:
    """`text` (a docs page) with its header and References section generated from `check`.

    The header is everything before the first `## ` heading; the References section runs to the next
    `## ` heading or the end of the page (it is appended when the page has none).
    """
    lines = text.splitlines(keepends=True)
    first = next((i for i, line in enumerate(lines) if line.startswith("## ")), len(lines))
    body = lines[first:]
    start = next((i for i, line in enumerate(body) if line.rstrip() == REFERENCES), None)
    if start is None:
        head, tail = body, []
    else:
        end = next((i for i in range(start + 1, len(body)) if body[i].startswith("## ")), len(body))
        head, tail = body[:start], body[end:]
    before = "".join(head).rstrip("\n")
    after = "".join(tail)
    refs = references_section(check)
    return (page_header(check) + "\n" + (before + "\n\n" if before else "") + refs
            + ("\n" + after if after else ""))


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
    stale = stale_pages([check for check, _ in builtin_checks()], docs, write=write)
    verb = "rewrote" if write else "out of date (run python3 -m kpdoctor.checkdocs --write)"
    for name in stale:
        sys.stdout.write(f"{verb}: {docs / name}\n")
    return 1 if stale and not write else 0


if __name__ == "__main__":
    raise SystemExit(main())
