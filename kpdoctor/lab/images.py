"""Container images for the lab's kubelet, built offline as OCI image-layout tarballs.

No image can be pulled here, so the lab writes its own, from files already on this machine:

    pause        a static Go program (built with the local Go toolchain) that waits for SIGTERM/SIGINT
    kube-proxy   the lab's kube-proxy binary + this machine's Debian userland kube-proxy and kpdoctor's
                 collector use: sh, cat, sleep, uname, iptables (nft and legacy), nft, ip, sysctl, conntrack,
                 ipset, ipvsadm, with the shared libraries `ldd` names and the xtables modules

Each image is one uncompressed layer in an OCI layout (`oci-layout`, `index.json`, `blobs/sha256/...`)
written into a tar, with `io.containerd.image.name` set so `ctr -n k8s.io images import` tags it.
Files keep their paths and symlink chains (Debian's /etc/alternatives included), so `iptables` in the
image is what `iptables` is on this host.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from kpdoctor.lab import k8sbuild
from kpdoctor.lab.netns import LabError

PAUSE_IMAGE = "registry.k8s.io/pause:3.10"
KUBE_PROXY_REPO = "registry.k8s.io/kube-proxy"
TOOLS = ("sh", "cat", "sleep", "uname", "iptables", "iptables-save", "iptables-restore", "ip6tables",
         "ip6tables-save", "ip6tables-restore", "iptables-nft", "iptables-nft-save", "iptables-nft-restore",
         "ip6tables-nft", "ip6tables-nft-save", "ip6tables-nft-restore", "iptables-legacy", "iptables-legacy-save",
         "iptables-legacy-restore", "ip6tables-legacy", "ip6tables-legacy-save", "ip6tables-legacy-restore",
         "nft", "ip", "sysctl", "conntrack", "ipset", "ipvsadm")  # fmt: skip
OPTIONAL_TOOLS = frozenset({"ipset", "ipvsadm", "conntrack"})
ETC_FILES = ("/etc/protocols", "/etc/services", "/etc/ethertypes", "/etc/nsswitch.conf")
XTABLES_DIR = "/usr/lib/x86_64-linux-gnu/xtables"
MERGED_USR = {"bin": "usr/bin", "sbin": "usr/sbin", "lib": "usr/lib", "lib64": "usr/lib64"}
EMPTY_DIRS = ("dev", "proc", "sys", "tmp", "run", "var/run", "var/lib/kube-proxy", "etc")
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_LDD_RE = re.compile(r"(/\S+)\s+\(0x[0-9a-f]+\)")

PAUSE_GO = """package main

import (
\t"os"
\t"os/signal"
\t"syscall"
)

// The sandbox's first process: hold the pod's namespaces until the runtime stops it.
func main() {
\tc := make(chan os.Signal, 1)
\tsignal.Notify(c, syscall.SIGTERM, syscall.SIGINT)
\t<-c
}
"""


ECHO_IMAGE = "kpdoctor.local/echo:lab"
ECHO_GO = """package main

import (
\t"net/http"
\t"os"
)

// A pod behind a Service: answers every request with its hostname (the pod name).
func main() {
\tname, _ := os.Hostname()
\thttp.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(name + "\\n")) })
\thttp.ListenAndServe(":8080", nil)
}
"""


@dataclass(frozen=True)
class Image:
    name: str
    tarball: Path


def images_dir() -> Path:
    return k8sbuild.cache_root() / "images"


def kube_proxy_image(version: str) -> str:
    return f"{KUBE_PROXY_REPO}:{k8sbuild.resolve_release(version)}"


def _tar_info(name: str, *, kind: bytes = tarfile.REGTYPE, mode: int = 0o644, size: int = 0,
              link: str = "") -> tarfile.TarInfo:  # fmt: skip
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.size, info.linkname = kind, mode, size, link
    info.uid = info.gid = 0
    info.mtime = 0
    return info


def _host_closure(paths: Iterable[str]) -> dict[str, str]:
    """Image path (no leading /) -> 'file:<host path>' or 'link:<target>' for every path and its symlink
    chain, with /bin, /sbin, /lib, /lib64 folded into /usr as on this (merged-/usr) Debian."""
    entries: dict[str, str] = {}
    todo = list(paths)
    while todo:
        path = os.path.normpath(todo.pop())
        parent = os.path.realpath(os.path.dirname(path))
        here = os.path.join(parent, os.path.basename(path))
        key = here.lstrip("/")
        if key in entries:
            continue
        if os.path.islink(here):
            target = os.readlink(here)
            entries[key] = "link:" + target
            todo.append(target if target.startswith("/") else os.path.join(parent, target))
        elif os.path.isfile(here):
            entries[key] = "file:" + here
        elif os.path.isdir(here):
            todo += [os.path.join(here, n) for n in os.listdir(here)]
    return entries


def _libraries(binaries: Iterable[str]) -> set[str]:
    found: set[str] = set()
    for binary in binaries:
        proc = subprocess.run(["ldd", binary], capture_output=True, text=True, check=False)
        found.update(m.group(1) for m in _LDD_RE.finditer(proc.stdout))
    return found


def layer_tar(entries: dict[str, str], extra: dict[str, bytes] | None = None) -> bytes:
    """One deterministic layer: merged-/usr symlinks, empty dirs, then `entries` and `extra` (path -> bytes)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, target in MERGED_USR.items():
            tar.addfile(_tar_info(name, kind=tarfile.SYMTYPE, mode=0o777, link=target))
        dirs = set(EMPTY_DIRS) | set(MERGED_USR.values())
        for name in list(entries) + list(extra or {}):
            parts = name.split("/")[:-1]
            dirs.update("/".join(parts[: i + 1]) for i in range(len(parts)))
        for name in sorted(dirs - set(entries) - set(MERGED_USR)):
            mode = 0o1777 if name == "tmp" else 0o755
            tar.addfile(_tar_info(name, kind=tarfile.DIRTYPE, mode=mode))
        for name in sorted(entries):
            kind, _, value = entries[name].partition(":")
            if kind == "link":
                tar.addfile(_tar_info(name, kind=tarfile.SYMTYPE, mode=0o777, link=value))
                continue
            data = Path(value).read_bytes()
            mode = os.stat(value).st_mode & 0o7777
            tar.addfile(_tar_info(name, mode=mode, size=len(data)), io.BytesIO(data))
        for name, data in sorted((extra or {}).items()):
            tar.addfile(_tar_info(name, mode=0o755, size=len(data)), io.BytesIO(data))
    return buf.getvalue()


def _blob(tar: tarfile.TarFile, data: bytes) -> tuple[str, int]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    tar.addfile(_tar_info(f"blobs/sha256/{digest[7:]}", size=len(data)), io.BytesIO(data))
    return digest, len(data)


def write_oci(out: Path, name: str, layer: bytes, entrypoint: list[str], *, env: Iterable[str] = (),
              user: str = "") -> Path:  # fmt: skip
    """An OCI image layout tarball holding one image (one layer) tagged `name` (`env` after PATH; `user` as
    the image config's User, e.g. "65534:65534"; empty: root)."""
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = {
        "architecture": "amd64", "os": "linux",
        "config": {"Entrypoint": entrypoint, "Env": [PATH_ENV, *env], "WorkingDir": "/",
                   "Labels": {"org.opencontainers.image.description": "built offline by kpdoctor lab"},
                   **({"User": user} if user else {})},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": "kpdoctor.lab.images"}],
    }  # fmt: skip
    tmp = out.with_suffix(".partial")
    with tarfile.open(tmp, "w") as tar:
        tar.addfile(_tar_info("oci-layout", size=30), io.BytesIO(b'{"imageLayoutVersion":"1.0.0"}'))
        layer_digest, layer_size = _blob(tar, layer)
        cfg_digest, cfg_size = _blob(tar, json.dumps(config, sort_keys=True).encode())
        manifest = {
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg_digest, "size": cfg_size},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest,
                        "size": layer_size}],
        }  # fmt: skip
        man_digest, man_size = _blob(tar, json.dumps(manifest, sort_keys=True).encode())
        index = {
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": man_digest,
                           "size": man_size, "platform": {"architecture": "amd64", "os": "linux"},
                           "annotations": {"io.containerd.image.name": name,
                                           "org.opencontainers.image.ref.name": name.rpartition(":")[2]}}],
        }  # fmt: skip
        data = json.dumps(index, sort_keys=True).encode()
        tar.addfile(_tar_info("index.json", size=len(data)), io.BytesIO(data))
    os.replace(tmp, out)
    return out


def _go_binary(workdir: Path, source: str, what: str) -> bytes:
    go = k8sbuild.find_go()
    if go is None:
        raise LabError(f"building the {what} image needs Go (go not on PATH nor in /usr/local/go/bin)")
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "go.mod").write_text(f"module kpdoctor.local/{what}\n\ngo 1.21\n")
    (workdir / "main.go").write_text(source)
    env = {**os.environ, "CGO_ENABLED": "0", "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod"}
    proc = subprocess.run([go, "build", "-trimpath", "-ldflags=-s -w", "-o", what, "."], cwd=workdir, env=env,
                          capture_output=True, text=True, check=False)  # fmt: skip
    if proc.returncode != 0:
        raise LabError(f"go build of the {what} program failed: {proc.stderr.strip()[-300:]}")
    return (workdir / what).read_bytes()


def _go_image(what: str, ref: str, source: str) -> Image:
    """The one-binary image `ref` running /`what`, built from Go `source` once and cached as `what`.oci.tar."""
    out = images_dir() / f"{what}.oci.tar"
    if not out.is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        binary = _go_binary(images_dir() / f"{what}-src", source, what)
        write_oci(out, ref, layer_tar({}, {what: binary}), [f"/{what}"])
    return Image(ref, out)


def pause_image() -> Image:
    return _go_image("pause", PAUSE_IMAGE, PAUSE_GO)


def echo_image() -> Image:
    """A static HTTP server on :8080 answering with its hostname: the pods the kubelet runs behind Services."""
    return _go_image("echo", ECHO_IMAGE, ECHO_GO)


def host_tools(tools: Iterable[str] = TOOLS) -> list[str]:
    found, missing = [], []
    for tool in tools:
        path = shutil.which(tool, path="/usr/sbin:/usr/bin:/sbin:/bin")
        if path:
            found.append(path)
        elif tool not in OPTIONAL_TOOLS:
            missing.append(tool)
    if missing:
        raise LabError(f"the kube-proxy image needs {', '.join(missing)} installed on this machine")
    return found


def netfilter_entries() -> dict[str, str]:
    """This host's netfilter userland (TOOLS, xtables modules, their libraries, ETC_FILES) as image entries:
    the kube-proxy image's, and the in-pod collector image's (kpdoctor.lab.pyimage)."""
    tools = host_tools()
    modules = [str(p) for p in Path(XTABLES_DIR).glob("*.so")] if Path(XTABLES_DIR).is_dir() else []
    real = {os.path.realpath(t) for t in tools + modules}
    return _host_closure(tools + modules + sorted(_libraries(real)) + [p for p in ETC_FILES if os.path.exists(p)])


def kube_proxy_image_tar(version: str) -> Image:
    """registry.k8s.io/kube-proxy:<version>, built from the lab's kube-proxy binary and this host's userland."""
    version = k8sbuild.resolve_release(version)
    name = kube_proxy_image(version)
    out = images_dir() / f"kube-proxy-{version}.oci.tar"
    if out.is_file():
        return Image(name, out)
    binary = k8sbuild.cached(version, "kube-proxy")
    if binary is None:
        raise LabError(f"kube-proxy {version} is not built (python3 -m kpdoctor.lab.k8sbuild {version})")
    entries = netfilter_entries()
    entries["usr/local/bin/kube-proxy"] = "file:" + str(binary)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_oci(out, name, layer_tar(entries), ["/usr/local/bin/kube-proxy"])
    return Image(name, out)
