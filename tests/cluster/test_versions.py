"""kpdoctor.commands.version_info / kpdoctor.entry: the fast `version` answer is the typer command's answer, byte for byte,
and everything it does not recognise goes to typer (help, errors). The server part with a reachable API is
tests/test_cli_conventions.py::test_version_reports_the_reachable_server.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kpdoctor.cli import app
from kpdoctor.commands.version_info import fast_version, kubernetes_client_version

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def no_cluster(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))


@pytest.mark.parametrize("args", [
    ["version"], ["version", "--client"], ["version", "-o", "json"], ["version", "--output=json", "--client"],
    ["--color", "never", "version"], ["version", "--color=always", "--timeout", "5"], ["--version"],
    ["version", "--context", "nowhere", "--client"],
])  # fmt: skip
def test_fast_answer_equals_the_typer_command(args: list[str]) -> None:
    fast = fast_version(args)
    assert fast is not None
    typer_args = [a for a in args if not a.startswith("--color")]
    if "--color" in args:
        i = args.index("--color")
        typer_args = args[:i] + args[i + 2:]
    result = CliRunner().invoke(app, typer_args)
    assert result.exit_code == 0, result.output
    assert result.stdout == fast


@pytest.mark.parametrize("args", [
    [], ["-h"], ["version", "-h"], ["version", "--help"], ["version", "-o", "yaml"], ["version", "--bogus"],
    ["version", "--timeout", "soon"], ["--color", "sometimes", "version"], ["scan"], ["version", "extra"],
    ["version", "--kubeconfig"], ["--version", "scan"],
])  # fmt: skip
def test_everything_else_goes_to_typer(args: list[str]) -> None:
    assert fast_version(args) is None


def test_kubernetes_client_version_without_importing_it() -> None:
    import importlib.metadata

    assert kubernetes_client_version() == importlib.metadata.version("kubernetes")


def test_entry_point_hands_over_to_the_cli(capsys: pytest.CaptureFixture[str]) -> None:
    from kpdoctor.entry import main

    main(["version", "--client"])
    assert capsys.readouterr().out.startswith("kpdoctor Version: ")
    with pytest.raises(SystemExit) as exc:
        main(["version", "-o", "yaml"])
    assert exc.value.code == 2 and "-o 'yaml'" in capsys.readouterr().err
    assert 'kpdoctor = "kpdoctor.entry:main"' in (ROOT / "pyproject.toml").read_text()


def test_the_fast_answer_loads_neither_typer_nor_the_kubernetes_client(tmp_path: Path) -> None:
    code = ("import sys; from kpdoctor.entry import main; main(sys.argv[1:]); "
            "print(sorted(m for m in ('typer', 'kubernetes', 'rich', 'pydantic') if m in sys.modules), file=sys.stderr)")
    for args in (["version"], ["--version"], ["version", "-o", "json"]):
        proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60,
                              env={**os.environ, "PYTHONPATH": str(ROOT), "HOME": str(tmp_path)})  # fmt: skip
        assert proc.returncode == 0 and proc.stderr.strip() == "[]", (args, proc.stderr)
