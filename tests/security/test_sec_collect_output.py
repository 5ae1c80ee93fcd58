"""Issue 9 item 6: `collect` writes its .tar.gz atomically through an exclusively created temporary file.

Before the fix it wrote `<out>.partial` with a plain open: a symlink planted at that name (say, by another
user of a shared /tmp) made kpdoctor overwrite the symlink's target.
"""

from __future__ import annotations

import tarfile
from pathlib import Path
from types import MappingProxyType

import pytest

from kpdoctor.node.bundle import read_bundle, write_bundle
from kpdoctor.node.state import Fact, NodeState


def _state() -> NodeState:
    return NodeState("n1", "local", MappingProxyType({"uname-r.txt": Fact("uname-r.txt", "6.1.0\n", "uname -r", 0)}))


def test_a_planted_partial_symlink_is_not_followed(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    out = tmp_path / "out.tar.gz"
    (tmp_path / "out.tar.gz.partial").symlink_to(victim)
    write_bundle(out, nodes={"n1": _state()})
    assert victim.read_text() == "precious\n"
    assert (tmp_path / "out.tar.gz.partial").is_symlink()  # left alone
    assert tarfile.is_tarfile(out) and not out.is_symlink()
    assert read_bundle(out).node_state("n1").text("uname-r.txt") == "6.1.0\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.tar.gz", "out.tar.gz.partial", "victim.txt"]


def test_a_failed_write_leaves_no_temporary_file(tmp_path: Path) -> None:
    class Boom(Exception):
        pass

    class Exploding(dict):  # type: ignore[type-arg]
        def items(self):  # type: ignore[no-untyped-def]
            raise Boom

    out = tmp_path / "out.tar.gz"
    from kpdoctor.node import bundle as nb

    with pytest.raises(Boom):
        nb._write_tar(out, Exploding())
    assert list(tmp_path.iterdir()) == []
