"""Issue 9 item 2: a scan that could read nothing does not pass.

The real kubernetes client talks to the replay API server of tests/cluster/test_live_loader.py (the recorded B1
objects of a real kube-apiserver v1.36.2) on loopback. When every list answers 403 or 500, or the
kubeconfig's exec credential plugin fails (the client would carry on anonymously), `kpdoctor scan`
exits 3 "cannot read the cluster"; a single forbidden kind keeps its documented gap behaviour.
Before the fix the scan printed a report and exited 0.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import cli
from tests.support.replay_api import Replay, serve_replay

REPO = Path(__file__).resolve().parents[2]


def kpd(*args: str) -> subprocess.CompletedProcess[str]:
    return cli.kpd(*args, drop=("KUBECONFIG",))


@pytest.fixture()
def api(tmp_path: Path) -> Iterator[tuple[Path, type[Replay]]]:
    handler = type("H", (Replay,), {"forbidden": set(), "status_all": None, "seen": []})
    with serve_replay(handler, tmp_path) as kubeconfig:
        yield kubeconfig, handler


@pytest.mark.parametrize("status", [403, 500])
def test_every_list_refused_is_exit_3(api: tuple[Path, type[Replay]], status: int) -> None:
    kubeconfig, handler = api
    handler.status_all = status
    proc = kpd("scan", "--kubeconfig", str(kubeconfig))
    assert proc.returncode == 3, (proc.returncode, proc.stdout[-1500:], proc.stderr)
    assert "cannot read the cluster: every list failed" in proc.stderr and str(status) in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_one_forbidden_kind_still_scans(api: tuple[Path, type[Replay]]) -> None:
    kubeconfig, handler = api
    handler.forbidden.add("/apis/discovery.k8s.io/v1/endpointslices")
    proc = kpd("scan", "--kubeconfig", str(kubeconfig), "-o", "json")
    assert proc.returncode in (0, 1), proc.stderr  # the cluster checks that need no EndpointSlice still ran
    assert "EndpointSlice" in proc.stdout and "403" in proc.stdout


def test_a_failing_exec_credential_plugin_is_exit_3_not_anonymous(api: tuple[Path, type[Replay]],
                                                                  tmp_path: Path) -> None:
    kubeconfig, handler = api
    text = kubeconfig.read_text().replace(
        "    token: not-a-real-token\n",
        "    exec:\n      apiVersion: client.authentication.k8s.io/v1beta1\n      command: /bin/false\n"
        "      interactiveMode: Never\n")
    assert "exec:" in text
    failing = tmp_path / "exec-kubeconfig"
    failing.write_text(text)
    proc = kpd("scan", "--kubeconfig", str(failing))
    assert proc.returncode == 3, (proc.returncode, proc.stderr)
    assert "exec credential plugin '/bin/false' gave no credentials" in proc.stderr
    assert handler.seen == []  # not a single anonymous request


def test_a_report_where_every_check_is_not_evaluated_is_not_ok(tmp_path: Path) -> None:
    """A snapshot without nodes, scanned with node checks only: every check is "not evaluated" -> exit 3."""
    from tests.conftest import BUNDLES
    snap = tmp_path / "snap"
    snap.mkdir()
    (snap / "empty.json").write_text('{"kind": "List", "items": []}')
    proc = kpd("scan", "--snapshot", str(snap), "--checks", "KP-STALE-ENDPOINTS,KP-SYNC-LAG")
    assert proc.returncode == 3, (proc.returncode, proc.stdout[-2000:], proc.stderr)
    full = kpd("scan", "--bundle", str(BUNDLES / "B1-healthy" / "bundle"))
    assert full.returncode == 0, full.stderr
