"""The cluster state a trace needs, read from a bundle's `cluster/` with the snapshot loader's own parser.

A trace resolves names (Services, Nodes, kube-system pods and the pods of the namespaces it names) and finds the node's kube-proxy mode; it does not
need the EndpointSlices (the rules say where a Service goes), which on a 10,000-Service cluster are most of
the snapshot's size and load time. Endpoint addresses are labelled from the rules' own comments instead.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import PurePosixPath
from typing import Any

from kpdoctor.cluster.snapshot import SNAPSHOT_SUFFIXES, iter_objects, load_objects, parse_documents
from kpdoctor.cluster.state import ClusterState
from kpdoctor.errors import InputError
from kpdoctor.node.bundle import Bundle

SKIPPED = ("endpointslices",)


def _wanted(obj: dict[str, Any], services: Collection[str] | None) -> bool:
    if services is None or obj.get("kind") != "Service":
        return True
    meta = obj.get("metadata")
    return isinstance(meta, dict) and f"{meta.get('namespace') or 'default'}/{meta.get('name')}" in services


def trace_cluster_state(bundle: Bundle, services: Collection[str] | None = None,
                        pod_namespaces: Collection[str] = ()) -> ClusterState | None:
    """ClusterState of the bundle's cluster/ files except EndpointSlices; None when the bundle has none.

    `services`: only these Services ("ns/name") are parsed (the ones --from/--to name; a trace on a
    10,000-Service cluster needs one of them, and labels the other addresses from the rules).
    `pod_namespaces`: Pods of these namespaces are kept too (kube-system's always are)."""
    paths = sorted(p for p in bundle.files if p.startswith("cluster/") and p.count("/") == 1
                   and p.endswith(SNAPSHOT_SUFFIXES) and PurePosixPath(p).stem not in SKIPPED)
    if not paths:
        return None
    objects: list[tuple[dict[str, Any], str]] = []
    for path in paths:
        where = f"{bundle.label}:{path}"
        try:
            text = bundle.files[path].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(f"not UTF-8: {exc}", where=where) from None
        for doc in parse_documents(text, where):
            objects.extend((obj, where) for obj in iter_objects(doc, where) if _wanted(obj, services))
    return load_objects(objects, source=f"{bundle.label}:cluster", pod_namespaces=pod_namespaces)
