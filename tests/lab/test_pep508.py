"""kpdoctor.lab.pep508 against `packaging` (the reference implementation, which pytest brings in the dev extra)
on real data: every Requires-Dist line of every distribution installed on this machine (hundreds, written by
their projects' build tools), evaluated in this interpreter's environment and in others (another Python,
Windows, PyPy, macOS). And the lab image's requirement closure on a plain install, where `packaging` cannot
be imported."""

from __future__ import annotations

import importlib.metadata as metadata
import json
import subprocess
import sys

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement

from kpdoctor.lab import pep508, pyimage
from tests.support.klab import REPO

OTHER_ENVIRONMENTS = [
    {},
    {"python_version": "3.8", "python_full_version": "3.8.10"},
    {"python_version": "3.14", "python_full_version": "3.14.0"},
    {"python_version": "3.10", "python_full_version": "3.10.12"},
    {"sys_platform": "win32", "os_name": "nt", "platform_system": "Windows"},
    {"sys_platform": "darwin", "platform_system": "Darwin", "platform_machine": "arm64"},
    {"platform_python_implementation": "PyPy", "implementation_name": "pypy"},
]


def _installed_lines() -> list[str]:
    return sorted({line for dist in metadata.distributions() for line in dist.requires or []})


def test_the_environment_is_packagings() -> None:
    assert pep508.environment() == dict(default_environment())


@pytest.mark.parametrize("change", OTHER_ENVIRONMENTS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()) or "here")
def test_every_installed_requirement_line_as_packaging_evaluates_it(change: dict[str, str]) -> None:
    lines = _installed_lines()
    assert len(lines) > 100, "too few real requirement lines installed to compare on"
    env = {**pep508.environment(), **change}
    differ = []
    for line in lines:
        req = Requirement(line)
        expected = req.marker is None or req.marker.evaluate({**env, "extra": ""})
        if pep508.applies(line, env) != expected or pep508.requirement_name(line) != req.name:
            differ.append(line)
    assert differ == []
    assert sum(1 for line in lines if ";" in line) > 50  # markers were exercised, not only bare names


@pytest.mark.parametrize(("line", "env", "expected"), [
    ('pkg @ https://example.invalid/a;b.whl ; python_version >= "3.9"', {"python_version": "3.11"}, True),
    ('pkg @ https://example.invalid/a;b.whl', {}, True),
    ('pkg; python_version == "3.11.*"', {"python_version": "3.11"}, True),
    ('pkg; python_full_version != "3.11.*"', {"python_full_version": "3.11.2"}, False),
    ('pkg; python_version ~= "3.9"', {"python_version": "3.11"}, True),
    ('pkg; python_full_version ~= "3.9.1"', {"python_full_version": "3.11.2"}, False),
    ('pkg; "linux" in sys_platform and extra == "Dev_Tools"', {"sys_platform": "linux"}, False),
    ('pkg; (os_name == "posix" or os_name == "nt") and python_version >= "3"', {"os_name": "posix"}, True),
])  # fmt: skip
def test_marker_forms_agree_with_packaging(line: str, env: dict[str, str], expected: bool) -> None:
    full = {**pep508.environment(), **env}
    req = Requirement(line)
    assert (req.marker is None or req.marker.evaluate({**full, "extra": ""})) is expected
    assert pep508.applies(line, full) is expected


@pytest.mark.parametrize("line", ['pkg; python_version >> "3"', 'pkg; nonsense == "1"', 'pkg; (os_name == "nt"',
                                  'pkg; platform_release >= "6.1.0-rc1"'])  # fmt: skip
def test_what_it_cannot_evaluate_is_an_error_not_a_guess(line: str) -> None:
    with pytest.raises(ValueError, match="marker|compare"):
        pep508.applies(line)


def test_the_image_closure_on_a_plain_install_without_packaging() -> None:
    """`packaging` made unimportable (as on `pip install kpdoctor` without the dev extra): same closure."""
    code = ("import sys, json; sys.modules['packaging'] = None\n"
            "from kpdoctor.lab import pyimage\n"
            "print(json.dumps([d.metadata['Name'] for d in pyimage.requirement_closure()]))\n"
            "assert 'packaging.requirements' not in sys.modules")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-1500:]
    assert json.loads(proc.stdout) == [d.metadata["Name"] for d in pyimage.requirement_closure()]
