"""Which kube-system ConfigMaps a bundle carries: only those the checks read.

A bundle is mailed around; third-party ConfigMaps in kube-system (cloud-provider configs with client
secrets, CNI credentials) have no business in it. The checks read kube-proxy's ConfigMaps (by the
`kube-proxy*` name kubeadm and the gate use, or through a kube-proxy workload's configMap volume) and
`cilium-config` (or what a Cilium workload mounts). Everything else is left out before writing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

KEEP_NAMES = ("cilium-config",)


def _is_ours(obj: Mapping[str, Any]) -> bool:
    meta = obj.get("metadata") or {}
    name = str(meta.get("name") or "")
    labels = meta.get("labels") or {}
    if not isinstance(labels, dict):
        labels = {}
    if name.startswith(("kube-proxy", "cilium")) or labels.get("component") == "kube-proxy":
        return True
    return labels.get("k8s-app") in ("kube-proxy", "cilium")


def _mounted_configmaps(obj: Mapping[str, Any]) -> set[str]:
    spec = obj.get("spec") or {}
    if obj.get("kind") == "DaemonSet":
        spec = ((spec.get("template") or {}).get("spec")) or {}
    names: set[str] = set()
    for volume in (spec.get("volumes") if isinstance(spec, dict) else None) or ():
        cm = volume.get("configMap") if isinstance(volume, dict) else None
        if isinstance(cm, dict) and isinstance(cm.get("name"), str):
            names.add(cm["name"])
    return names


def needed_configmaps(configmaps: Iterable[dict[str, Any]], workloads: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ConfigMaps of `configmaps` that a check reads; `workloads` are the kube-system DaemonSets and Pods."""
    mounted: set[str] = set()
    for obj in workloads:
        if isinstance(obj, dict) and _is_ours(obj):
            mounted |= _mounted_configmaps(obj)
    out = []
    for cm in configmaps:
        name = str((cm.get("metadata") or {}).get("name") or "")
        if name.startswith("kube-proxy") or name in KEEP_NAMES or name in mounted:
            out.append(cm)
    return out


def scope_objects(objects: Mapping[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """`objects` (bundle file kind -> raw objects) with only the ConfigMaps the checks read."""
    out = dict(objects)
    if "configmaps" in out:
        workloads = [*objects.get("daemonsets", []), *objects.get("pods", [])]
        out["configmaps"] = needed_configmaps(objects["configmaps"], workloads)
    return out
