"""Issue 9 item 7: node names and addresses are checked before paramiko's ssh_config lookup.

paramiko expands `%h` in `Match exec "..."` and runs the command through a shell (with `invoke`). The
test uses a real ssh_config and real paramiko: a benign address proves the Match exec really runs, and
hostile node names / addresses (as the API or a bundle could carry them) must never reach it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from kpdoctor.node.hostaddr import is_host
from kpdoctor.node.ssh import SshOptions, resolve_endpoint
from kpdoctor.node.transport import TransportError

pytest.importorskip("invoke", reason="paramiko needs invoke for Match exec (dev extra in pyproject.toml)")


@pytest.fixture(autouse=True)
def _stdin_devnull(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    with open(os.devnull) as devnull:  # invoke (Match exec) reads stdin, which pytest captures
        monkeypatch.setattr("sys.stdin", devnull)
        yield


def _config(tmp_path: Path) -> tuple[Path, Path]:
    ran = tmp_path / "ran"
    ran.mkdir()
    config = tmp_path / "ssh_config"
    config.write_text(f'Match exec "touch {ran}/%h"\n  User matched\n')
    return config, ran


def test_a_benign_address_reaches_match_exec(tmp_path: Path) -> None:
    config, ran = _config(tmp_path)
    endpoint = resolve_endpoint("edge-1", "10.0.0.5", SshOptions(config_path=str(config)))
    assert endpoint.user == "matched" and sorted(p.name for p in ran.iterdir()) == ["10.0.0.5", "edge-1"]


@pytest.mark.parametrize("name,address", [
    ("edge-1", "10.0.0.5;touch PWNED"),
    ("edge-1", "$(touch PWNED)"),
    ("edge-1", "10.0.0.5 -oProxyCommand=touch PWNED"),
    ("`touch PWNED`", ""),
    ("x;touch PWNED", ""),
    ("edge-1", "a\nb"),
])
def test_hostile_names_and_addresses_never_reach_match_exec(tmp_path: Path, name: str, address: str) -> None:
    config, ran = _config(tmp_path)
    with pytest.raises(TransportError, match="neither an IP address nor a DNS name"):
        resolve_endpoint(name, address, SshOptions(config_path=str(config)))
    assert list(ran.iterdir()) == [] and not (Path.cwd() / "PWNED").exists()


def test_a_hostile_node_name_with_a_valid_address_is_not_looked_up(tmp_path: Path) -> None:
    config, ran = _config(tmp_path)
    endpoint = resolve_endpoint("x;touch PWNED", "10.0.0.5", SshOptions(config_path=str(config)))
    assert endpoint.host == "10.0.0.5" and [p.name for p in ran.iterdir()] == ["10.0.0.5"]
    assert not (Path.cwd() / "PWNED").exists()


def test_is_host() -> None:
    good = ["10.0.0.1", "fd00::1", "edge-1", "ip-10-0-0-1.ec2.internal", "node.example.com.", "a" * 63]
    bad = ["", "a" * 64, "-x", "x-", "a..b", "a b", "a;b", "$(id)", "a/b", "a_b", "x" * 254, "ünï"]
    assert [g for g in good if not is_host(g)] == [] and [b for b in bad if is_host(b)] == []
