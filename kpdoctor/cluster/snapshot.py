"""Load a ClusterState from a snapshot directory of `kubectl get -o json|yaml` files.

A snapshot is how users analyse a cluster offline, and a bundle's `cluster/`
folder is one. Each file holds a `List` or a single object; unknown kinds are
ignored so a whole `kubectl get all -A -o json` can be dropped in. Errors name
the file and, for JSON/YAML syntax, the line.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Collection, Iterable, Iterator
from pathlib import Path
from types import MappingProxyType
from typing import Any

from kpdoctor.cluster.model import ConfigMap, DaemonSet, EndpointSlice, Node, Pod, Service
from kpdoctor.cluster.parse import (
    parse_configmap,
    parse_daemonset,
    parse_endpointslice,
    parse_node,
    parse_pod,
    parse_service,
    require_dict,
)
from kpdoctor.cluster.state import KUBE_SYSTEM, ClusterState
from kpdoctor.errors import InputError
from kpdoctor.safeio import load_json, load_yaml_all, read_regular

SNAPSHOT_SUFFIXES = (".json", ".yaml", ".yml")


def parse_documents(text: str, where: str) -> list[Any]:
    if where.endswith(".json"):
        return [load_json(text, where)]
    return load_yaml_all(text, where)


def iter_objects(doc: Any, where: str) -> Iterator[dict[str, Any]]:
    """Flatten Lists (`kind: List` or `*List`) into their items."""
    obj = require_dict(doc, where)
    kind = obj.get("kind")
    if isinstance(obj.get("items"), list) and (kind is None or str(kind).endswith("List")):
        for index, item in enumerate(obj["items"]):
            yield require_dict(item, f"{where}: items[{index}]")
    elif kind is None:
        raise InputError("object has no 'kind'", where=where)
    else:
        yield obj


class _Collector:
    def __init__(self, pod_namespaces: Collection[str] = ()) -> None:
        self.pod_namespaces = tuple(sorted(set(pod_namespaces)))
        self.services: list[Service] = []
        self.slices: list[EndpointSlice] = []
        self.nodes: list[Node] = []
        self.configmaps: list[ConfigMap] = []
        self.daemonsets: list[DaemonSet] = []
        self.pods: list[Pod] = []
        self.service_cidrs: list[str] = []

    def add(self, obj: dict[str, Any], where: str) -> None:
        kind = obj.get("kind")
        try:
            if kind == "Service":
                self.services.append(parse_service(obj))
            elif kind == "EndpointSlice":
                self.slices.append(parse_endpointslice(obj, source=where))
            elif kind == "Node":
                self.nodes.append(parse_node(obj))
            elif kind == "ConfigMap":
                self.configmaps.append(parse_configmap(obj, source=where))
            elif kind == "DaemonSet":
                self.daemonsets.append(parse_daemonset(obj))
            elif kind == "Pod":
                self.pods.append(parse_pod(obj))
            elif kind == "ServiceCIDR":
                self.service_cidrs.extend(str(c) for c in (obj.get("spec") or {}).get("cidrs") or ())
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            name = (obj.get("metadata") or {}).get("name") if isinstance(obj.get("metadata"), dict) else None
            raise InputError(f"malformed {kind} {name!r}: {exc}", where=where) from None

    def state(self, *, logs: dict[str, str], source: str) -> ClusterState:
        return ClusterState(
            services=tuple(self.services),
            endpoint_slices=tuple(self.slices),
            nodes=tuple(self.nodes),
            configmaps=tuple(self.configmaps),
            daemonsets=tuple(d for d in self.daemonsets if d.namespace == KUBE_SYSTEM),
            pods=tuple(p for p in self.pods if p.namespace == KUBE_SYSTEM),
            logs=MappingProxyType(logs),
            service_cidrs=tuple(self.service_cidrs),
            source=source,
            workload_pods=tuple(p for p in self.pods if p.namespace in self.pod_namespaces),
            workload_namespaces=self.pod_namespaces,
        )


def load_objects(objects: Iterable[tuple[dict[str, Any], str]], *, source: str = "",
                 pod_namespaces: Collection[str] = ()) -> ClusterState:
    """Build a ClusterState from (object, where) pairs; used by tests and the live loader."""
    collector = _Collector(pod_namespaces)
    for obj, where in objects:
        collector.add(obj, where)
    return collector.state(logs={}, source=source)


def _is_dir(path: Path) -> bool:
    """A real directory, not a symlink to one (a snapshot never reads outside itself)."""
    try:
        return stat.S_ISDIR(path.lstat().st_mode)
    except OSError:
        return False


def _read_logs(logs_dir: Path) -> dict[str, str]:
    logs: dict[str, str] = {}
    if not _is_dir(logs_dir):
        return logs
    for ns_dir in sorted(p for p in logs_dir.iterdir() if _is_dir(p)):
        for log in sorted(ns_dir.glob("*.log")):
            data = read_regular(log)  # symlinks, FIFOs and devices are skipped, size is bounded
            if data is not None:
                logs[f"{ns_dir.name}/{log.stem}"] = data.decode("utf-8", errors="replace")
    return logs


def load_documents(
    entries: Iterable[tuple[str, bytes]], *, logs: dict[str, str], source: str, pod_namespaces: Collection[str] = ()
) -> ClusterState:
    """A ClusterState from (where, bytes) pairs of snapshot files (`where` names the file in errors)."""
    collector = _Collector(pod_namespaces)
    for where, data in entries:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(f"cannot read: {exc}", where=where) from None
        for doc in parse_documents(text, where):
            for obj in iter_objects(doc, where):
                collector.add(obj, where)
    return collector.state(logs=logs, source=source)


def load_snapshot(directory: str | os.PathLike[str], *, pod_namespaces: Collection[str] = ()) -> ClusterState:
    """The snapshot's ClusterState; Pods are kept for kube-system and for `pod_namespaces` only."""
    root = Path(directory)
    if not _is_dir(root) and not root.is_dir():
        raise InputError("snapshot is not a directory", where=str(root))
    files = sorted(p for p in root.iterdir() if p.suffix in SNAPSHOT_SUFFIXES and not p.is_symlink() and p.is_file())
    if not files:
        raise InputError("snapshot holds no *.json / *.yaml files", where=str(root))

    def entries() -> Iterator[tuple[str, bytes]]:
        for path in files:
            data = read_regular(path)  # one file in memory at a time; FIFOs/devices skipped, size bounded
            if data is not None:
                yield str(path), data

    return load_documents(
        entries(), logs=_read_logs(root / "logs"), source=str(root), pod_namespaces=pod_namespaces
    )
