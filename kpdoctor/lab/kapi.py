"""A small REST client for the lab's API server: create, replace status, delete, list raw objects.

The lab writes to its own API server (Nodes, kube-proxy workloads, Services, EndpointSlices,
RBAC objects); kpdoctor itself stays read-only and uses kpdoctor.cluster.live.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import requests

# API path prefix -> (namespaced kinds, cluster-scoped kinds) the lab writes; each kind's plural is its
# lower-cased name plus "s" (true of every kind here).
_GROUPS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "/api/v1": (("Service", "Pod", "ConfigMap", "ServiceAccount", "PersistentVolumeClaim"),
                ("Namespace", "Node", "PersistentVolume")),
    "/apis/discovery.k8s.io/v1": (("EndpointSlice",), ()),
    "/apis/apps/v1": (("DaemonSet",), ()),
    "/apis/batch/v1": (("Job", "CronJob"), ()),
    "/apis/rbac.authorization.k8s.io/v1": (("Role", "RoleBinding"), ("ClusterRole", "ClusterRoleBinding")),
}
# kind -> (API path prefix, plural, namespaced)
RESOURCES: dict[str, tuple[str, str, bool]] = {
    kind: (prefix, kind.lower() + "s", namespaced)
    for prefix, kinds in _GROUPS.items()
    for namespaced, group in ((True, kinds[0]), (False, kinds[1]))
    for kind in group
}


class ApiError(Exception):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"HTTP {status}: {text[:400]}")
        self.status = status


@dataclass
class Api:
    server: str
    ca: str
    cert: str
    key: str
    timeout: float = 30.0

    def __post_init__(self) -> None:
        self.session = requests.Session()
        # trust_env off: REQUESTS_CA_BUNDLE in the environment would otherwise replace `verify`.
        self.session.trust_env = False
        self.session.verify = self.ca
        self.session.cert = (self.cert, self.key)

    def path(self, kind: str, namespace: str | None = None, name: str | None = None) -> str:
        prefix, plural, namespaced = RESOURCES[kind]
        ns = f"/namespaces/{namespace or 'default'}" if namespaced else ""
        return f"{self.server}{prefix}{ns}/{plural}" + (f"/{name}" if name else "")

    def request(self, method: str, url: str, body: Any = None, **params: Any) -> Any:
        resp = self.session.request(method, url, json=body, params=params or None, timeout=self.timeout)
        if resp.status_code >= 400:
            raise ApiError(resp.status_code, resp.text)
        return resp.json() if resp.content else None

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        result: dict[str, Any] = self.request("POST", self.path(obj["kind"], meta.get("namespace")), obj)
        return result

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Create, or replace when it exists (resourceVersion carried over)."""
        try:
            return self.create(obj)
        except ApiError as err:
            if err.status != 409:
                raise
        meta = obj["metadata"]
        url = self.path(obj["kind"], meta.get("namespace"), meta["name"])
        current = self.request("GET", url)
        body = {**obj, "metadata": {**meta, "resourceVersion": current["metadata"]["resourceVersion"]}}
        result: dict[str, Any] = self.request("PUT", url, body)
        return result

    def set_status(self, kind: str, name: str, status: dict[str, Any], namespace: str | None = None) -> None:
        url = self.path(kind, namespace, name) + "/status"
        resp = self.session.patch(url, json={"status": status}, timeout=self.timeout,
                                  headers={"Content-Type": "application/merge-patch+json"})  # fmt: skip
        if resp.status_code >= 400:
            raise ApiError(resp.status_code, resp.text)

    def delete(self, kind: str, name: str, namespace: str | None = None) -> None:
        try:
            self.request("DELETE", self.path(kind, namespace, name))
        except ApiError as err:
            if err.status != 404:
                raise

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", self.path(kind, namespace, name))
        return result

    def token(self, service_account: str, namespace: str, seconds: int = 86400) -> str:
        url = self.path("ServiceAccount", namespace, service_account) + "/token"
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                "spec": {"expirationSeconds": seconds}}  # fmt: skip
        return str(self.request("POST", url, body)["status"]["token"])

    def wait_ready(self, deadline_s: float = 60.0) -> None:
        """Until /readyz answers ok (the API server's post-start hooks, RBAC bootstrap included, are done)."""
        end = time.monotonic() + deadline_s
        last = ""
        while time.monotonic() < end:
            try:
                resp = self.session.get(f"{self.server}/readyz", timeout=5)
                if resp.status_code == 200:
                    return
                last = resp.text[-300:]
            except requests.RequestException as exc:
                last = str(exc)[:300]
            time.sleep(0.2)
        raise TimeoutError(f"API server not ready after {deadline_s:g}s: {last}")
