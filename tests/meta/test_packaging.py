"""The wheel installs the built-in checks as `kpdoctor.checks`, never as a generic top-level `checks` package.

The repository keeps its top-level checks/ folder; kpdoctor/checks is a symlink to it, so a checkout run with
PYTHONPATH (or an editable install, which puts the checkout on sys.path) and an installed wheel import the
same `kpdoctor.checks`. Builds the wheel offline (hatchling from the dev extras, no build isolation).
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LIST_CHECKS = ("import kpdoctor, kpdoctor.checks as c; from kpdoctor.registry import discover; "
               "print(kpdoctor.__file__); print(c.__path__[0]); print(len(discover(entry_points=False).checks))")


def _run(args: list[str], cwd: Path, pythonpath: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if pythonpath is not None:
        env["PYTHONPATH"] = pythonpath
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=240, check=False)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("hatchling", reason="hatchling (dev extras) builds the wheel offline")
    out = tmp_path_factory.mktemp("wheel")
    done = _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out),
                 str(ROOT)], out, None)
    assert done.returncode == 0, done.stderr
    (found,) = out.glob("kpdoctor-*.whl")
    return found


def test_wheel_has_kpdoctor_checks_and_no_top_level_checks(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"kpdoctor", next(t for t in tops if t.endswith(".dist-info"))}, tops
    modules = {n.removeprefix("kpdoctor/checks/") for n in names if n.startswith("kpdoctor/checks/")}
    repo = {p.name for p in (ROOT / "checks").glob("*.py")}
    assert modules == repo and "backend_split.py" in modules
    assert "kpdoctor/_docs/checks/KP-BACKEND-SPLIT.md" in names


def test_installed_wheel_finds_every_builtin_check(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    done = _run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                tmp_path, None)
    assert done.returncode == 0, done.stderr
    got = _run([sys.executable, "-c", LIST_CHECKS], tmp_path, str(target))
    assert got.returncode == 0, got.stderr
    kp_file, checks_dir, count = got.stdout.split()
    assert kp_file.startswith(str(target)) and checks_dir.startswith(str(target))
    assert int(count) == len(list((ROOT / "checks").glob("[!_]*.py")))


def test_checkout_on_pythonpath_imports_the_repository_checks() -> None:
    got = _run([sys.executable, "-c", LIST_CHECKS], ROOT, str(ROOT))
    assert got.returncode == 0, got.stderr
    kp_file, checks_dir, count = got.stdout.split()
    assert Path(kp_file).parent == ROOT / "kpdoctor"
    assert Path(checks_dir).resolve() == ROOT / "checks"
    assert int(count) == len(list((ROOT / "checks").glob("[!_]*.py")))


def test_editable_install_imports_the_repository_checks(tmp_path: Path) -> None:
    """`pip install -e .` (hatchling's editable wheel puts the checkout on sys.path) in a fresh venv."""
    pytest.importorskip("hatchling", reason="hatchling (dev extras) builds the editable wheel offline")
    venv = tmp_path / "venv"
    made = _run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], tmp_path, None)
    assert made.returncode == 0, made.stderr
    python = str(venv / "bin" / "python")
    done = _run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "-e", str(ROOT)],
                tmp_path, None)
    assert done.returncode == 0, done.stderr
    got = _run([python, "-c", LIST_CHECKS], tmp_path, None)
    assert got.returncode == 0, got.stderr
    kp_file, checks_dir, count = got.stdout.split()
    assert Path(kp_file).parent == ROOT / "kpdoctor"
    assert Path(checks_dir).resolve() == ROOT / "checks"
    assert int(count) == len(list((ROOT / "checks").glob("[!_]*.py")))


def test_nothing_imports_the_top_level_checks_package() -> None:
    offenders = [str(p.relative_to(ROOT)) for base in ("kpdoctor", "checks", "tests", "bench")
                 for p in (ROOT / base).rglob("*.py") if "fixtures" not in p.parts and "kpdoctor/checks" not in
                 p.relative_to(ROOT).as_posix()
                 for line in p.read_text(encoding="utf-8").splitlines()
                 if line.lstrip().startswith(("import checks", "from checks"))]
    assert offenders == []
