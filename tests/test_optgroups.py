"""Option groups (kpdoctor/commands/optgroups.py) and the flags -> CollectOptions path (commands/nodeflags.py):
one definition of the SSH / probe / silences / kubeconfig options, the same in every command's --help,
handed over typed."""

from __future__ import annotations

import inspect

import pytest
import typer
from typer.testing import CliRunner

from kpdoctor.cli import app
from kpdoctor.commands import optgroups as og
from kpdoctor.commands.nodeflags import NodeFlags, kube_exec_api, node_collect_options, options_from
from kpdoctor.errors import InputError
from tests.support.cli import kpd


def _toy() -> typer.Typer:
    toy = typer.Typer()
    seen: dict[str, object] = {}

    @toy.command()
    @og.with_option_groups
    def run(name: str = typer.Argument(...), ssh: og.SshFlags = og.SSH, probe_flags: og.ProbeFlags = og.PROBE,
            last: int = typer.Option(0, "--last")) -> None:
        seen.update(name=name, ssh=ssh, probe=probe_flags, last=last)

    toy.seen = seen  # type: ignore[attr-defined]
    return toy


def test_group_becomes_one_typed_value() -> None:
    toy = _toy()
    result = CliRunner().invoke(toy, ["n1", "--ssh-user", "ops", "--ssh-key", "/k1", "--ssh-key", "/k2",
                                      "--ssh-port", "2222", "--accept-new-host-keys", "--probe-limit", "7",
                                      "--last", "3"])
    assert result.exit_code == 0, result.output
    seen = toy.seen  # type: ignore[attr-defined]
    assert seen["ssh"] == og.SshFlags(user="ops", key=("/k1", "/k2"), port=2222, accept_new_host_keys=True)
    assert seen["probe"] == og.ProbeFlags(timeout=1.0, limit=7, concurrency=32)
    assert (seen["name"], seen["last"]) == ("n1", 3)


def test_defaults_equal_the_dataclass_defaults() -> None:
    toy = _toy()
    assert CliRunner().invoke(toy, ["n1"]).exit_code == 0
    assert toy.seen["ssh"] == og.SshFlags()  # type: ignore[attr-defined]
    assert toy.seen["probe"] == og.ProbeFlags()  # type: ignore[attr-defined]


def test_options_stand_where_the_group_parameter_stood() -> None:
    def f(a: int = 1, ssh: og.SshFlags = og.SSH, b: int = 2) -> None: ...

    names = list(inspect.signature(og.with_option_groups(f)).parameters)
    assert names == ["a", *(n for n, _t, _o in og.SSH.options), "b"]


def _help(*path: str) -> list[str]:
    result = CliRunner().invoke(app, [*path, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    return result.output.splitlines()


@pytest.mark.parametrize("group,commands", [
    (og.SSH, [("collect",), ("node",), ("scan",)]),
    (og.PROBE, [("node",), ("scan",)]),
    (og.SILENCES, [("node",), ("scan",)]),
    (og.POD, [("node",), ("scan",)]),
    (og.LIVE_API, [("scan",), ("why",), ("gate", "kube-proxy-removal")]),
    (og.KUBECONFIG, [("collect",), ("node",), ("version",)]),
])
def test_every_command_shows_the_group_identically(group: object, commands: list[tuple[str, ...]]) -> None:
    """The group's options, in the group's order, one after the other, with the same help in each command."""
    blocks = []
    for path in commands:
        lines = _help(*path)
        flags = [o.param_decls[0] for _n, _t, o in group.options]  # type: ignore[attr-defined]
        at = [i for i, line in enumerate(lines) if line.strip().startswith(flags[0])]
        assert len(at) == 1, (path, flags[0])
        block = [" ".join(line.split()) for line in lines[at[0]:at[0] + len(flags)]]  # columns differ
        assert [b.split()[0] for b in block] == flags, path
        blocks.append(block)
    assert all(b == blocks[0] for b in blocks)


def test_silence_flags_without_a_file_load_nothing(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # no ./.kpdoctor.yaml here
    assert og.SilenceFlags(ignore=True).load() is None
    (tmp_path / "s.yaml").write_text("silences: []\n")
    assert og.SilenceFlags(config_file=str(tmp_path / "s.yaml")).load() is not None


def test_node_collect_options_only_for_transports_that_reach_nodes() -> None:
    for transport in (None, "none", "bundle"):
        assert node_collect_options(NodeFlags(transport), og.ApiFlags()) is None
    flags = NodeFlags("local", ssh=og.SshFlags(user="ops", port=2200), timeout=5.0)
    options = node_collect_options(flags, og.ApiFlags())
    assert (options.transport, options.timeout, options.ssh.user, options.ssh.port) == ("local", 5.0, "ops", 2200)
    assert options.ssh.connect_timeout == 5.0
    assert kube_exec_api("ssh", og.ApiFlags()) is None


@pytest.mark.parametrize("flags,message", [
    (NodeFlags("ssh", ssh=og.SshFlags(port=70000)), "not a TCP port"),
    (NodeFlags("ssh", ssh=og.SshFlags(key=("/nonexistent/key",))), "no such key file"),
    (NodeFlags("ssh", timeout=0), "--timeout must be positive"),
    (NodeFlags("ssh", concurrency=0), "--concurrency must be at least 1"),
])
def test_bad_flags_fail_before_anything_is_contacted(flags: NodeFlags, message: str) -> None:
    with pytest.raises(InputError, match=message):
        options_from(flags, transport="ssh", bundle=None)


@pytest.mark.parametrize("flag,commands", [
    ("--timeout", [("collect",), ("node",), ("scan",), ("gate", "kube-proxy-removal"), ("version",)]),
    ("-f, --output-file", [("node",), ("scan",), ("gate", "kube-proxy-removal"), ("gate", "mode-switch")]),
])
def test_shared_single_options_read_the_same(flag: str, commands: list[tuple[str, ...]]) -> None:
    lines = {" ".join(line.split()) for path in commands for line in _help(*path) if line.strip().startswith(flag)}
    assert len(lines) == 1, lines


@pytest.mark.parametrize("argv,message", [
    (["scan", "--analyze-in-pod"], "--analyze-in-pod needs --transport pod and --collector-image"),
    (["node", "n1", "--analyze-in-pod", "--transport", "pod"], "--analyze-in-pod needs --transport pod and"),
    (["node", "n1", "--analyze-in-pod", "--transport", "ssh", "--collector-image", "i"], "needs --transport pod"),
    (["node", "n1", "--transport", "pod", "--analyze-in-pod", "--collector-image", "i", "--snapshot", "/nonexistent",
      "--probe"], "not with --snapshot, --probe"),
    (["node", "n1", "--transport", "pod", "--analyze-in-pod", "--collector-image", "i", "--result-json"],
     "not with --result-json"),
])  # fmt: skip
def test_in_pod_flags_fail_before_anything_is_contacted(argv: list[str], message: str) -> None:
    """`scan` and `node` take --collector-image / --analyze-in-pod from one group (og.POD), checked alike."""
    proc = kpd(*argv, "--kubeconfig", "/nonexistent/kubeconfig")
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
