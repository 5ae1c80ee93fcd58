"""The kube-proxy a real kubelet runs on a lab node, shaped as kubeadm deploys it.

kubeadm's kube-proxy: a DaemonSet in kube-system whose pods run `kube-proxy --config=/var/lib/kube-proxy/
config.conf --hostname-override=$(NODE_NAME)` with the `kube-proxy` ConfigMap (keys config.conf and
kubeconfig.conf) mounted at /var/lib/kube-proxy, the xtables lock and /lib/modules from the host, the
ServiceAccount kube-system/kube-proxy bound to system:node-proxier, and the ServiceAccount token it
authenticates with.

The lab runs no controller-manager, so what the controllers would write is written here: the Pod on the
kubelet's node with the DaemonSet as its controlling owner (as the DaemonSet controller makes it), the
`kube-root-ca.crt` ConfigMap (as the root-CA publisher does), and the token volume in the pod spec (the
API server's ServiceAccount admission plugin, which the lab leaves off, would add the same projected
volume). The kubelet then pulls nothing (the image is imported), mounts, starts and reports it for real.
"""

from __future__ import annotations

from typing import Any

import yaml

from kpdoctor.lab import kobjects

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
KUBE_SYSTEM = kobjects.KUBE_SYSTEM


def kubeconfig_conf(server: str) -> str:
    """kubeadm's kubeconfig.conf: the in-cluster CA and the pod's ServiceAccount token."""
    doc = {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "default", "cluster": {"certificate-authority": f"{SA_DIR}/ca.crt", "server": server}}],
        "contexts": [{"name": "default", "context": {"cluster": "default", "namespace": "default", "user": "default"}}],
        "current-context": "default",
        "users": [{"name": "default", "user": {"tokenFile": f"{SA_DIR}/token"}}],
    }  # fmt: skip
    return yaml.safe_dump(doc, sort_keys=False)


def configmap(config: dict[str, Any], server: str) -> dict[str, Any]:
    cm = kobjects.configmap(config)
    cm["data"]["kubeconfig.conf"] = kubeconfig_conf(server)
    return cm


def access_objects(ca_pem: str) -> list[dict[str, Any]]:
    """ServiceAccount, its binding to system:node-proxier (kubeadm's name), and kube-root-ca.crt."""
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "kube-proxy", "namespace": KUBE_SYSTEM}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": "kubeadm:node-proxier"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:node-proxier"},
         "subjects": [{"kind": "ServiceAccount", "name": "kube-proxy", "namespace": KUBE_SYSTEM}]},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kube-root-ca.crt", "namespace": KUBE_SYSTEM},
         "data": {"ca.crt": ca_pem}},
    ]  # fmt: skip


def token_volume() -> dict[str, Any]:
    """The projected volume ServiceAccount admission adds (token, CA, namespace)."""
    return {
        "name": "kube-api-access", "projected": {"defaultMode": 0o644, "sources": [
            {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1",
                                                                         "fieldPath": "metadata.namespace"}}]}},
        ]},
    }  # fmt: skip


def pod_spec(image: str) -> dict[str, Any]:
    return {
        "hostNetwork": True, "priorityClassName": "system-node-critical", "serviceAccountName": "kube-proxy",
        "automountServiceAccountToken": True, "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"operator": "Exists"}],
        "containers": [{
            "name": "kube-proxy", "image": image, "imagePullPolicy": "IfNotPresent",
            "command": ["/usr/local/bin/kube-proxy", "--config=/var/lib/kube-proxy/config.conf",
                        "--hostname-override=$(NODE_NAME)"],
            "env": [{"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
            "securityContext": {"privileged": True},
            "volumeMounts": [{"name": "kube-proxy", "mountPath": "/var/lib/kube-proxy"},
                             {"name": "xtables-lock", "mountPath": "/run/xtables.lock"},
                             {"name": "lib-modules", "mountPath": "/lib/modules", "readOnly": True},
                             {"name": "kube-api-access", "mountPath": SA_DIR, "readOnly": True}],
        }],
        "volumes": [{"name": "kube-proxy", "configMap": {"name": "kube-proxy"}},
                    {"name": "xtables-lock", "hostPath": {"path": "/run/xtables.lock", "type": "FileOrCreate"}},
                    {"name": "lib-modules", "hostPath": {"path": "/lib/modules"}},
                    token_volume()],
    }  # fmt: skip


def daemonset(image: str) -> dict[str, Any]:
    ds = kobjects.daemonset("")
    ds["spec"]["template"]["spec"] = pod_spec(image)
    return ds


def pod(image: str, node_name: str, ds_uid: str) -> dict[str, Any]:
    """The Pod the DaemonSet controller would create on `node_name`."""
    obj = kobjects.pod("", node_name, ds_uid)
    spec = pod_spec(image)
    spec["nodeName"] = node_name
    obj["spec"] = spec
    return obj


def static_pod(image: str, config_path: str, state_dir: str) -> dict[str, Any]:
    """kube-proxy as a static pod (kube-up / kops / RKE2 shape): a manifest in the kubelet's staticPodPath,
    configured by a file on the node (`--config`), credentials from the node's disk; the kubelet publishes
    a mirror pod `kube-proxy-<node>` owned by the Node. A static pod cannot use ConfigMaps or a
    ServiceAccount, so the lab's own per-node config and client certificate are mounted from the host."""
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "kube-proxy", "namespace": KUBE_SYSTEM, "labels": dict(kobjects.LABELS)},
        "spec": {
            "hostNetwork": True, "priorityClassName": "system-node-critical",
            "containers": [{
                "name": "kube-proxy", "image": image, "imagePullPolicy": "IfNotPresent",
                "command": ["/usr/local/bin/kube-proxy", f"--config={config_path}"],
                "securityContext": {"privileged": True},
                "volumeMounts": [{"name": "lab", "mountPath": state_dir, "readOnly": True},
                                 {"name": "xtables-lock", "mountPath": "/run/xtables.lock"}],
            }],
            "volumes": [{"name": "lab", "hostPath": {"path": state_dir, "type": "Directory"}},
                        {"name": "xtables-lock", "hostPath": {"path": "/run/xtables.lock", "type": "FileOrCreate"}}],
        },
    }  # fmt: skip
