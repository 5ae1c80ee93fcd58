"""`kubectl kpdoctor ...`: the `kubectl-kpdoctor` console script of pyproject.toml, found on PATH by the real
kubectl binary the lab builds (/var/cache/kpdoctor-lab/bin/v1.37.2/kubectl). The launcher is written here
the way pip writes a console script (import the entry point named in pyproject.toml, call it), because
the installed package is not this worktree's."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from kpdoctor.lab import k8sbuild
from tests.conftest import REQUIRE_ROOT

REPO = Path(__file__).resolve().parents[1]


def _entry_point() -> tuple[str, str]:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    module, func = scripts["kubectl-kpdoctor"].split(":")
    return module, func


def _kubectl() -> Path:
    path = k8sbuild.cached(k8sbuild.resolve_release(k8sbuild.CONTROL_PLANE_RELEASE), "kubectl")
    if path is None:
        if REQUIRE_ROOT:
            pytest.fail("KPDOCTOR_REQUIRE_ROOT_TESTS=1 but kubectl is not built")
        pytest.skip(f"kubectl not built under {k8sbuild.cache_root()}; run: python3 -m kpdoctor.lab.k8sbuild 1.37")
    return Path(path)


def _plugin_path(tmp: Path) -> dict[str, str]:
    module, func = _entry_point()
    bindir = tmp / "bin"
    bindir.mkdir()
    launcher = bindir / "kubectl-kpdoctor"
    launcher.write_text(f"#!{sys.executable}\nimport sys\nfrom {module} import {func}\nsys.exit({func}())\n")
    launcher.chmod(0o755)
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}", "PYTHONPATH": str(REPO),
           "HOME": str(tmp)}  # fmt: skip
    env.pop("KUBECONFIG", None)
    return env


def test_entry_point_is_the_kpdoctor_one() -> None:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["kubectl-kpdoctor"] == scripts["kpdoctor"]


def test_kubectl_finds_and_runs_the_plugin(tmp_path: Path) -> None:
    kubectl = _kubectl()
    env = _plugin_path(tmp_path)
    listed = subprocess.run([str(kubectl), "plugin", "list"], capture_output=True, text=True, env=env,
                            timeout=60, check=False)  # fmt: skip
    assert str(tmp_path / "bin" / "kubectl-kpdoctor") in listed.stdout, listed.stdout + listed.stderr
    from kpdoctor import __version__

    version = subprocess.run([str(kubectl), "kpdoctor", "version"], capture_output=True, text=True, env=env,
                             timeout=60, check=False)  # fmt: skip
    assert version.returncode == 0, version.stderr
    assert __version__ in version.stdout
    # Arguments after the plugin name reach kpdoctor untouched: a full offline scan of the demo cluster.
    scan = subprocess.run([str(kubectl), "kpdoctor", "scan", "--demo", "-o", "json"], capture_output=True,
                          text=True, env=env, timeout=120, check=False)  # fmt: skip
    assert "Traceback" not in scan.stderr
    direct = subprocess.run([sys.executable, "-m", "kpdoctor", "scan", "--demo", "-o", "json"],
                            capture_output=True, text=True, env=env, timeout=120, check=False)  # fmt: skip
    assert scan.returncode == direct.returncode
    via, own = yaml.safe_load(scan.stdout), yaml.safe_load(direct.stdout)
    assert [(c["id"], c["status"]) for c in via["checks"]] == [(c["id"], c["status"]) for c in own["checks"]]
    assert via["checks"], "the demo scan ran no checks"


def test_krew_template_names_the_plugin_binary() -> None:
    doc = yaml.safe_load((REPO / "deploy" / "krew" / "kpdoctor.yaml").read_text())
    assert doc["apiVersion"] == "krew.googlecontainertools.github.com/v1alpha2" and doc["kind"] == "Plugin"
    assert doc["metadata"]["name"] == "kpdoctor"
    for platform in doc["spec"]["platforms"]:
        assert platform["bin"] == "kubectl-kpdoctor"
        assert {f["from"] for f in platform["files"]} >= {"kubectl-kpdoctor"}
