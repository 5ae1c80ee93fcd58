"""Test plumbing shared by the registry and scan tests: a third-party check pack installed for real."""

from __future__ import annotations

import textwrap
from pathlib import Path


def fake_distribution(root: Path, module: str, body: str, entry: str, *, dist: str = "kpd-fake-pack",
                      version: str = "0.1") -> Path:
    """A real installed-distribution layout (dist-info + entry_points.txt) that importlib.metadata finds,
    so entry-point discovery is exercised as it runs for a pip-installed pack; returns the site directory
    to put on sys.path / PYTHONPATH."""
    site = root / "site"
    site.mkdir()
    (site / f"{module}.py").write_text(textwrap.dedent(body))
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[kpdoctor.checks]\n{entry}\n")
    return site


def plugin_module(cls: str, check_id: str, title: str, *, run: str, tags: tuple[str, ...] = ()) -> str:
    """Source of a third-party pack's module: one cluster-scope WARNING check class `cls` whose `run(self, ctx)`
    is the one statement `run`."""
    return (f"from kpdoctor.checks_api import Check\nfrom kpdoctor.findings import Severity\n\n\n"
            f"class {cls}(Check):\n    id = {check_id!r}\n    title = {title!r}\n    scope = \"cluster\"\n"
            f"    severity = Severity.WARNING\n    tags = {tags!r}\n\n    def run(self, ctx):\n        {run}\n")
