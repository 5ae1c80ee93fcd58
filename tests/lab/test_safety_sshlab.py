"""The SSH lab's throwaway accounts (a uid-0 alias by default) and sudoers drop-ins never outlive a run.

Real useradd/userdel on this machine's /etc: a lab closed normally leaves nothing in /etc/passwd,
/etc/shadow, /etc/group or /etc/sudoers.d; a run killed with SIGKILL (a real child process, killed by
its PID) leaves its account, and the next lab's start removes it; a lab that is still alive in another
process is never touched. Every account a test makes is removed by exact name in a finally block.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kpdoctor.node import sshlab
from kpdoctor.node.sshlab import SshLab

pytestmark = pytest.mark.root("useradd", "userdel", "ssh-keygen")
REPO = Path(__file__).resolve().parents[2]

HOLD_LAB = r"""
import json, sys
from kpdoctor.node.sshlab import SshLab
lab = SshLab.create(privileged=sys.argv[1] == "root", sudo=True)
print(json.dumps({"user": lab.user, "workdir": str(lab.workdir), "sudoers": str(lab.sudoers)}), flush=True)
sys.stdin.readline()  # hold the lab until told (or killed)
lab.close()
print("closed", flush=True)
"""


def _etc_mentions(user: str) -> list[str]:
    found = []
    for path in (Path("/etc/passwd"), Path("/etc/shadow"), Path("/etc/group"), Path("/etc/gshadow")):
        if path.exists() and any(line.split(":")[0] == user for line in path.read_text().splitlines()):
            found.append(str(path))
    if (Path("/etc/sudoers.d") / user).exists():
        found.append(f"/etc/sudoers.d/{user}")
    return found


def _force_remove(info: dict[str, str]) -> None:
    """Last-resort cleanup of exactly the account a test created (never a broad sweep)."""
    Path(f"/etc/sudoers.d/{info['user']}").unlink(missing_ok=True)
    if sshlab._passwd_entry(info["user"]) is not None:
        subprocess.run(["userdel", "-f", info["user"]], capture_output=True, timeout=60)
    shutil.rmtree(info["workdir"], ignore_errors=True)


def _hold(privileged: bool) -> tuple[subprocess.Popen[str], dict[str, str]]:
    proc = subprocess.Popen([sys.executable, "-c", HOLD_LAB, "root" if privileged else "user"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line, "the lab process did not start"
    return proc, json.loads(line)


@pytest.mark.parametrize("privileged", [True, False], ids=["uid0-alias", "ordinary-user"])
def test_close_leaves_nothing_in_etc_and_names_are_unique(privileged: bool) -> None:
    first = SshLab.create(privileged=privileged, sudo=True)
    second = SshLab.create(privileged=privileged)
    try:
        assert first.user != second.user and first.prefix != second.prefix
        assert sshlab.USER_RE.match(first.user)
        assert "/etc/passwd" in _etc_mentions(first.user) and f"/etc/sudoers.d/{first.user}" in _etc_mentions(first.user)
        uid = sshlab._passwd_entry(first.user)[2]  # type: ignore[index]
        assert (uid == "0") is privileged
    finally:
        first.close()
        second.close()
    for lab in (first, second):
        assert _etc_mentions(lab.user) == [] and not lab.workdir.exists()


def test_crashed_run_leftovers_are_removed_when_the_next_lab_starts() -> None:
    proc, info = _hold(privileged=True)
    try:
        proc.kill()  # a crash: close() never runs
        proc.wait(timeout=30)
        left = _etc_mentions(info["user"])
        assert "/etc/passwd" in left and f"/etc/sudoers.d/{info['user']}" in left  # what a crash leaves
        lab = SshLab.create()  # the next run
        lab.close()
        assert _etc_mentions(info["user"]) == [] and not Path(info["workdir"]).exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        _force_remove(info)


def test_a_live_lab_in_another_process_is_left_alone() -> None:
    proc, info = _hold(privileged=False)
    try:
        assert info["user"] not in sshlab.remove_stale_accounts()
        lab = SshLab.create()
        lab.close()
        assert "/etc/passwd" in _etc_mentions(info["user"]) and Path(info["workdir"]).is_dir()
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "closed"
        proc.wait(timeout=30)
        assert _etc_mentions(info["user"]) == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        _force_remove(info)


def test_staleness_rules(tmp_path: Path) -> None:
    """Which homes count as stale: gone, recorded owner dead (or PID reused), or unrecorded and old."""
    assert sshlab._is_stale(tmp_path / "gone")
    alive = tmp_path / "alive"
    alive.mkdir()
    (alive / sshlab.OWNER_FILE).write_text(f"{os.getpid()} {sshlab._start_time(os.getpid())}\n")
    assert not sshlab._is_stale(alive)
    reused = tmp_path / "reused"
    reused.mkdir()
    (reused / sshlab.OWNER_FILE).write_text(f"{os.getpid()} 1\n")  # same PID, different start: another process
    assert sshlab._is_stale(reused)
    unrecorded = tmp_path / "unrecorded"
    unrecorded.mkdir()
    assert not sshlab._is_stale(unrecorded)
    old = time.time() - sshlab.STALE_AFTER - 60
    os.utime(unrecorded, (old, old))
    assert sshlab._is_stale(unrecorded)
    # only accounts of the lab's exact shape qualify
    tmp = Path(sshlab.tempfile.gettempdir())
    shape = ["kpd0a1b2c", "x", "0", "0", "", str(tmp / "kpd-sshlab-0a1b2c-xyz"), "/bin/sh"]
    assert sshlab._lab_home(shape) == tmp / "kpd-sshlab-0a1b2c-xyz"
    assert sshlab._lab_home([*shape[:6], "/bin/bash"]) is None
    assert sshlab._lab_home(["kpdadmin", *shape[1:]]) is None
    assert sshlab._lab_home([*shape[:5], "/home/kpd0a1b2c", "/bin/sh"]) is None
