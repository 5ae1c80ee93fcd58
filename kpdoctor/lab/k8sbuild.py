"""Build kube-apiserver, kubectl and kube-proxy (and kubelet, kube-controller-manager, kube-scheduler) from the
Go module proxy, cached by version.

`k8s.io/kubernetes` cannot be `go install`ed: its go.mod replaces every staging module
(`k8s.io/api`, `k8s.io/client-go`, ...) with `./staging/src/k8s.io/<name>`. We build through a
small local module that requires `k8s.io/kubernetes vX.Y.Z` and replaces each staging module
named in that go.mod with the published `k8s.io/<name> v0.Y.Z`.

Layout under the cache root (`$KPDOCTOR_LAB_CACHE`, default /var/cache/kpdoctor-lab, outside
the repository):

    <root>/src/vX.Y.Z/go.mod          the generated build module
    <root>/bin/vX.Y.Z/<component>     stamped binaries (a second build of the same version is a no-op)
    <root>/bin/vX.Y.Z/BUILD.json      what was built, with which Go, how long it took

Go's own module cache and build cache keep their defaults (GOMODCACHE, GOCACHE) unless set,
so downloads and compiled packages are reused across versions too. Nothing is fetched but Go
modules through the configured GOPROXY.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

DEFAULT_CACHE = "/var/cache/kpdoctor-lab"
GO_CANDIDATES = ("/usr/local/go/bin/go", "/usr/lib/go/bin/go")

# kube-proxy minor release -> the nearest k8s.io/kubernetes patch release the module proxy serves.
RELEASES: dict[str, str] = {
    "1.34": "v1.34.4",
    "1.35": "v1.35.4",
    "1.36": "v1.36.3",
    "1.37": "v1.37.2",
}
# The control plane (kube-apiserver, kubectl) is built from one release: the newest. A 1.37
# API server serves kube-proxy 1.34-1.37 within the version-skew policy (kube-proxy may be
# up to three minors older than kube-apiserver).
CONTROL_PLANE_RELEASE = "1.37"
COMPONENTS = {
    "kube-apiserver": "k8s.io/kubernetes/cmd/kube-apiserver",
    "kubectl": "k8s.io/kubernetes/cmd/kubectl",
    "kube-proxy": "k8s.io/kubernetes/cmd/kube-proxy",
    "kube-controller-manager": "k8s.io/kubernetes/cmd/kube-controller-manager",
    "kube-scheduler": "k8s.io/kubernetes/cmd/kube-scheduler",
    "kubelet": "k8s.io/kubernetes/cmd/kubelet",
}

_VERSION_RE = re.compile(r"^v1\.(\d+)\.(\d+)$")
_STAGING_RE = re.compile(r"^\s*(k8s\.io/[A-Za-z0-9._-]+)\s+=>\s+\./staging/src/k8s\.io/[A-Za-z0-9._-]+\s*$")


class BuildError(Exception):
    """The lab's Kubernetes could not be built (no Go, a module not served, a compile error)."""


@dataclass(frozen=True)
class Built:
    version: str
    component: str
    path: Path


def cache_root() -> Path:
    return Path(os.environ.get("KPDOCTOR_LAB_CACHE") or DEFAULT_CACHE)


def find_go() -> str | None:
    found = shutil.which("go")
    if found:
        return found
    for cand in GO_CANDIDATES:
        if os.access(cand, os.X_OK):
            return cand
    return None


def resolve_release(release: str) -> str:
    """'1.36' or 'v1.36.3' -> 'v1.36.3' (the served patch we build for a minor)."""
    text = release.strip().lstrip("v")
    if text in RELEASES:
        return RELEASES[text]
    if _VERSION_RE.match("v" + text):
        return "v" + text
    raise BuildError(f"unsupported Kubernetes release {release!r} (supported: {', '.join(RELEASES)})")


def staging_replacements(kubernetes_gomod: str, version: str) -> list[tuple[str, str]]:
    """The (module, version) pairs replacing k8s.io/kubernetes' ./staging/src paths."""
    m = _VERSION_RE.match(version)
    if not m:
        raise BuildError(f"not a Kubernetes release version: {version!r}")
    staging_version = f"v0.{m.group(1)}.{m.group(2)}"
    mods = []
    for line in kubernetes_gomod.splitlines():
        hit = _STAGING_RE.match(line.replace("replace ", "", 1) if line.startswith("replace ") else line)
        if hit:
            mods.append((hit.group(1), staging_version))
    if not mods:
        raise BuildError("k8s.io/kubernetes go.mod names no ./staging/src replacements (layout changed?)")
    return mods


def build_module_text(version: str, kubernetes_gomod: str) -> str:
    go_line = next((ln for ln in kubernetes_gomod.splitlines() if ln.startswith("go ")), "go 1.24")
    lines = ["module kpdoctor.local/k8slab", "", go_line, "", f"require k8s.io/kubernetes {version}", ""]
    lines.append("replace (")
    lines += [f"\t{mod} => {mod} {ver}" for mod, ver in staging_replacements(kubernetes_gomod, version)]
    lines.append(")")
    return "\n".join(lines) + "\n"


def ldflags(version: str) -> str:
    m = _VERSION_RE.match(version)
    assert m
    flags = ["-s", "-w"]
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {pkg}.gitVersion={version}",
            f"-X {pkg}.gitMajor=1",
            f"-X {pkg}.gitMinor={m.group(1)}",
            f"-X {pkg}.gitTreeState=clean",
            f"-X {pkg}.buildDate=1970-01-01T00:00:00Z",
        ]
    return " ".join(flags)


def binary_path(version: str, component: str) -> Path:
    return cache_root() / "bin" / version / component


def cached(version: str, component: str) -> Path | None:
    path = binary_path(version, component)
    return path if path.is_file() and os.access(path, os.X_OK) else None


def _run(cmd: list[str], cwd: Path, env: dict[str, str], log: Path | None) -> None:
    out = open(log, "a") if log else subprocess.DEVNULL  # noqa: SIM115
    try:
        if log:
            print("$", " ".join(cmd), file=out, flush=True)  # type: ignore[arg-type]
        proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.PIPE, text=True, check=False)
    finally:
        if log:
            out.close()  # type: ignore[union-attr]
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-15:]
        raise BuildError(f"{' '.join(cmd[:3])} ... failed in {cwd} (exit {proc.returncode}):\n" + "\n".join(tail))


def _go_env(go: str) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("GOFLAGS", "-mod=mod")
    env["GOTOOLCHAIN"] = env.get("GOTOOLCHAIN", "local")
    env["CGO_ENABLED"] = "0"
    env["PATH"] = str(Path(go).parent) + os.pathsep + env.get("PATH", "")
    return env


def build(version: str, components: list[str], log: Path | None = None) -> list[Built]:
    """Build the missing components of one release; return every requested binary."""
    for comp in components:
        if comp not in COMPONENTS:
            raise BuildError(f"unknown component {comp!r} (choose from {', '.join(COMPONENTS)})")
    version = resolve_release(version)
    missing = [c for c in components if cached(version, c) is None]
    if missing:
        go = find_go()
        if go is None:
            raise BuildError("no Go toolchain (go not on PATH nor in /usr/local/go/bin)")
        env = _go_env(go)
        src = cache_root() / "src" / version
        src.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        proc = subprocess.run([go, "mod", "download", "-json", f"k8s.io/kubernetes@{version}"], cwd=src, env=env,
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise BuildError(f"k8s.io/kubernetes@{version} is not served: {proc.stderr.strip()[-400:]}")
        info = json.loads(proc.stdout)
        gomod = Path(info["GoMod"]).read_text()
        (src / "go.mod").write_text(build_module_text(version, gomod))
        pkgs = [COMPONENTS[c] for c in missing]
        _run([go, "get", *[f"{p}@{version}" for p in pkgs]], src, env, log)
        out = cache_root() / "bin" / version
        tmp = out.with_name(out.name + ".partial")
        tmp.mkdir(parents=True, exist_ok=True)
        _run([go, "build", "-trimpath", "-ldflags", ldflags(version), "-o", str(tmp) + "/", *pkgs], src, env, log)
        out.mkdir(parents=True, exist_ok=True)
        for comp in missing:
            os.replace(tmp / comp, out / comp)
        shutil.rmtree(tmp, ignore_errors=True)
        record_path = out / "BUILD.json"
        record = json.loads(record_path.read_text()) if record_path.is_file() else {}
        gover = subprocess.run([go, "version"], capture_output=True, text=True, env=env, check=False).stdout.strip()
        record[",".join(missing)] = {"seconds": round(time.monotonic() - started, 1), "go": gover}
        record_path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return [Built(version, c, binary_path(version, c)) for c in components]


def build_lab(releases: list[str], log: Path | None = None, controller_manager: bool = False,
              kubelet: bool = False) -> list[Built]:  # fmt: skip
    """Everything the lab needs: the control plane of CONTROL_PLANE_RELEASE and kube-proxy per release
    (and the kubelet of CONTROL_PLANE_RELEASE for `lab cluster up --with-kubelet`, kube-controller-manager and
    kube-scheduler for `--with-controller-manager`)."""
    cp = ["kube-apiserver", "kubectl"] + (["kube-controller-manager", "kube-scheduler"] if controller_manager else [])
    cp += ["kubelet"] if kubelet else []
    built: list[Built] = []
    cp_version = resolve_release(CONTROL_PLANE_RELEASE)
    wanted = {resolve_release(r) for r in releases}
    # One `go build` for the control-plane release so its packages compile once.
    built += build(cp_version, cp + (["kube-proxy"] if cp_version in wanted else []), log)
    for version in sorted(wanted - {cp_version}):
        built += build(version, ["kube-proxy"], log)
    return built


def main(argv: list[str] | None = None) -> int:
    import argparse
    import sys

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("releases", nargs="*", default=list(RELEASES), help="kube-proxy releases (1.34 ... 1.37)")
    parser.add_argument("--log", type=Path, default=None)
    parser.add_argument("--controller-manager", action="store_true",
                        help="also kube-controller-manager and kube-scheduler (the lab's Job/CronJob controllers)")
    parser.add_argument("--kubelet", action="store_true", help="also the kubelet (lab cluster up --with-kubelet)")
    args = parser.parse_args(argv)
    try:
        for b in build_lab(args.releases, args.log, args.controller_manager, args.kubelet):
            print(f"{b.version} {b.component} {b.path}")
    except BuildError as err:
        print(f"kpdoctor lab build: {err}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
