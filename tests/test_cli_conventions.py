"""kubectl's conventions, one test each (issue 13 item 2): -h, version/--version, --color and NO_COLOR,
shell completion, -o is the format and -f/--output-file the file, one --timeout default, help on every option,
boolean flags as flags, a quiet end on a closed pipe, `proxier view` exits 1 on a difference like diff.

The command tree is read from the real click command kpdoctor runs; every behaviour is checked by running
the real `kpdoctor` in a subprocess (bash completion in the real bash).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer

from kpdoctor.cli import app
from kpdoctor.commands.options import DEFAULT_TIMEOUT
from tests.support.pty import run_on_terminal
from tests.support.replay_api import Replay, serve_replay

ROOT = Path(__file__).resolve().parents[1]
BUNDLES = ROOT / "tests" / "fixtures" / "bundles"
B1 = BUNDLES / "B1-healthy" / "bundle"
B2 = BUNDLES / "B2-stale-endpoint" / "bundle"
VERSION_INFO = ROOT / "tests" / "fixtures" / "versions" / "version-info-v1.37.2.json"
ESC = "\x1b["


def env(**extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "KUBECONFIG", "KUBERNETES_SERVICE_HOST",
                                                               "FORCE_COLOR", "KPDOCTOR_DEBUG")}  # fmt: skip
    return {**base, "PYTHONPATH": str(ROOT), "HOME": "/nonexistent-kpd-home", **extra}


def kpd(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kpdoctor", *args], capture_output=True, text=True, timeout=120,
                          env=env(**extra))  # fmt: skip


def commands(cmd: Any = None, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every (sub)command of the real CLI, with its path."""
    cmd = cmd if cmd is not None else typer.main.get_command(app)
    yield path, cmd
    for name, sub in sorted(getattr(cmd, "commands", {}).items()):
        yield from commands(sub, (*path, name))


def options() -> Iterator[tuple[tuple[str, ...], Any]]:
    for path, cmd in commands():
        for param in cmd.params:
            if param.param_type_name == "option" and not getattr(param, "hidden", False):
                yield path, param


def test_minus_h_is_help_everywhere() -> None:
    paths = [p for p, _ in commands()]
    assert ("version",) in paths and ("completion",) in paths and ("scan",) in paths
    for path in paths:
        short, long = kpd(*path, "-h"), kpd(*path, "--help")
        assert short.returncode == 0 and short.stdout == long.stdout and "Usage: kpdoctor" in short.stdout, path
        assert short.stderr == "", path


def test_version_and_dash_dash_version_without_a_cluster() -> None:
    out = kpd("version")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == ["kpdoctor Version", "Python Version",
                                                      "Kubernetes Client Version", "Server Version"]  # fmt: skip
    assert lines[1].startswith(f"Python Version: {sys.version.split()[0]}")
    import kubernetes

    assert lines[2] == f"Kubernetes Client Version: {kubernetes.__version__}"
    assert "unknown" in lines[3] and "no kubeconfig" in lines[3]
    assert kpd("--version").stdout == out.stdout
    client = kpd("version", "--client", "-o", "json")
    doc = json.loads(client.stdout)
    assert doc["server"] is None and doc["server_error"] is None and doc["kubernetes_client"] == kubernetes.__version__


class VersionReplay(Replay):
    """The recorded API replay plus `/version`, answering with a real version.Info body."""

    def do_GET(self) -> None:  # noqa: N802
        if self.path.rstrip("/") == "/version":  # the client asks for /version/; the apiserver serves both
            self._send(200, VERSION_INFO.read_bytes())
            return
        super().do_GET()


def test_version_reports_the_reachable_server(tmp_path: Path) -> None:
    with serve_replay(VersionReplay, tmp_path) as kubeconfig:
        out = kpd("version", "--kubeconfig", str(kubeconfig))
        as_json = kpd("version", "-o", "json", KUBECONFIG=str(kubeconfig))
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == "Server Version: v1.37.2"
    assert json.loads(as_json.stdout)["server"] == "v1.37.2"
    gone = kpd("version", "--kubeconfig", str(kubeconfig), "--timeout", "2")  # the server is down now
    assert gone.returncode == 0 and "Server Version: unknown; not reachable" in gone.stdout, gone.stdout


def test_color_auto_always_never_and_no_color() -> None:
    scan = ("scan", "--bundle", str(B2), "--fail-on", "critical")
    assert ESC not in kpd(*scan).stdout  # auto, piped: no colour
    always = kpd("--color", "always", *scan)
    assert ESC in always.stdout
    assert kpd(*scan, "--color=always").stdout == always.stdout  # a global flag: accepted after the command
    assert ESC in kpd(*scan, "--color", "always", NO_COLOR="1").stdout  # the explicit flag wins
    assert ESC not in kpd(*scan, "--color", "never").stdout
    assert ESC not in kpd(*scan, "--color", "auto", NO_COLOR="1").stdout
    bad = kpd("--color", "sometimes", "version")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "auto, always, never" in bad.stderr


def test_color_auto_on_a_terminal_and_no_color() -> None:
    def on_tty(**extra: str) -> str:
        code, out = run_on_terminal([sys.executable, "-m", "kpdoctor", "scan", "--bundle", str(B2), "--fail-on",
                                     "critical"], env(TERM="xterm", **extra))  # fmt: skip
        assert code == 0
        return out

    assert ESC in on_tty()
    assert ESC not in on_tty(NO_COLOR="1")


def kpdoctor_on_path(tmp_path: Path) -> Path:
    """A `kpdoctor` command on PATH running this worktree (what `pip install` puts there)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    exe = bindir / "kpdoctor"
    exe.write_text(f'#!/bin/sh\nexec {sys.executable} -m kpdoctor "$@"\n')
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return bindir


def test_bash_completion_completes_commands_and_flags(tmp_path: Path) -> None:
    bash = shutil.which("bash")
    assert bash, "bash is part of every Debian install"
    bindir = kpdoctor_on_path(tmp_path)
    script = kpd("completion", "bash")
    assert script.returncode == 0 and "complete " in script.stdout
    (tmp_path / "kpd.bash").write_text(script.stdout)

    def complete(line: str) -> list[str]:
        words = line.split(" ")
        driver = (f"source {tmp_path / 'kpd.bash'}\nCOMP_WORDS=({' '.join(repr(w) for w in words)})\n"
                  f"COMP_CWORD={len(words) - 1}\n_kpdoctor_completion kpdoctor\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"\n")
        proc = subprocess.run([bash, "--norc", "-c", driver], capture_output=True, text=True, timeout=60,
                              env=env(PATH=f"{bindir}:{os.environ['PATH']}"))  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        return [w for w in proc.stdout.split("\n") if w]

    assert "scan" in complete("kpdoctor sc") and "version" not in complete("kpdoctor sc")
    assert {"--output-file", "--output"} <= set(complete("kpdoctor scan --outp"))
    assert "--offline" in complete("kpdoctor collect --off")


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_zsh_and_fish_scripts_and_their_answers(shell: str) -> None:
    """zsh and fish are not installed on the test machine: the script is checked for the protocol it uses,
    and kpdoctor's answer to that protocol (what the shell would show) is checked directly."""
    script = kpd("completion", shell)
    assert script.returncode == 0 and f"_KPDOCTOR_COMPLETE=complete_{shell}" in script.stdout
    extra = {"_KPDOCTOR_COMPLETE": f"complete_{shell}", "_TYPER_COMPLETE_ARGS": "kpdoctor sc"}
    if shell == "fish":
        extra["_TYPER_COMPLETE_FISH_ACTION"] = "get-args"
    answer = kpd(**extra)
    assert answer.returncode == 0 and "scan" in answer.stdout, (answer.stdout, answer.stderr)
    assert kpd("completion", "tcsh").returncode == 2


def test_dash_o_is_the_format_and_dash_f_the_file_everywhere() -> None:
    seen_o = seen_f = 0
    for path, opt in options():
        names = set(opt.opts) | set(opt.secondary_opts)
        if "-o" in names or "--output" in names:
            seen_o += 1
            assert {"-o", "--output"} <= names, (path, names)
            assert "|" in (opt.help or ""), (path, "-o lists its formats", opt.help)
        if "-f" in names or "--output-file" in names:
            seen_f += 1
            assert {"-f", "--output-file"} <= names, (path, names)
    assert seen_o >= 6 and seen_f >= 5, (seen_o, seen_f)
    old = kpd("scan", "--bundle", str(B1), "-o", "report.json")
    assert old.returncode == 2 and "-f/--output-file report.json" in old.stderr and old.stderr.count("\n") == 1


def test_one_timeout_default_everywhere() -> None:
    timeouts = [(path, opt.default) for path, opt in options() if "--timeout" in opt.opts]
    assert {p for p, _ in timeouts} >= {("scan",), ("node",), ("collect",), ("gate", "kube-proxy-removal"),
                                        ("version",)}  # fmt: skip
    assert {d for _, d in timeouts} == {DEFAULT_TIMEOUT}, timeouts


def test_every_option_and_argument_has_help() -> None:
    missing = []
    for path, cmd in commands():
        for param in cmd.params:
            if getattr(param, "hidden", False) or param.name == "help":
                continue
            if not (getattr(param, "help", None) or "").strip():
                missing.append((" ".join(path), param.name))
    assert missing == []


def test_boolean_options_are_flags() -> None:
    bools = [(path, opt) for path, opt in options() if isinstance(opt.default, bool)]
    assert len(bools) > 10
    for path, opt in bools:
        assert opt.is_flag, (path, opt.opts)
    help_text = kpd("scan", "-h").stdout
    assert "--probe " in help_text and "BOOLEAN" not in help_text


def test_closed_pipe_ends_quietly_like_sigpipe() -> None:
    """`kpdoctor scan | head`: the reader is gone before kpdoctor writes (deterministic: the read end is
    closed first). Killed by SIGPIPE as a C tool would be (the shell shows 141), nothing on stderr, never the
    "findings" exit code 1."""
    reader, writer = os.pipe()
    os.close(reader)
    try:
        proc = subprocess.run([sys.executable, "-m", "kpdoctor", "scan", "--bundle", str(B2)], stdout=writer,
                              stderr=subprocess.PIPE, text=True, timeout=120, env=env())  # fmt: skip
    finally:
        os.close(writer)
    assert proc.returncode == -signal.SIGPIPE and proc.stderr == ""
    bash = subprocess.run(["bash", "-c", f"set -o pipefail; {sys.executable} -m kpdoctor checks list -o json | "
                           "true; echo $?"], capture_output=True, text=True, timeout=120, env=env())  # fmt: skip
    assert bash.stdout.strip() in ("0", "141") and "Error" not in bash.stderr  # 0: all written before `true` exited


def test_proxier_view_exits_1_on_a_difference_like_diff() -> None:
    for bundle, code, text in ((B1, 0, "no differences"), (B2, 1, "stale-endpoints")):
        node = sorted(p.name for p in (bundle / "nodes").iterdir())[0]
        proc = kpd("proxier", "view", "--snapshot", str(bundle / "cluster"), "--node", node, "--iptables-save",
                   str(bundle / "nodes" / node / "iptables-save.txt"))  # fmt: skip
        assert proc.returncode == code and text in proc.stdout, (bundle.name, proc.returncode, proc.stderr)


def test_kubeconfig_and_context_on_every_live_command() -> None:
    live = {("scan",), ("node",), ("collect",), ("gate", "kube-proxy-removal"), ("version",)}
    for path, cmd in commands():
        if path in live:
            names = {o for p in cmd.params for o in p.opts}
            assert {"--kubeconfig", "--context"} <= names, path
    assert live <= {p for p, _ in commands()}


def test_help_names_values_as_kubectl_does() -> None:
    """`--node string`, `--timeout seconds`: no typer type labels such as <list[str]> on any option row (positional
    arguments keep typer's `ID <str>`)."""
    for path, _cmd in commands():
        rows = [line for line in kpd(*path, "-h").stdout.splitlines() if line.startswith("  -")]
        assert rows, path
        bad = [r for r in rows if re.search(r"<(str|int|float|bool|list\[[a-z]+\])>", r)]
        assert not bad, (path, bad)
    assert re.search(r"--timeout seconds\s", kpd("scan", "-h").stdout)
