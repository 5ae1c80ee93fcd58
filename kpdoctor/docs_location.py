"""Where the check documentation pages live. A leaf: the registry and the check API both ask it."""

from __future__ import annotations

from pathlib import Path


def docs_dir() -> Path | None:
    """Where the check pages live: shipped inside the package, or the repo checkout's docs/checks."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "_docs" / "checks", here.parent / "docs" / "checks"):
        if candidate.is_dir():
            return candidate
    return None
