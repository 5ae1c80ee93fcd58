"""The API objects describing a lab cluster's nodes and kube-proxy workload, as kubeadm writes them.

The lab's kube-proxies are real processes in node namespaces, not containers started by a kubelet
(there is none). So that kpdoctor sees what it sees on a kubeadm cluster, the lab registers the
same objects a kubeadm cluster has: the Nodes (with InternalIP, podCIDR, Ready), the kube-system
kube-proxy ConfigMap and DaemonSet, and one kube-proxy Pod per node, with the status a kubelet
would report for the process that really runs there.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import yaml

KUBE_SYSTEM = "kube-system"
LABELS = {"k8s-app": "kube-proxy"}


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def node(name: str, pod_cidr: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"}},
        "spec": {"podCIDR": pod_cidr, "podCIDRs": [pod_cidr]},
    }  # fmt: skip


def node_status(name: str, ip: str) -> dict[str, Any]:
    now = _now()
    return {
        "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}],
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "lab node",
                        "lastHeartbeatTime": now, "lastTransitionTime": now}],
    }  # fmt: skip


def configmap(config: dict[str, Any]) -> dict[str, Any]:
    """kube-system/kube-proxy with the node-independent part of the configuration (key config.conf)."""
    shared = {k: v for k, v in config.items() if k not in ("hostnameOverride", "clientConnection")}
    shared["clientConnection"] = {"kubeconfig": "/var/lib/kube-proxy/kubeconfig.conf"}
    return {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "kube-proxy", "namespace": KUBE_SYSTEM, "labels": dict(LABELS)},
        "data": {"config.conf": yaml.safe_dump(shared, sort_keys=False)},
    }  # fmt: skip


def _pod_spec(version: str) -> dict[str, Any]:
    return {
        "hostNetwork": True,
        "priorityClassName": "system-node-critical",
        "containers": [{
            "name": "kube-proxy",
            "image": f"registry.k8s.io/kube-proxy:{version}",
            "command": ["/usr/local/bin/kube-proxy", "--config=/var/lib/kube-proxy/config.conf",
                        "--hostname-override=$(NODE_NAME)"],
            "env": [{"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
            "securityContext": {"privileged": True},
            "volumeMounts": [{"name": "kube-proxy", "mountPath": "/var/lib/kube-proxy"}],
        }],
        "volumes": [{"name": "kube-proxy", "configMap": {"name": "kube-proxy"}}],  # as kubeadm's manifest
    }  # fmt: skip


def daemonset(version: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "kube-proxy", "namespace": KUBE_SYSTEM, "labels": dict(LABELS)},
        "spec": {
            "selector": {"matchLabels": dict(LABELS)},
            "template": {"metadata": {"labels": dict(LABELS)}, "spec": _pod_spec(version)},
            "updateStrategy": {"type": "RollingUpdate"},
        },
    }  # fmt: skip


def daemonset_status(nodes: int) -> dict[str, Any]:
    return {"currentNumberScheduled": nodes, "desiredNumberScheduled": nodes, "numberAvailable": nodes,
            "numberMisscheduled": 0, "numberReady": nodes, "updatedNumberScheduled": nodes,
            "observedGeneration": 1}  # fmt: skip


_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # apimachinery's rand.String alphabet (generateName suffixes)


def ds_pod_name(node_name: str) -> str:
    """The DaemonSet pod's name on `node_name`, shaped like the controller's (`kube-proxy-` + 5 generated
    characters), fixed per node so the lab is reproducible. Not `kube-proxy-<node>`: that is the name of a
    static pod's mirror pod on the node, and the kubelet lab runs that shape too."""
    digest = hashlib.sha256(node_name.encode()).digest()
    return "kube-proxy-" + "".join(_NAME_ALPHABET[b % len(_NAME_ALPHABET)] for b in digest[:5])


def pod(version: str, node_name: str, ds_uid: str) -> dict[str, Any]:
    spec = _pod_spec(version)
    spec["nodeName"] = node_name
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": ds_pod_name(node_name), "namespace": KUBE_SYSTEM, "labels": dict(LABELS),
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "kube-proxy", "uid": ds_uid,
                                 "controller": True, "blockOwnerDeletion": True}],
        },
        "spec": spec,
    }  # fmt: skip


def pod_status(node_ip: str, version: str, *, ready: bool = True, restarts: int = 0) -> dict[str, Any]:
    now = _now()
    flag = "True" if ready else "False"
    return {
        "phase": "Running", "hostIP": node_ip, "podIP": node_ip, "podIPs": [{"ip": node_ip}], "startTime": now,
        "conditions": [{"type": "Ready", "status": flag, "lastTransitionTime": now},
                       {"type": "ContainersReady", "status": flag, "lastTransitionTime": now}],
        "containerStatuses": [{
            "name": "kube-proxy", "ready": ready, "restartCount": restarts, "started": True,
            "image": f"registry.k8s.io/kube-proxy:{version}", "imageID": "",
            "state": {"running": {"startedAt": now}},
        }],
    }  # fmt: skip
