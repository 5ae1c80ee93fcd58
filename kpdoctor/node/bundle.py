"""Read and write bundles: the offline form of a cluster snapshot plus node facts (docs/bundle.md).

A bundle is a directory or the same packed as .tar.gz. manifest.json is
optional on read: a hand-assembled bundle (plain shell on a node) is read from
its files alone, where an absent file means "not collected / not present" and
an empty file means "ran and printed nothing". With a manifest, facts keep
their command, exit code, stderr, duration and error, so a live collection and
its bundle give the same NodeState. A truncated .tar.gz yields everything read
before the cut plus a clear error, never a traceback.
"""

from __future__ import annotations

import io
import json
import os
import re
import tarfile
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import Any

from kpdoctor import __version__
from kpdoctor.errors import InputError
from kpdoctor.node.redact import redact_text, sanitize_object
from kpdoctor.node.state import Fact, NodeState
from kpdoctor.safeio import limits, load_json, read_regular, regular_files, too_big

FORMAT = "kpdoctor-bundle/v1"
LOG_MAX_LINES = 100
LOG_MAX_BYTES = 256 * 1024
_NODE_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,251}[A-Za-z0-9])?$")
CLUSTER_FILES = {
    "services": "services.json",
    "endpointslices": "endpointslices.json",
    "nodes": "nodes.json",
    "configmaps": "configmaps.json",
    "daemonsets": "daemonsets.json",
    "pods": "pods.json",
    "servicecidrs": "servicecidrs.json",  # networking.k8s.io/v1 ServiceCIDRs (nftables' unallocated-ClusterIP drop)
}


def is_tarball(path: str | Path) -> bool:
    name = str(path)
    return name.endswith((".tar.gz", ".tgz"))


def safe_node_name(name: str) -> bool:
    """A Node name usable as a directory name (DNS subdomain; never '..' or a path)."""
    return bool(_NODE_NAME.match(name)) and ".." not in name


# ---------------------------------------------------------------------------------------
# reading


@dataclass
class Bundle:
    """The files of a bundle, by relative POSIX path, plus the manifest when there is one."""

    label: str
    files: dict[str, bytes]
    manifest: Mapping[str, Any] | None = None
    error: str = ""  # e.g. truncated archive: what was read before the cut is still here
    cut_at: str = ""  # member being read when the archive ended
    _dir: Path | None = field(default=None, repr=False)
    _by_node: dict[str, dict[str, bytes]] | None = field(default=None, repr=False)
    _names: list[str] | None = field(default=None, repr=False)
    _names_set: frozenset[str] | None = field(default=None, repr=False)

    def _node_files(self) -> dict[str, dict[str, bytes]]:
        """Each node's files by fact key, indexed once (linear in the number of files)."""
        if self._by_node is None:
            index: dict[str, dict[str, bytes]] = {}
            for path, data in self.files.items():
                parts = path.split("/", 2)
                if len(parts) == 3 and parts[0] == "nodes" and parts[2]:
                    index.setdefault(parts[1], {})[parts[2]] = data
            self._by_node = index
        return self._by_node

    def node_names(self) -> list[str]:
        if self._names is None:
            self._names = self._find_node_names()
        return list(self._names)

    def _find_node_names(self) -> list[str]:
        names = set(self._node_files())
        if self.manifest:
            names.update((self.manifest.get("nodes") or {}).keys())
        if self.cut_at.startswith("nodes/") and self.cut_at.count("/") >= 2:
            names.add(self.cut_at.split("/")[1])
        return sorted(n for n in names if safe_node_name(n))

    def node_state(self, name: str) -> NodeState:
        """The NodeState of one node; an unknown node is an InputError naming the nodes present."""
        if self._names_set is None:
            self._names_set = frozenset(self.node_names())
        if name not in self._names_set:
            known = ", ".join(self.node_names()) or "none"
            extra = f" ({self.error})" if self.error else ""
            raise InputError(f"node {name!r} is not in this bundle (nodes: {known}){extra}", where=self.label)
        prefix = f"nodes/{name}/"
        node_meta = ((self.manifest or {}).get("nodes") or {}).get(name) or {}
        file_meta: Mapping[str, Any] = node_meta.get("files") or {}
        facts: dict[str, Fact] = {}
        for key, data in self._node_files().get(name, {}).items():
            facts[key] = _fact_from_file(key, data, file_meta.get(key))
        for key, meta in file_meta.items():
            if key in facts or not isinstance(meta, dict):
                continue
            if meta.get("present", True):
                error = "listed in manifest.json but missing from the bundle"
                if self.error:
                    error += f" ({self.error})"
            else:
                error = str(meta.get("error") or "not collected")
            facts[key] = Fact(
                key, None, str(meta.get("source") or ""), meta.get("exit_code"), str(meta.get("stderr") or ""),
                _duration(meta.get("duration")), error, bool(meta.get("truncated")),
            )  # fmt: skip
        error = str(node_meta.get("error") or "")
        if self.cut_at.startswith(prefix):
            cut = f"bundle truncated while reading {self.cut_at}: facts of this node are incomplete"
            error = f"{error}; {cut}" if error else cut
        return NodeState(
            name=name,
            transport="bundle",
            facts=MappingProxyType(dict(sorted(facts.items()))),
            address=str(node_meta.get("address") or ""),
            error=error,
            collected_at=str(node_meta.get("collected_at") or ""),
        )

    def node_states(self) -> dict[str, NodeState]:
        names = self.node_names()
        return {name: self.node_state(name) for name in names}

    def has_cluster(self) -> bool:
        return any(p.startswith("cluster/") and p.endswith((".json", ".yaml", ".yml")) for p in self.files)

    def cluster_state(self, pod_namespaces: Any = ()) -> Any:
        """The ClusterState of `cluster/` (the snapshot format), loaded with the snapshot loader."""
        from kpdoctor.cluster.snapshot import SNAPSHOT_SUFFIXES, load_documents, load_snapshot

        if not self.has_cluster():
            raise InputError("bundle has no cluster/ snapshot", where=self.label)
        if self._dir is not None:
            return load_snapshot(self._dir / "cluster", pod_namespaces=pod_namespaces)
        # a tarball: parsed from memory, errors name the archive member (never a temporary directory)
        entries = [(f"{self.label}:{path}", data) for path, data in sorted(self.files.items())
                   if path.count("/") == 1 and path.startswith("cluster/") and path.endswith(SNAPSHOT_SUFFIXES)]
        logs = {}
        for path, data in sorted(self.files.items()):
            parts = path.split("/")
            if len(parts) == 4 and parts[:2] == ["cluster", "logs"] and parts[3].endswith(".log"):
                logs[f"{parts[2]}/{parts[3][:-4]}"] = data.decode("utf-8", errors="replace")
        return load_documents(entries, logs=logs, source=f"{self.label}:cluster", pod_namespaces=pod_namespaces)


def _fact_from_file(key: str, data: bytes, meta: Any) -> Fact:
    text = data.decode("utf-8", errors="replace")
    if not isinstance(meta, dict):
        return Fact(key=key, content=text, source=key)
    exit_code = meta.get("exit_code")
    return Fact(
        key, text, str(meta.get("source") or key), exit_code if isinstance(exit_code, int) else None,
        str(meta.get("stderr") or ""), _duration(meta.get("duration")), str(meta.get("error") or ""),
        bool(meta.get("truncated")),
    )  # fmt: skip


def _duration(value: Any) -> float:
    """A manifest's duration (seconds); anything but a finite number reads as 0 (validated on load)."""
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def _clean_member(name: str) -> str | None:
    """A safe relative path inside the bundle, dropping a single top-level folder if all share one."""
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts:
        return None
    return str(path).lstrip("./") if str(path) not in (".", "") else None


def _rebase(files: dict[str, bytes]) -> dict[str, bytes]:
    """Accept `bundle/...` or `<anything>/...` wrappers around cluster/ and nodes/ (tar -C habits)."""
    if any(p.startswith(("cluster/", "nodes/", "manifest.json")) for p in files):
        return files
    tops = {p.split("/", 1)[0] for p in files if "/" in p}
    for top in sorted(tops):
        inner = {p[len(top) + 1 :]: d for p, d in files.items() if p.startswith(top + "/")}
        if any(p.startswith(("cluster/", "nodes/")) for p in inner):
            return inner
    return files


def read_bundle(path: str | Path) -> Bundle:
    """Open a bundle directory or .tar.gz; InputError if it is neither or holds nothing usable."""
    root = Path(path)
    if root.is_dir():
        base = root / "bundle" if not (root / "nodes").is_dir() and (root / "bundle").is_dir() else root
        files: dict[str, bytes] = {}
        for file in regular_files(base):  # never through a symlink, never a FIFO or device
            rel = file.relative_to(base).as_posix()
            if rel.startswith(("nodes/", "cluster/")) or rel == "manifest.json":
                data = read_regular(file)
                if data is not None:
                    files[rel] = data
        bundle = Bundle(str(root), files, _dir=base)
    elif root.is_file():
        bundle = _read_tar(root)
    else:
        raise InputError("bundle not found (a directory or .tar.gz)", where=str(root))
    bundle.manifest = _manifest(bundle)
    if not bundle.node_names() and not bundle.has_cluster():
        raise InputError(
            "not a kpdoctor bundle: no nodes/<name>/ and no cluster/ inside" + (f" ({bundle.error})" if bundle.error else ""),
            where=str(root),
        )
    return bundle


def _read_tar(path: Path) -> Bundle:
    files: dict[str, bytes] = {}
    error = ""
    current = ""
    lim = limits()
    try:
        with tarfile.open(path, mode="r|*") as archive:  # streamed: one member at a time, never extracted
            for member in archive:
                current = member.name
                if not member.isfile():
                    continue
                name = _clean_member(member.name)
                if name is None:
                    continue
                if member.size > lim.max_file_bytes:  # checked before reading: a sparse 10 GiB member stays on disk
                    raise too_big(member.size, f"{path}:{member.name}", lim)
                handle = archive.extractfile(member)
                if handle is None:
                    continue
                files[name] = handle.read(lim.max_file_bytes + 1)
            current = ""
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        kind = "truncated or corrupt archive" if files or current else "not a readable .tar.gz"
        error = f"{kind}: {exc or type(exc).__name__}"
    if error and not files:
        raise InputError(error, where=str(path))
    files = _rebase(files)
    cut = ""
    if error and current:
        cleaned = _clean_member(current) or ""
        rebased = _rebase({cleaned: b""})
        cut = next(iter(rebased), cleaned)
    return Bundle(str(path), files, error=error, cut_at=cut)


def _manifest(bundle: Bundle) -> Mapping[str, Any] | None:
    raw = bundle.files.pop("manifest.json", None)
    if raw is None:
        return None
    where = f"{bundle.label}:manifest.json"
    doc = load_json(raw, where)
    if not isinstance(doc, dict) or not str(doc.get("format", "")).startswith("kpdoctor-bundle/"):
        raise InputError(f"manifest.json is not a {FORMAT} manifest", where=f"{bundle.label}:manifest.json")
    if doc["format"] != FORMAT:
        raise InputError(f"unsupported bundle format {doc['format']!r} (this kpdoctor reads {FORMAT})",
                         where=f"{bundle.label}:manifest.json")  # fmt: skip
    _check_manifest_types(doc, where)
    return doc


def _check_manifest_types(doc: dict[str, Any], where: str) -> None:
    """The manifest fields the reader uses have the types docs/bundle.md gives them, else InputError."""
    def bad(field_path: str, expected: str) -> InputError:
        return InputError(f"{field_path} must be {expected}", where=where)

    nodes = doc.get("nodes")
    if nodes is None:
        return
    if not isinstance(nodes, dict):
        raise bad("nodes", "an object of node name -> entry")
    for name, entry in nodes.items():
        if not isinstance(entry, dict):
            raise bad(f"nodes.{name}", "an object")
        for key in ("address", "error", "collected_at", "transport"):
            if entry.get(key) is not None and not isinstance(entry[key], str):
                raise bad(f"nodes.{name}.{key}", "a string")
        files = entry.get("files")
        if files is None:
            continue
        if not isinstance(files, dict):
            raise bad(f"nodes.{name}.files", "an object of file name -> entry")
        for key, meta in files.items():
            if not isinstance(meta, dict):
                raise bad(f"nodes.{name}.files.{key}", "an object")
            code, duration = meta.get("exit_code"), meta.get("duration")
            if code is not None and (not isinstance(code, int) or isinstance(code, bool)):
                raise bad(f"nodes.{name}.files.{key}.exit_code", "an integer or null")
            if duration is not None and (not isinstance(duration, int | float) or isinstance(duration, bool)):
                raise bad(f"nodes.{name}.files.{key}.duration", "a number")


# ---------------------------------------------------------------------------------------
# writing


def _fact_meta(fact: Fact) -> dict[str, Any]:
    return {
        "present": fact.present,
        "source": fact.source,
        "exit_code": fact.exit_code,
        "stderr": fact.stderr[:4096],
        "duration": fact.duration,
        "error": fact.error,
        "truncated": fact.truncated,
    }


def _cap_log(text: str) -> tuple[str, bool]:
    lines = text.splitlines(keepends=True)
    capped = len(lines) > LOG_MAX_LINES
    text = "".join(lines[-LOG_MAX_LINES:])
    if len(text.encode()) > LOG_MAX_BYTES:
        text = text.encode()[-LOG_MAX_BYTES:].decode("utf-8", errors="ignore")
        capped = True
    return text, capped


def write_bundle(
    out: str | Path,
    *,
    nodes: Mapping[str, NodeState],
    cluster_objects: Mapping[str, Iterable[dict[str, Any]]] | None = None,
    logs: Mapping[str, str] | None = None,
    cluster_source: str = "",
    gaps: Iterable[tuple[str, str]] = (),
) -> Path:
    """Write a bundle directory (or .tar.gz when `out` ends so). Returns the path written."""
    target = Path(out)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise InputError("output exists and is not an empty directory; choose a new path", where=str(target))
    entries: dict[str, bytes] = {}
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "kpdoctor_version": __version__,
        "caps": {
            "logs": f"last {LOG_MAX_LINES} lines / {LOG_MAX_BYTES // 1024} KiB per pod",
            "conntrack-services.txt": "at most 5000 entries (see each node's file entry for whether it was hit)",
        },
        "redaction": "Secrets are never written; kubeconfig credentials, PEM blocks, JWTs and bearer tokens are "
        "replaced with '<redacted by kpdoctor>'",
        "cluster": {"source": cluster_source, "files": [], "gaps": [{"kind": k, "reason": r} for k, r in gaps],
                    "logs": {}},  # fmt: skip
        "nodes": {},
    }
    if cluster_objects is not None:
        for kind, objects in cluster_objects.items():
            filename = CLUSTER_FILES.get(kind, f"{kind}.json")
            items = [s for s in (sanitize_object(o) for o in objects) if s is not None]
            doc = {"apiVersion": "v1", "kind": "List", "metadata": {}, "items": items}
            entries[f"cluster/{filename}"] = (redact_text(json.dumps(doc, indent=1)) + "\n").encode()
            manifest["cluster"]["files"].append(filename)
    for pod_key, text in sorted((logs or {}).items()):
        namespace, _, pod = pod_key.partition("/")
        if not (safe_node_name(namespace) and safe_node_name(pod)):
            continue
        capped_text, capped = _cap_log(text)
        entries[f"cluster/logs/{namespace}/{pod}.log"] = redact_text(capped_text).encode()
        manifest["cluster"]["logs"][pod_key] = {"capped": capped}
    for name, state in sorted(nodes.items()):
        if not safe_node_name(name):
            raise InputError(f"node name {name!r} cannot be a bundle directory name", where=str(target))
        files_meta: dict[str, Any] = {}
        for key, fact in sorted(state.facts.items()):
            key_path = PurePosixPath(key)
            if key_path.is_absolute() or ".." in key_path.parts:
                continue
            files_meta[key] = _fact_meta(fact)
            if fact.content is not None:
                entries[f"nodes/{name}/{key}"] = redact_text(fact.content).encode("utf-8", errors="replace")
        manifest["nodes"][name] = {
            "transport": state.transport,
            "address": state.address,
            "error": state.error,
            "collected_at": state.collected_at,
            "files": files_meta,
        }
    # manifest first: a truncated archive still says what every node's files were
    entries = {"manifest.json": (json.dumps(manifest, indent=1, sort_keys=False) + "\n").encode(), **entries}
    try:
        if is_tarball(target):
            _write_tar(target, entries)
        else:
            for rel, data in entries.items():
                out_path = target / rel
                out_path.parent.mkdir(parents=True, exist_ok=True)
                out_path.write_bytes(data)
    except OSError as exc:  # read-only or missing location, disk full: one line, not an internal error
        raise InputError(f"cannot write the bundle: {exc.strerror or exc}", where=str(target)) from None
    return target


def _write_tar(target: Path, entries: Mapping[str, bytes]) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC).timestamp()
    # A new, exclusively created temporary file beside the target (O_CREAT|O_EXCL, random name): an existing
    # `*.partial` or symlink planted there is never followed; renamed over the target only when complete.
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    partial = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as archive:
            for rel, data in entries.items():
                info = tarfile.TarInfo(rel)
                info.size = len(data)
                info.mtime = int(now)
                info.mode = 0o644
                archive.addfile(info, io.BytesIO(data))
        partial.chmod(0o644)
        partial.replace(target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
