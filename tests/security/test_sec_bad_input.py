"""Issue 9 items 4-6: bounded reading, one-line exit 2 for every bad input, files are what they claim.

Each case starts from the real B1 bundle (tests/fixtures/bundles, captured from a real cluster) and
plants one hostile shape; the scan runs through the CLI in a subprocess with a time limit. Before the
fix each of these exited 70 ("internal error"), hung (FIFO, sparse member), ran for minutes (alias bomb,
10,000 nodes) or read outside the bundle (symlinks).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from kpdoctor.node.bundle import read_bundle
from tests.conftest import BUNDLES
from tests.support import cli

B1 = BUNDLES / "B1-healthy" / "bundle"
REPO = Path(__file__).resolve().parents[2]


def kpd(*args: str, timeout: float = 60, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return cli.kpd(*args, env=env, timeout=timeout)


def assert_one_line_exit_2(proc: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kpdoctor: error: "), proc.stderr[-2000:]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def _copy(tmp: Path) -> Path:
    root = tmp / "b"
    shutil.copytree(B1, root)
    return root


def _edit_json(path: Path, edit: Callable[[dict], None]) -> None:
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))


def _deep_json(root: Path) -> str:
    (root / "cluster" / "services.json").write_text("[" * 100_000 + "]" * 100_000)
    return "services.json"


def _deep_yaml(root: Path) -> str:
    (root / "cluster" / "extra.yaml").write_text("- " * 100_000 + "x\n")
    return "extra.yaml"


def _huge_number(root: Path) -> str:
    svc = root / "cluster" / "services.json"
    svc.write_text(svc.read_text().replace('"port": 80', '"port": 1e999', 1))
    assert "1e999" in svc.read_text()
    return "services.json"


def _alias_bomb(root: Path) -> str:
    text = 'a0: &a0 ["x","x","x","x","x","x","x","x","x"]\n'
    for i in range(1, 25):
        text += f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]\n"
    (root / "cluster" / "bomb.yaml").write_text(text + "kind: List\nitems: []\n")
    return "alias bomb"


def _recursive_alias(root: Path) -> str:
    (root / "cluster" / "loop.yaml").write_text("kind: List\nitems: &a [*a]\n")
    return "recursive YAML alias"


def _manifest_types(root: Path) -> str:
    (root / "manifest.json").write_text(json.dumps({"format": "kpdoctor-bundle/v1", "nodes": {
        "edge-1": {"files": {"iptables-save.txt": {"exit_code": "x", "duration": "abc"}}}}}))
    return "exit_code must be an integer"


def _manifest_nodes_list(root: Path) -> str:
    (root / "manifest.json").write_text(json.dumps({"format": "kpdoctor-bundle/v1", "nodes": ["edge-1"]}))
    return "nodes must be an object"


@pytest.mark.parametrize("plant", [_deep_json, _deep_yaml, _huge_number, _alias_bomb, _recursive_alias,
                                   _manifest_types, _manifest_nodes_list])
def test_a_bad_bundle_is_one_line_and_exit_2(tmp_path: Path, plant: Callable[[Path], str]) -> None:
    root = _copy(tmp_path)
    fragment = plant(root)
    started = time.monotonic()
    assert_one_line_exit_2(kpd("scan", "--bundle", str(root), "-o", "json"), fragment)
    assert time.monotonic() - started < 30


def _tar(path: Path, extra: list[tuple[tarfile.TarInfo, bytes]], *, base: Path = B1) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        archive.add(base, arcname="bundle")
        for info, data in extra:
            archive.addfile(info, io.BytesIO(data))
    return path


def _member(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def test_tar_errors_name_the_member_not_a_temporary_directory(tmp_path: Path) -> None:
    tar = _tar(tmp_path / "deep.tar.gz", [_member("bundle/cluster/deep.json", b"[" * 100_000)])
    assert_one_line_exit_2(kpd("scan", "--bundle", str(tar)), f"{tar}:cluster/deep.json", "nested deeper")
    tar = _tar(tmp_path / "bad.tar.gz", [_member("bundle/cluster/bad.yaml", b"a: [\n")])
    assert_one_line_exit_2(kpd("scan", "--bundle", str(tar)), f"{tar}:cluster/bad.yaml")


def test_tar_members_that_break_a_filesystem_are_harmless(tmp_path: Path) -> None:
    """A member that is both a file and a directory, and an over-long name: no temporary extraction."""
    tar = _tar(tmp_path / "odd.tar.gz", [_member("bundle/cluster/services.json/x", b"x"),
                                         _member("bundle/cluster/logs/kube-system/" + "a" * 5000 + ".log", b"x"),
                                         _member("bundle/nodes/edge-1/" + "b" * 5000, b"x")])
    proc = kpd("scan", "--bundle", str(tar), "-o", "json")
    assert proc.returncode in (0, 1), proc.stderr
    assert json.loads(proc.stdout)["nodes"]


@pytest.mark.skipif(shutil.which("tar") is None, reason="needs GNU tar to write a sparse member")
def test_a_sparse_10_gib_member_never_reaches_memory(tmp_path: Path) -> None:
    src = tmp_path / "src" / "bundle"
    shutil.copytree(B1, src)
    with open(src / "nodes" / "edge-1" / "iptables-save.txt", "wb") as handle:
        handle.truncate(10 * 1024**3)
    tar = tmp_path / "sparse.tar.gz"
    subprocess.run(["tar", "-C", str(src.parent), "--sparse", "-czf", str(tar), "bundle"], check=True, timeout=120)
    shutil.rmtree(src)
    assert tar.stat().st_size < 200_000
    started = time.monotonic()
    proc = kpd("scan", "--bundle", str(tar), timeout=60)
    assert_one_line_exit_2(proc, "nodes/edge-1/iptables-save.txt", "10,737,418,240 bytes", "KPDOCTOR_MAX_FILE_MB")
    assert time.monotonic() - started < 30


def test_the_file_size_limit_is_configurable(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    proc = kpd("scan", "--bundle", str(root), env={"KPDOCTOR_MAX_FILE_MB": "1"})
    assert proc.returncode in (0, 1), proc.stderr  # B1's files are all below 1 MiB
    (root / "nodes" / "edge-1" / "iptables-save.txt").write_bytes(b"#" * (1024 * 1024 + 1))
    assert_one_line_exit_2(kpd("scan", "--bundle", str(root), env={"KPDOCTOR_MAX_FILE_MB": "1"}),
                           "iptables-save.txt", "1,048,577 bytes")


def test_finding_10000_nodes_in_a_bundle_is_linear(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as archive:
        for i in range(10_000):
            for key in ("uname-r.txt", "sysctl.txt"):
                info, data = _member(f"nodes/n{i}/{key}", b"6.1.0\n")
                archive.addfile(info, io.BytesIO(data))
    tar = tmp_path / "many.tar.gz"
    tar.write_bytes(buf.getvalue())
    started = time.monotonic()
    states = read_bundle(tar).node_states()
    elapsed = time.monotonic() - started
    assert len(states) == 10_000 and states["n9999"].text("uname-r.txt") == "6.1.0\n"
    assert elapsed < 40, f"{elapsed:.1f} s (quadratic before the fix: 104 s here, 215 s in the issue)"


def test_directory_bundles_do_not_follow_symlinks_out_or_hang_on_fifos(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    secret = tmp_path / "outside"
    secret.mkdir()
    (secret / "kubeconfig.log").write_text("token: OUTSIDE-SECRET-1\n")
    (secret / "evil.json").write_text('{"kind": "List", "items": [1]}')
    logs = root / "cluster" / "logs" / "kube-system"
    os.symlink(secret, root / "cluster" / "logs" / "outside")  # a symlinked namespace directory
    os.symlink(secret / "kubeconfig.log", logs / "kube-proxy-link.log")
    os.symlink(secret / "evil.json", root / "cluster" / "evil.json")
    os.symlink(secret, root / "nodes" / "edge-1" / "linked")
    os.symlink(secret, root / "nodes" / "edge-9")  # a whole node that is a symlink
    os.mkfifo(logs / "fifo.log")
    os.mkfifo(root / "cluster" / "fifo.json")
    os.mkfifo(root / "nodes" / "edge-1" / "fifo.txt")
    proc = kpd("scan", "--bundle", str(root), "-o", "json", timeout=60)
    assert proc.returncode in (0, 1), proc.stderr
    assert "OUTSIDE-SECRET" not in proc.stdout
    assert sorted(n["name"] for n in json.loads(proc.stdout)["nodes"]) == ["edge-1", "edge-2"]
    bundle = read_bundle(root)  # the in-memory reader too
    assert not any("linked" in p or "fifo" in p or "edge-9" in p for p in bundle.files)
    assert "kube-system/kube-proxy-link" not in bundle.cluster_state().logs


def test_over_long_paths_are_one_line_exit_2(tmp_path: Path) -> None:
    assert_one_line_exit_2(kpd("scan", "--bundle", str(tmp_path / ("x" * 5000))), "File name too long")
    assert_one_line_exit_2(kpd("scan", "--snapshot", str(tmp_path / ("y/" * 3000))), "File name too long")


def test_a_lone_surrogate_in_names_is_reported_not_a_crash(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    _edit_json(root / "cluster" / "services.json",
               lambda d: d["items"][0]["metadata"].update(name="svc-\udc80-\u202e"))
    for fmt in ("json", "console", "markdown", "junit", "html"):
        proc = kpd("scan", "--bundle", str(root), "-o", fmt)
        assert proc.returncode in (0, 1), (fmt, proc.stderr)
        assert "\udc80" not in proc.stdout and "\u202e" not in proc.stdout


def test_absurdly_deep_node_json_is_unparsable_output_not_a_crash(tmp_path: Path) -> None:
    """A node's own files are node output: a deep one is reported as unparsable, the rest still runs."""
    root = _copy(tmp_path)
    (root / "nodes" / "edge-1" / "nft-ruleset.json").write_text("[" * 100_000 + "]" * 100_000)
    (root / "nodes" / "edge-1" / "ip-addr.json").write_text("[" * 100_000)
    for args in (("scan", "--bundle", str(root)), ("node", "edge-1", "--transport", "bundle", "--bundle", str(root)),
                 ("gate", "kube-proxy-removal", "--bundle", str(root))):
        proc = kpd(*args)
        assert proc.returncode in (0, 1, 3), (args, proc.stderr[-1500:])
        assert "internal error" not in proc.stderr and "Traceback" not in proc.stderr


def test_an_alias_bomb_in_the_kube_proxy_configmap_is_an_input_error(tmp_path: Path) -> None:
    """The ConfigMap's config.conf is YAML inside JSON: parsed with the same limits as a file."""
    root = _copy(tmp_path)
    bomb = 'a0: &a0 ["x","x","x","x","x","x","x","x","x"]\n' + "".join(
        f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]\n" for i in range(1, 25))

    def plant(doc: dict) -> None:
        for item in doc["items"]:
            if item["metadata"]["name"] == "kube-proxy":
                key = next(k for k in item["data"] if k.endswith(".conf") and "kubeconfig" not in k)
                item["data"][key] = bomb
    _edit_json(root / "cluster" / "configmaps.json", plant)
    started = time.monotonic()
    proc = kpd("scan", "--bundle", str(root))
    assert "internal error" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-1500:]
    assert "alias bomb" in proc.stderr + proc.stdout
    assert time.monotonic() - started < 30
