"""The test tree's layout rules (tests/README.md): shared helpers live in tests/support/, and no test module
imports another test module (a helper a second module needs moves to tests/support/)."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def _imported_modules(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def test_no_test_module_imports_another_test_module() -> None:
    offenders = [
        f"{path.relative_to(TESTS)} imports {name}"
        for path in sorted(TESTS.rglob("*.py")) if "fixtures" not in path.parts
        for name in _imported_modules(path)
        if name.split(".")[-1].startswith("test_")
    ]
    assert offenders == [], "move the shared names to tests/support/: " + "; ".join(offenders)


def test_helpers_live_in_the_support_package() -> None:
    """Outside tests/support/ (and fixtures), every module is a test module, conftest.py or a package marker."""
    stray = [
        str(path.relative_to(TESTS)) for path in sorted(TESTS.rglob("*.py"))
        if not {"support", "fixtures", "golden"} & set(path.relative_to(TESTS).parts)
        and not path.name.startswith("test_") and path.name not in ("conftest.py", "__init__.py")
    ]
    assert stray == [], f"shared helpers belong in tests/support/: {stray}"
