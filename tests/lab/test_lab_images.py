"""kpdoctor.lab.images: the OCI layout tarballs the lab's kubelet imports, built from this machine's real
files (dash, its libraries); what containerd reads is checked on the real containerd in
tests/test_klab_kubelet.py."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
from pathlib import Path

import pytest

from kpdoctor.lab import images


def test_host_closure_follows_symlink_chains_into_usr() -> None:
    sh = shutil.which("sh", path="/usr/bin:/bin")
    if sh is None:
        pytest.skip("no sh on this machine")
    entries = images._host_closure([sh])
    kinds = {k: v.split(":", 1)[0] for k, v in entries.items()}
    assert "file" in kinds.values()  # the chain ends at a real file (dash on Debian)
    assert all(not k.startswith("/") for k in entries)
    assert not any(k.startswith(("bin/", "lib/", "sbin/")) for k in entries)  # folded into usr/ (merged /usr)


def test_oci_layout_is_consistent(tmp_path: Path) -> None:
    sh = shutil.which("sh", path="/usr/bin:/bin")
    if sh is None:
        pytest.skip("no sh on this machine")
    paths = [sh, *sorted(images._libraries([str(Path(sh).resolve())]))]
    layer = images.layer_tar(images._host_closure(paths), {"hello": b"#!/bin/sh\necho hi\n"})
    out = images.write_oci(tmp_path / "t.oci.tar", "example.invalid/t:1", layer, ["/hello"])
    with tarfile.open(out) as tar:
        names = tar.getnames()
        blob = {n.rsplit("/", 1)[1]: tar.extractfile(n).read() for n in names if n.startswith("blobs/")}  # type: ignore[union-attr]
        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
    assert "oci-layout" in names
    for digest, data in blob.items():
        assert hashlib.sha256(data).hexdigest() == digest
    desc = index["manifests"][0]
    assert desc["annotations"]["io.containerd.image.name"] == "example.invalid/t:1"
    manifest = json.loads(blob[desc["digest"][7:]])
    config = json.loads(blob[manifest["config"]["digest"][7:]])
    assert config["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(layer).hexdigest()]
    assert config["config"]["Entrypoint"] == ["/hello"]
    with tarfile.open(fileobj=io.BytesIO(layer)) as inner:
        members = {m.name: m for m in inner.getmembers()}
    assert members["bin"].issym() and members["bin"].linkname == "usr/bin"
    assert members["tmp"].isdir() and members["tmp"].mode == 0o1777
    assert all(m.uid == 0 and m.mtime == 0 for m in members.values())
    assert images.layer_tar(images._host_closure(paths), {"hello": b"#!/bin/sh\necho hi\n"}) == layer  # deterministic


def test_missing_tool_is_one_line() -> None:
    with pytest.raises(images.LabError, match="kpdoctor-no-such-tool"):
        images.host_tools(("kpdoctor-no-such-tool",))
