"""The kpdoctor image for the lab's kubelet, built offline: the offline equivalent of deploy/Containerfile.

deploy/Containerfile is `python:3.11-slim` + `pip install kpdoctor`. Nothing can be pulled here, so this
image is made from what runs kpdoctor on this machine, laid out as python:3.11-slim lays it out:

    usr/local/bin/python3.11             this machine's interpreter (sys.executable), python3 -> python3.11
    usr/lib/x86_64-linux-gnu/libpython*  its libpython (a trusted loader directory: its RUNPATH names the host)
    usr/local/lib/python3.11/            its stdlib, without test/ and tests/, idlelib, tkinter, turtledemo, ensurepip,
                                         lib2to3, sqlite3, curses, config-*, site-packages and __pycache__
    usr/local/lib/python3.11/site-packages/
                                         the files (RECORD) of exactly the distributions kpdoctor requires,
                                         transitively (markers evaluated), without tests and __pycache__;
                                         kpdoctor itself from the checkout as the wheel installs it
                                         (checks/ as kpdoctor/checks, docs/checks as kpdoctor/_docs/checks)
    usr/local/bin/kpdoctor, kubectl-kpdoctor   the console scripts pip writes
    sh, cat, date, ln                    the Job's script (deploy/job.yaml) needs them; Debian's, as on this host
    + every shared library `ldd` names for the interpreter, the extension modules and those tools

Config as the Containerfile's: user 65534:65534, HOME=/tmp, entrypoint `kpdoctor`.
"""

from __future__ import annotations

import importlib.metadata as metadata
import os
import re
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

from kpdoctor.lab import images, pep508
from kpdoctor.lab.netns import LabError

KPDOCTOR_IMAGE = "kpdoctor.local/kpdoctor:lab"
COLLECTOR_IMAGE = "kpdoctor.local/kpdoctor-collector:lab"  # + the netfilter userland: `scan --analyze-in-pod`
PY = f"python{sys.version_info.major}.{sys.version_info.minor}"
LIBDIR = "usr/lib/x86_64-linux-gnu"
STDLIB_SKIP = frozenset({"test", "tests", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3", "sqlite3", "curses",
                         "site-packages", "dist-packages", "__pycache__"})  # fmt: skip
DYNLOAD_SKIP = re.compile(r"^(_tkinter|_curses|_curses_panel|readline|_sqlite3|_dbm|_gdbm|nis|_test|_ctypes_test|"
                          r"xxlimited|xxsubtype|_xxsubinterpreters|_xxtestfuzz)[.\w-]*\.so$")  # fmt: skip
SKIP_PARTS = frozenset({"__pycache__", "tests", "test"})
SCRIPT_TOOLS = ("sh", "cat", "date", "ln")
SCRIPT = "#!/usr/local/bin/{py}\nimport sys\nfrom kpdoctor.entry import main\nsys.exit(main())\n"


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_closure(root: str = "kpdoctor") -> list[metadata.Distribution]:
    """The installed distributions `root` requires, transitively (environment markers evaluated; extras not
    taken), without `root` itself. A required distribution that is not installed, or a requirement line
    kpdoctor.lab.pep508 cannot evaluate, is a LabError (the standard library only: a plain install has no
    `packaging`)."""
    seen: dict[str, metadata.Distribution] = {}
    todo = [root]
    while todo:
        name = todo.pop()
        if _norm(name) in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            raise LabError(f"the kpdoctor image needs the Python distribution {name}, which is not installed") from None
        seen[_norm(name)] = dist
        for line in dist.requires or []:
            try:
                if pep508.applies(line):
                    todo.append(pep508.requirement_name(line))
            except ValueError as exc:
                raise LabError(f"the kpdoctor image: {name}'s requirement {line!r}: {exc}") from None
    seen.pop(_norm(root), None)
    return sorted(seen.values(), key=lambda d: _norm(d.metadata["Name"]))


def _walk(top: Path, skip: frozenset[str]) -> Iterator[Path]:
    for dirpath, dirs, files in os.walk(top):
        dirs[:] = sorted(d for d in dirs if d not in skip)
        for name in sorted(files):
            yield Path(dirpath) / name


def _stdlib(entries: dict[str, str]) -> list[str]:
    """The stdlib files into usr/local/lib/pythonX.Y; returns the extension modules (for ldd)."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    dest = f"usr/local/lib/{PY}"
    extensions = []
    for path in _walk(stdlib, STDLIB_SKIP | {d.name for d in stdlib.glob("config-*")}):
        rel = path.relative_to(stdlib)
        if rel.parts[0] == "lib-dynload" and DYNLOAD_SKIP.match(path.name):
            continue
        if path.suffix in (".pyc", ".exe") or not path.is_file():
            continue
        entries[f"{dest}/{rel}"] = "file:" + str(path)
        if path.suffix == ".so":
            extensions.append(str(path))
    return extensions


def _site_packages(entries: dict[str, str]) -> list[str]:
    dest = f"usr/local/lib/{PY}/site-packages"
    extensions = []
    for dist in requirement_closure():
        for file in dist.files or []:
            parts = Path(file).parts
            if parts[0] == ".." or SKIP_PARTS & set(parts) or file.suffix in (".pyc", ".pyi"):
                continue
            host = Path(str(dist.locate_file(file)))
            if host.is_file():
                entries[f"{dest}/{file}"] = "file:" + str(host)
                if host.suffix == ".so":
                    extensions.append(str(host))
    return extensions


def _kpdoctor(entries: dict[str, str], repo: Path) -> None:
    """kpdoctor from the checkout `repo`, as its wheel lays it out (pyproject.toml's force-include)."""
    dest = f"usr/local/lib/{PY}/site-packages/kpdoctor"
    for src, where in ((repo / "kpdoctor", dest), (repo / "checks", f"{dest}/checks"),
                       (repo / "docs" / "checks", f"{dest}/_docs/checks")):  # fmt: skip
        if not src.is_dir():
            raise LabError(f"the kpdoctor image is built from a checkout: {src} is missing")
        for path in _walk(src, SKIP_PARTS | {"checks"} if src.name == "kpdoctor" else SKIP_PARTS):
            if path.suffix != ".pyc":
                entries[f"{where}/{path.relative_to(src)}"] = "file:" + str(path)


def layer_entries(repo: Path) -> tuple[dict[str, str], dict[str, bytes]]:
    """(entries, extra) for images.layer_tar: the files of the kpdoctor image."""
    exe = os.path.realpath(sys.executable)
    entries: dict[str, str] = {f"usr/local/bin/{PY}": "file:" + exe, "usr/local/bin/python3": f"link:{PY}"}
    binaries = [exe, *_stdlib(entries), *_site_packages(entries)]
    _kpdoctor(entries, repo)
    tools = images.host_tools(SCRIPT_TOOLS)
    libraries = images._libraries([*binaries, *(os.path.realpath(t) for t in tools)])
    libpython = {lib for lib in libraries if Path(lib).name.startswith("libpython")}
    for lib in libpython:  # relocated: the interpreter's RUNPATH names the host's prefix
        entries[f"{LIBDIR}/{Path(lib).name}"] = "file:" + os.path.realpath(lib)
    entries.update(images._host_closure([*tools, *sorted(libraries - libpython)]))
    script = SCRIPT.format(py=PY).encode()
    return entries, {"usr/local/bin/kpdoctor": script, "usr/local/bin/kubectl-kpdoctor": script}


def kpdoctor_image_tar(repo: Path, out_dir: Path, *, collector: bool = False) -> images.Image:
    """KPDOCTOR_IMAGE as an OCI tarball in `out_dir` (built each call, not cached: it is the checkout `repo`,
    which changes between runs, and a shared cache would race between parallel runs). With `collector`:
    COLLECTOR_IMAGE, the same plus the kube-proxy image's netfilter userland (what the node side reads)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    name = COLLECTOR_IMAGE if collector else KPDOCTOR_IMAGE
    out = out_dir / ("kpdoctor-collector.oci.tar" if collector else "kpdoctor.oci.tar")
    entries, extra = layer_entries(repo)
    if collector:
        entries = {**images.netfilter_entries(), **entries}
    images.write_oci(out, name, images.layer_tar(entries, extra), ["kpdoctor"],
                     env=["HOME=/tmp"], user="65534:65534")  # fmt: skip
    return images.Image(name, out)
