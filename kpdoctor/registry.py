"""The check registry: discover built-in and third-party checks, validate their metadata, select them.

Built-ins are the modules of `kpdoctor.checks` (the repository's top-level `checks/` folder, installed
under the kpdoctor namespace), each exporting
`CHECK = SomeCheck()`. Third-party packs register in the entry-point group
`kpdoctor.checks` (an entry point loads a Check subclass or instance).

Ids are the public contract of a check (users put them in `--checks`, `--skip`,
`.kpdoctor.yaml` and CI dashboards), so they are validated once here: unique,
well-formed, with a known scope and severity, and - for built-ins - a docs page.
A broken built-in is a bug in kpdoctor and fails loudly; a broken third-party
plugin must not take the scan down, so it becomes a load error that the engine
reports as an error finding.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from kpdoctor.checks_api import Check
from kpdoctor.docs_location import docs_dir
from kpdoctor.errors import InputError
from kpdoctor.findings import Severity

ENTRY_POINT_GROUP = "kpdoctor.checks"
BUILTIN_PACKAGE = "kpdoctor.checks"
_ID = re.compile(r"^[A-Za-z][A-Za-z0-9]*(?:[-_.][A-Za-z0-9]+)*$")
SCOPES = ("cluster", "node")


@dataclass(frozen=True)
class LoadError:
    """A plugin that could not be loaded or failed validation; reported, never fatal."""

    name: str  # entry point name or module
    origin: str
    message: str


@dataclass
class Registry:
    checks: list[Check] = field(default_factory=list)
    origins: dict[str, str] = field(default_factory=dict)  # check id -> "builtin:checks.x" | "entry-point:name (dist)"
    load_errors: list[LoadError] = field(default_factory=list)

    # ---- lookups -------------------------------------------------------------------
    def ids(self) -> list[str]:
        return [c.id for c in self.checks]

    def get(self, check_id: str) -> Check:
        found = self._by_lower().get(check_id.lower())
        if found is None:
            raise InputError(f"unknown check id {check_id!r} (known: {', '.join(sorted(self.ids()))})")
        return found

    def tags(self) -> list[str]:
        return sorted({t for c in self.checks for t in c.tags})

    def _by_lower(self) -> dict[str, Check]:
        return {c.id.lower(): c for c in self.checks}

    # ---- selection -----------------------------------------------------------------
    def select(self, include: str | None = None, skip: str | None = None) -> list[Check]:
        """`--checks` and `--skip`: comma-separated ids, `tag:<tag>` or `scope:cluster|node`.

        Order is the registry's (stable by id) whatever order the user typed, so
        reports are reproducible.
        """
        chosen = self._resolve(include, "--checks") if include else {c.id for c in self.checks}
        if skip:
            chosen -= self._resolve(skip, "--skip")
        return [c for c in self.checks if c.id in chosen]

    def _resolve(self, spec: str, flag: str) -> set[str]:
        by_lower = self._by_lower()
        out: set[str] = set()
        for raw in spec.split(","):
            item = raw.strip()
            if not item:
                continue
            if item.lower().startswith("tag:"):
                tag = item[4:].strip().lower()
                hits = {c.id for c in self.checks if tag in (t.lower() for t in c.tags)}
                if not hits:
                    raise InputError(f"{flag}: no check has tag {tag!r} (tags: {', '.join(self.tags()) or 'none'})")
                out |= hits
            elif item.lower().startswith("scope:"):
                scope = item[6:].strip().lower()
                if scope not in SCOPES:
                    raise InputError(f"{flag}: unknown scope {scope!r} (choose from cluster, node)")
                out |= {c.id for c in self.checks if c.scope == scope}
            else:
                check = by_lower.get(item.lower())
                if check is None:
                    raise InputError(
                        f"{flag}: unknown check id {item!r} (known: {', '.join(sorted(self.ids())) or 'none'})"
                    )
                out.add(check.id)
        return out


# ---- validation ------------------------------------------------------------------------
def validate_check(check: Any, *, docs_dir: Path | None = None) -> list[str]:
    """Problems with a check's metadata (empty when valid). `docs_dir` set -> its page must exist."""
    problems: list[str] = []
    if not isinstance(check, Check):
        return [f"{check!r} is not a kpdoctor.checks_api.Check instance"]
    cid = getattr(check, "id", None)
    if not isinstance(cid, str) or not _ID.match(cid):
        problems.append(f"id {cid!r} is not a stable identifier (letters, digits, '-', '_' or '.')")
    title = getattr(check, "title", None)
    if not isinstance(title, str) or not title.strip():
        problems.append("title is missing")
    if getattr(check, "scope", None) not in SCOPES:
        problems.append(f"scope {getattr(check, 'scope', None)!r} is not 'cluster' or 'node'")
    if not isinstance(getattr(check, "severity", None), Severity):
        problems.append(f"severity {getattr(check, 'severity', None)!r} is not a kpdoctor.findings.Severity")
    tags = getattr(check, "tags", ())
    if not isinstance(tags, tuple) or not all(isinstance(t, str) and t for t in tags):
        problems.append("tags must be a tuple of non-empty strings")
    if type(check).run is Check.run:
        problems.append("run(ctx) is not implemented")
    if docs_dir is not None and isinstance(cid, str):
        page = docs_dir / (check.docs_page or f"{cid}.md")
        if not page.is_file():
            problems.append(f"docs page {page} does not exist")
    return problems


def docs_page_text(check: Check) -> str | None:
    base = docs_dir()
    if base is None:
        return None
    page = base / (check.docs_page or f"{check.id}.md")
    return page.read_text(encoding="utf-8") if page.is_file() else None


# ---- discovery ---------------------------------------------------------------------------
def _as_instance(obj: Any) -> Any:
    if isinstance(obj, type) and issubclass(obj, Check):
        return obj()
    return obj


def builtin_checks(package: str = BUILTIN_PACKAGE) -> list[tuple[Check, str]]:
    """Import every module of the built-in package; each exports `CHECK`."""
    pkg = importlib.import_module(package)
    found: list[tuple[Check, str]] = []
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{package}.{info.name}")
        check = getattr(module, "CHECK", None)
        if check is None:
            raise RuntimeError(f"built-in check module {module.__name__} does not export CHECK")
        # The origin names the repository file (checks/<name>.py), as reports have always said.
        found.append((_as_instance(check), f"builtin:checks.{info.name}"))
    return found


def entry_point_checks(group: str = ENTRY_POINT_GROUP) -> tuple[list[tuple[Any, str]], list[LoadError]]:
    loaded: list[tuple[Any, str]] = []
    errors: list[LoadError] = []
    for ep in metadata.entry_points(group=group):
        dist = getattr(ep, "dist", None)
        origin = f"entry-point:{ep.name}" + (f" ({dist.name})" if dist is not None else "")
        try:
            obj = ep.load()
            loaded.append((_as_instance(obj), origin))
        except Exception as exc:  # a third-party pack must not take the scan down
            errors.append(LoadError(ep.name, origin, f"failed to load: {type(exc).__name__}: {exc}"))
    return loaded, errors


def build_registry(
    builtins: Sequence[tuple[Check, str]],
    plugins: Iterable[tuple[Any, str]] = (),
    *,
    plugin_errors: Iterable[LoadError] = (),
    docs: Path | None = None,
) -> Registry:
    """Validate and index. Built-in problems raise (a kpdoctor bug); plugin problems become load errors."""
    reg = Registry(load_errors=list(plugin_errors))
    seen: dict[str, str] = {}
    for check, origin in builtins:
        problems = validate_check(check, docs_dir=docs)
        if problems:
            raise RuntimeError(f"invalid built-in check from {origin}: {'; '.join(problems)}")
        if check.id.lower() in seen:
            raise RuntimeError(f"duplicate check id {check.id!r}: {seen[check.id.lower()]} and {origin}")
        seen[check.id.lower()] = origin
        reg.checks.append(check)
        reg.origins[check.id] = origin
    for check, origin in plugins:
        problems = validate_check(check)
        name = getattr(check, "id", repr(check))
        if not problems and check.id.lower() in seen:
            problems = [f"check id {check.id!r} already registered by {seen[check.id.lower()]}"]
        if problems:
            reg.load_errors.append(LoadError(str(name), origin, "; ".join(problems)))
            continue
        seen[check.id.lower()] = origin
        reg.checks.append(check)
        reg.origins[check.id] = origin
    reg.checks.sort(key=lambda c: c.id)
    return reg


_DEFAULT: Registry | None = None


def discover(*, entry_points: bool = True, refresh: bool = False, require_docs: bool = False) -> Registry:
    """The registry of this installation (built-ins + entry points), computed once per process.

    `require_docs` (the test suite sets it) also demands a docs page per built-in; a
    user's scan does not fail because a page is missing from their install.
    """
    global _DEFAULT
    if _DEFAULT is not None and not refresh and entry_points and not require_docs:
        return _DEFAULT
    docs = docs_dir() if require_docs else None
    if require_docs and docs is None:
        raise RuntimeError("docs/checks not found next to the kpdoctor package")
    plugins: list[tuple[Any, str]] = []
    errors: list[LoadError] = []
    if entry_points:
        plugins, errors = entry_point_checks()
    reg = build_registry(builtin_checks(), plugins, plugin_errors=errors, docs=docs)
    if entry_points and not require_docs:
        _DEFAULT = reg
    return reg
