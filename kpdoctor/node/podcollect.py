"""`--transport pod`: a short-lived collector pod per node, read through `pods/exec`, always deleted.

For nodes nobody can SSH to and whose kube-proxy pod cannot be exec'd into (or does not exist): kpdoctor
creates one pod pinned to the node (`nodeName`, so no scheduler is involved and any taint is tolerated),
in the host network namespace (the node's netfilter state is per network namespace), from an image the
node already has (its own kube-proxy image, which carries iptables/nft) unless --collector-image names
another. The container only sleeps; every fact is the same fixed argv the kube-exec transport sends,
run with `pods/exec`, and kube-proxy's HTTP surfaces are read through the pod proxy at the pod IP (the
node's address). Least privilege: all capabilities dropped but NET_ADMIN (iptables-save / nft / ipset
list / conntrack -S / ipvsadm read netfilter state through netlink or getsockopt, which the kernel
allows only with CAP_NET_ADMIN) and NET_RAW (iptables-legacy-save opens a raw socket for its getsockopt);
no privilege escalation, read-only root filesystem, no ServiceAccount token, no hostPID.

The pod is deleted when collection ends: on success, on every error, on a timeout and on Ctrl-C (the
fan-out's cancel calls `close`, also while the pod is still starting). Each pod carries the label
`app.kubernetes.io/managed-by=kpdoctor` and an `activeDeadlineSeconds`, so the kubelet kills one that
outlives its run; `cleanup_expired` deletes kpdoctor's collector pods whose deadline has passed (every
pod-transport run does it first), and `kubectl delete pod -A -l app.kubernetes.io/managed-by=kpdoctor`
finds any leftover.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import secrets
import threading
import time
from datetime import UTC, datetime
from typing import Any

from kpdoctor.node.apireason import api_reason
from kpdoctor.node.kube_exec import KUBE_SYSTEM, KubeExecTransport, find_kube_proxy_pod
from kpdoctor.node.transport import TransportError

MANAGED_BY = "app.kubernetes.io/managed-by"
COMPONENT = "app.kubernetes.io/component"
LABELS = {MANAGED_BY: "kpdoctor", COMPONENT: "node-collector"}
SELECTOR = f"{MANAGED_BY}=kpdoctor,{COMPONENT}=node-collector"
NODE_ANNOTATION = "kpdoctor.io/node"
CAPABILITIES = ("NET_ADMIN", "NET_RAW")
CONTAINER = "collector"
SLACK_S = 60  # the pod's own deadline: the run's timeout plus this
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


def pod_name(node_name: str) -> str:
    """kpdoctor-collect-<node digest>-<random>: a valid DNS label for any node name, unique per run."""
    digest = hashlib.sha256(node_name.encode()).hexdigest()[:10]
    return f"kpdoctor-collect-{digest}-{secrets.token_hex(3)}"


def collector_pod(node_name: str, image: str, *, name: str, lifetime_s: int, namespace: str = KUBE_SYSTEM) -> dict[str, Any]:
    """The collector pod's manifest (no shell, no hostPID, the two capabilities, read-only root)."""
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(LABELS),
                     "annotations": {NODE_ANNOTATION: node_name}},
        "spec": {
            "nodeName": node_name, "hostNetwork": True, "restartPolicy": "Never",
            "activeDeadlineSeconds": lifetime_s, "terminationGracePeriodSeconds": 0,
            "automountServiceAccountToken": False, "enableServiceLinks": False,
            "tolerations": [{"operator": "Exists"}],
            "containers": [{
                "name": CONTAINER, "image": image, "imagePullPolicy": "IfNotPresent",
                "command": ["sleep", str(lifetime_s)],
                "securityContext": {
                    "capabilities": {"drop": ["ALL"], "add": list(CAPABILITIES)},
                    "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsUser": 0,
                },
                "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}},
                "volumeMounts": [{"name": "run", "mountPath": "/run"}, {"name": "tmp", "mountPath": "/tmp"}],
            }],
            "volumes": [{"name": "run", "emptyDir": {"medium": "Memory"}}, {"name": "tmp", "emptyDir": {}}],
        },
    }  # fmt: skip


def with_service_account(manifest: dict[str, Any], account: str, lifetime_s: int) -> dict[str, Any]:
    """The manifest, running as ServiceAccount `account` of its namespace with a token that expires with the pod
    (--analyze-in-pod: the node side reads the cluster with the in-cluster config). The token volume is written
    out (what ServiceAccount admission would add), read-only, so the token's lifetime is bounded here."""
    spec = manifest["spec"]
    spec["serviceAccountName"] = account
    spec["volumes"].append({"name": "kube-api-access", "projected": {"defaultMode": 0o444, "sources": [
        {"serviceAccountToken": {"path": "token", "expirationSeconds": max(600, lifetime_s)}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]}},
    ]}})  # fmt: skip
    spec["containers"][0]["volumeMounts"].append({"name": "kube-api-access", "mountPath": SA_DIR, "readOnly": True})
    return manifest


def node_image(node_name: str, *, cluster: Any = None, api: Any = None) -> str:
    """The image of the node's own kube-proxy pod (every node has it already: nothing is pulled)."""
    if cluster is not None:
        pod = cluster.kube_proxy_pod_on(node_name)
        if pod is not None:
            image = next((c.image for c in pod.containers if c.name == "kube-proxy" and c.image), "")
            if image:
                return image
    namespace, name, container = find_kube_proxy_pod(node_name, cluster=None, api=api)
    pod = api.read_namespaced_pod(name, namespace)
    for c in pod.spec.containers or []:
        if c.name == container and c.image:
            return str(c.image)
    raise TransportError(f"the kube-proxy pod on node {node_name} names no image: give --collector-image")


def _waiting_reason(pod: Any) -> str:
    for status in getattr(pod.status, "container_statuses", None) or []:
        state = status.state
        if state is not None and state.waiting is not None:
            return f"{state.waiting.reason or 'waiting'}: {(state.waiting.message or '')[:200]}".rstrip(": ")
        if state is not None and state.terminated is not None:
            return f"exited {state.terminated.exit_code} ({state.terminated.reason or ''})"
    return getattr(pod.status, "reason", None) or getattr(pod.status, "phase", None) or "pending"


class PodTransport(KubeExecTransport):
    name = "pod"

    def __init__(self, node_name: str, *, api: Any, cluster: Any = None, image: str | None = None,
                 namespace: str = KUBE_SYSTEM, lifetime_s: int = 0, stream_fn: Any = None,
                 service_account: str = "") -> None:  # fmt: skip
        super().__init__(node_name, api=api, cluster=cluster, stream_fn=stream_fn)
        self.image = image or ""
        self.service_account = service_account  # --analyze-in-pod: the pod's ServiceAccount (else no token)
        self.pod_namespace = namespace
        self.lifetime_s = lifetime_s
        self.created = ""  # the pod's name once created
        self._lock = threading.Lock()
        self._closed = False
        self.leftover = ""  # a pod that could not be deleted (its deadline and cleanup_expired remain)

    def connect(self, timeout: float) -> None:
        if self.api is None:
            raise TransportError("--transport pod needs the cluster API (kubeconfig or in-cluster config)")
        deadline = time.monotonic() + timeout
        try:
            image = self.image or node_image(self.node_name, cluster=self.cluster, api=self.api)
            name = pod_name(self.node_name)
            lifetime = int(self.lifetime_s or timeout) + SLACK_S
            manifest = collector_pod(self.node_name, image, name=name, namespace=self.pod_namespace, lifetime_s=lifetime)
            if self.service_account:
                manifest = with_service_account(manifest, self.service_account, lifetime)
            with self._lock:
                if self._closed:
                    raise TransportError("interrupted before the collector pod was created")
                self.api.create_namespaced_pod(self.pod_namespace, manifest)
                self.created = name
            self._wait_running(deadline)
        except TransportError:
            self.close()
            raise
        except Exception as exc:  # an API error: the node fails, the pod (if any) goes
            self.close()
            raise TransportError(f"collector pod: {api_reason(exc)}") from None
        self.namespace, self.pod, self.container = self.pod_namespace, self.created, CONTAINER
        self.address = f"pod {self.namespace}/{self.pod}"
        if self._stream is None:
            from kpdoctor.node.kube_exec import _default_stream

            self._stream = _default_stream()
        from kpdoctor.node.kube_exec import _private_api

        self._exec_api = _private_api(self.api)

    def _wait_running(self, deadline: float) -> None:
        reason = "pending"
        while time.monotonic() < deadline:
            if self._closed:
                raise TransportError("interrupted while the collector pod was starting")
            pod = self.api.read_namespaced_pod(self.created, self.pod_namespace)
            phase = getattr(pod.status, "phase", "") or ""
            statuses = getattr(pod.status, "container_statuses", None) or []
            if phase == "Running" and statuses and statuses[0].state is not None and statuses[0].state.running:
                return
            reason = _waiting_reason(pod)
            if phase in ("Failed", "Succeeded"):
                raise TransportError(f"collector pod {self.pod_namespace}/{self.created} {phase.lower()}: {reason}")
            time.sleep(0.5)
        raise TransportError(f"collector pod {self.pod_namespace}/{self.created} not running in time ({reason})")

    def close(self) -> None:
        """Delete the pod (idempotent, safe from the cancel thread while connect is still waiting)."""
        super().close()
        with self._lock:
            self._closed = True
            name, self.created = self.created, ""
        if not name:
            return
        try:
            self.api.delete_namespaced_pod(name, self.pod_namespace, grace_period_seconds=0)
        except Exception as exc:
            if getattr(exc, "status", None) != 404:
                # the pod's activeDeadlineSeconds and cleanup_expired are the backstops
                self.leftover = f"{self.pod_namespace}/{name}: {api_reason(exc)}"


def prepare(options: Any, image: str | None) -> Any:
    """The scan's CollectOptions for --transport pod: the image, after deleting expired leftovers."""
    if options.kube_api is not None:
        # listing may be forbidden: the collection itself will then say what is missing
        with contextlib.suppress(Exception):
            cleanup_expired(options.kube_api)
    return dataclasses.replace(options, collector_image=image or None)


def cleanup_expired(api: Any, namespace: str = KUBE_SYSTEM, now: datetime | None = None) -> list[str]:
    """Delete kpdoctor collector pods whose activeDeadlineSeconds has passed (another run's leftovers, never
    a pod a run in progress still uses); return their names."""
    now = now or datetime.now(UTC)
    gone = []
    for pod in api.list_namespaced_pod(namespace, label_selector=SELECTOR).items or []:
        created = pod.metadata.creation_timestamp
        limit = getattr(pod.spec, "active_deadline_seconds", None) or 0
        if created is None or (now - created).total_seconds() <= limit:
            continue
        try:
            api.delete_namespaced_pod(pod.metadata.name, namespace, grace_period_seconds=0)
            gone.append(pod.metadata.name)
        except Exception as exc:
            if getattr(exc, "status", None) != 404:
                raise
    return gone
