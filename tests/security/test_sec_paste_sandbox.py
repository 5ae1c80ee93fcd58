"""Issue 9 item 1: every command a report suggests, pasted into a real bash, runs only what it says.

Hostile copies of the real B1-B4 bundles (rule comments and a chain name holding shell payloads, pod and
DaemonSet names that are not Kubernetes names) are scanned through the CLI; every command of every
finding is then pasted, line by line, into a real `bash` in a sandbox:

- a private mount namespace (`unshare --mount`) whose root file system is read-only, with tmpfs over
  /root, /etc/sysctl.d and /etc/modules-load.d (where suggested commands write), so nothing reaches the host;
- PATH holds only stub binaries (kubectl, iptables, nft, curl, ...) that log their argv and do nothing;
- `command_not_found_handle` logs any other program a payload tries to start.

Each line must run exactly the programs and argv its own words say (compared with a shell-word split of
the line), no payload may start a program or create `pwned`, and each payload must reach the stubs as
one literal argument. On the code before the fix (`rule.line` rewritten with -A -> -D and pasted as is),
`$(echo pwned >pwned)` in a comment created the file.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REQUIRE_ROOT
from tests.support.hostile_bundle import HOSTILE_CHAIN, PAYLOADS, SCENARIOS, hostile_bundle

REPO = Path(__file__).resolve().parents[2]
STUBS = ("kubectl", "iptables", "iptables-save", "iptables-restore", "iptables-legacy", "iptables-legacy-save",
         "iptables-legacy-restore", "ip6tables", "ip6tables-save", "ip6tables-restore", "ip6tables-legacy",
         "nft", "ipvsadm", "ipset", "ip", "xargs", "grep", "curl", "conntrack", "ss", "update-alternatives",
         "firewall-cmd", "nc", "sysctl", "modprobe", "ls", "uname", "helm", "kubeadm", "cat", "tee")
SEPARATORS = {"|", ";", "&&", "||"}
REDIRECTS = {">", ">>"}
BUILTINS = {"printf", "echo"}  # run by bash itself: no stub logs them


def _sandbox_reason() -> str | None:
    if os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("bash") is None:
        return "needs root, unshare and bash (a private mount namespace)"
    return None


def _scan_commands(bundle: Path) -> list[str]:
    proc = subprocess.run([sys.executable, "-m", "kpdoctor", "scan", "--bundle", str(bundle), "-o", "json"],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode in (0, 1), proc.stderr
    report = json.loads(proc.stdout)
    return [cmd for check in report["checks"] for group in check.get("groups", [])
            for cmd in (group.get("remediation") or {}).get("commands", [])]


def _words(line: str) -> list[str]:
    lex = shlex.shlex(line.replace("$(uname -r)", "KERNEL"), posix=True, punctuation_chars=True)
    lex.whitespace_split = True
    return list(lex)


def _simple_commands(words: list[str]) -> list[list[str]]:
    """The argv of each simple command in a pipeline/list of words; `for V in A B; do BODY; done` expanded."""
    if words and words[0] == "for":
        var, values_end = words[1], words.index(";")
        assert words[2] == "in" and words[values_end + 1] == "do" and words[-1] == "done", words
        body = words[values_end + 2:-1]
        return [argv for v in words[3:values_end] for argv in _simple_commands([v if w == f"${var}" else w
                                                                               for w in body])]
    out: list[list[str]] = [[]]
    skip = False
    for w in words:
        if skip:
            skip = False
        elif w in SEPARATORS:
            out.append([])
        elif w in REDIRECTS:
            skip = True
        else:
            out[-1].append(w)
    return [argv for argv in out if argv and argv[0] not in BUILTINS]


def _paste(lines: list[str], work: Path) -> list[list[list[str]]]:
    """Run each line in one sandboxed bash; the argv lists each line started, per line."""
    stubs, cwd, log = work / "bin", work / "cwd", work / "cwd" / "log"
    stubs.mkdir(parents=True)
    cwd.mkdir()
    for name in STUBS:
        stub = stubs / name
        if name == "uname":  # the one command substitution kpdoctor writes itself: ls /lib/modules/$(uname -r)/...
            stub.write_text(f'#!/bin/sh\nprintf "uname\\037-r\\036" >>{log}\necho KERNEL\n')
        else:
            # one write per record: the stubs of a pipeline run at once and must not interleave in the log
            stub.write_text(f'#!/bin/sh\nrec="${{0##*/}}"; for a in "$@"; do rec="$rec$(printf "\\037")$a"; done; '
                            f'printf "%s\\036" "$rec" >>{log}\n')
        stub.chmod(0o755)
    script = [f"command_not_found_handle() {{ printf 'UNEXPECTED\\037%s\\036' \"$1\" >>{log}; return 127; }}"]
    for i, line in enumerate(lines):
        script.append(f"printf '\\035{i}\\036' >>{log}")
        script.append(line)
    setup = ("set -e; mount --bind \"$1\" \"$1\"; for d in /root /etc/sysctl.d /etc/modules-load.d; do "
             "mount -t tmpfs kpd-sandbox \"$d\"; done; mount -o remount,bind,ro /; "
             "mount --bind /proc/sys /proc/sys; mount -o remount,bind,ro /proc/sys; "
             "cd \"$1\"; exec env -i PATH=\"$2\" HOME=/root /bin/bash --norc --noprofile")
    proc = subprocess.run(["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", setup, "sh",
                           str(cwd), str(stubs)], input="\n".join(script) + "\n", capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode in (0, 1, 127) or proc.returncode < 128, proc.stderr
    assert sorted(p.name for p in cwd.iterdir()) == ["log"], f"a pasted command created files: {proc.stderr}"
    per_line: list[list[list[str]]] = []
    for record in log.read_text().split("\x1e"):
        if record.startswith("\x1d"):
            per_line.append([])
        elif record:
            per_line[-1].append(record.split("\x1f"))
    return per_line


@pytest.mark.root
@pytest.mark.parametrize("scenario,payload", [(s, PAYLOADS[0]) for s in SCENARIOS]
                         + [("B1-healthy", p) for p in PAYLOADS[1:]])
def test_pasted_commands_run_only_what_they_say(tmp_path: Path, scenario: str, payload: str) -> None:
    reason = _sandbox_reason()
    if reason:
        if REQUIRE_ROOT:
            pytest.fail(reason)
        pytest.skip(reason)
    commands = _scan_commands(hostile_bundle(scenario, tmp_path / "bundles", payload))
    offered = [c for c in commands if not c.startswith("#")]
    # the planted rule is reported and its delete command is offered, carrying the payload as data
    deletes = [c for c in offered if " -D " in c and HOSTILE_CHAIN[:2] in c]
    assert deletes or scenario == "B4-ipvs-unavailable", commands  # B4's node is not in a FORWARD-checked mode
    ran = _paste(offered, tmp_path / "sandbox")
    assert len(ran) == len(offered)
    for line, argvs in zip(offered, ran, strict=True):
        assert not any(a[0] == "UNEXPECTED" for a in argvs), f"{line!r} started a program it does not name: {argvs}"
        expected = _simple_commands(_words(line))
        if "$(uname -r)" in line:
            expected.append(["uname", "-r"])
        assert sorted(argvs) == sorted(expected), line
    logged_args = {a for argvs in ran for argv in argvs for a in argv}
    if deletes:
        assert HOSTILE_CHAIN in logged_args and payload in logged_args  # one literal argument each
    # values that are not Kubernetes names are not put into kubectl commands at all
    assert any(c.startswith("# command not offered") for c in commands) or scenario in ("B1-healthy",
                                                                                          "B3-backend-split")
