"""kpdoctor.lab.pyimage: the kpdoctor image built offline from this machine's Python and this checkout.
The image's layer is unpacked and run (chroot, as the manifest's user 65534) without a kubelet; the same
image as a real Pod on the lab's kubelet is tests/lab/test_incluster_job_pod.py."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from kpdoctor.lab import pyimage
from tests.support.klab import REPO, kpdoctor, report


def test_requirement_closure_is_kpdoctors_runtime_dependencies_only() -> None:
    names = {d.metadata["Name"].lower() for d in pyimage.requirement_closure()}
    assert {"kubernetes", "pyyaml", "typer", "rich", "paramiko", "python-iptables"} <= names
    assert "kpdoctor" not in names
    assert not names & {"pytest", "pip", "setuptools", "ruff", "mypy", "hypothesis"}  # dev-only, not shipped
    assert "async-timeout" not in names  # aiohttp needs it only on Python < 3.11 (marker evaluated)


def test_layer_is_the_checkout_and_the_closure_without_tests_or_bytecode() -> None:
    entries, extra = pyimage.layer_entries(REPO)
    py = pyimage.PY
    site = f"usr/local/lib/{py}/site-packages"
    assert entries[f"usr/local/bin/{py}"].startswith("file:")
    assert any(k.startswith(f"{pyimage.LIBDIR}/libpython") for k in entries)
    assert entries[f"{site}/kpdoctor/checks/kube_proxy_health.py"] == f"file:{REPO}/checks/kube_proxy_health.py"
    assert f"{site}/kpdoctor/_docs/checks/KP-PROXY-HEALTH.md" in entries
    assert f"usr/local/lib/{py}/os.py" in entries and f"{site}/kubernetes/__init__.py" in entries
    assert not [k for k in entries if "__pycache__" in k or k.endswith(".pyc")]
    assert not [k for k in entries if {"test", "tests"} & set(k.split("/"))]
    assert not [k for k in entries if k.startswith(f"{site}/pip/") or k.startswith(f"{site}/_pytest/")]
    assert extra["usr/local/bin/kpdoctor"].startswith(f"#!/usr/local/bin/{py}\n".encode())


@pytest.mark.root("chroot")
def test_the_image_runs_kpdoctor_as_65534(tmp_path: Path) -> None:
    image = pyimage.kpdoctor_image_tar(REPO, tmp_path / "image")
    with tarfile.open(image.tarball) as oci:
        blob = {m.name.rsplit("/", 1)[1]: m for m in oci.getmembers() if m.name.startswith("blobs/")}
        index = json.load(oci.extractfile("index.json"))  # type: ignore[arg-type]
        manifest = json.load(oci.extractfile(blob[index["manifests"][0]["digest"][7:]]))  # type: ignore[arg-type]
        config = json.load(oci.extractfile(blob[manifest["config"]["digest"][7:]]))  # type: ignore[arg-type]
        layer = oci.extractfile(blob[manifest["layers"][0]["digest"][7:]]).read()  # type: ignore[union-attr]
    assert index["manifests"][0]["annotations"]["io.containerd.image.name"] == pyimage.KPDOCTOR_IMAGE
    assert config["config"]["User"] == "65534:65534" and "HOME=/tmp" in config["config"]["Env"]
    assert config["config"]["Entrypoint"] == ["kpdoctor"]  # as deploy/Containerfile
    root = tmp_path / "root"
    with tarfile.open(fileobj=io.BytesIO(layer)) as tar:
        tar.extractall(root, filter="tar")
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp"}
    chroot = shutil.which("chroot") or "chroot"
    proc = subprocess.run([chroot, "--userspec=65534:65534", str(root), "kpdoctor", "scan", "--demo", "-o", "json"],
                          capture_output=True, text=True, env=env, timeout=240, check=False)  # fmt: skip
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    in_image, here = report(proc), report(kpdoctor("scan", "--demo", "-o", "json"))
    assert [(c["id"], c["status"], len(c["groups"])) for c in in_image["checks"]] == \
        [(c["id"], c["status"], len(c["groups"])) for c in here["checks"]]  # fmt: skip
    assert in_image["checks"][0]["docs"].startswith(f"file:///usr/local/lib/{pyimage.PY}/site-packages/kpdoctor/_docs/")
    assert not list(root.rglob("__pycache__"))  # nothing written into the image (65534 cannot)
