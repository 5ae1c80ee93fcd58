"""kube-exec transport: run the same fixed argv inside the node's kube-proxy pod via the API's exec stream.

For clusters where nobody has SSH. kube-proxy runs in the host network
namespace and ships the iptables/nft tools, so what it sees is the node's
dataplane. The pod is the one the DaemonSet put on that node (`spec.nodeName`);
the argv goes to the API as a list (no shell). kube-proxy's HTTP surfaces are
read through the API's pod proxy, which reaches only ports bound on the pod
(= node) IP; a loopback-only metrics bind is reported as not reachable.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from kpdoctor.node.apireason import api_reason
from kpdoctor.node.exec_status import exit_status
from kpdoctor.node.transport import NOT_FOUND, RunResult, TransportError, cut_at_line

KUBE_SYSTEM = "kube-system"
KUBE_PROXY_SELECTOR = "k8s-app=kube-proxy"


def _default_stream() -> Callable[..., Any]:
    from kubernetes.stream import stream

    return stream


def find_kube_proxy_pod(node_name: str, *, cluster: Any = None, api: Any = None) -> tuple[str, str, str]:
    """(namespace, pod, container) of the kube-proxy pod on a node: from ClusterState, else a filtered list call."""
    if cluster is not None:
        pod = cluster.kube_proxy_pod_on(node_name)
        if pod is not None:
            container = next((c.name for c in pod.containers if c.name == "kube-proxy"), None)
            container = container or (pod.containers[0].name if pod.containers else "kube-proxy")
            return pod.namespace, pod.name, container
    if api is None:
        raise TransportError(f"no kube-proxy pod known on node {node_name} (no cluster API)")
    listing = api.list_namespaced_pod(
        KUBE_SYSTEM, label_selector=KUBE_PROXY_SELECTOR, field_selector=f"spec.nodeName={node_name}"
    )
    items = list(getattr(listing, "items", None) or [])
    items.sort(key=lambda p: (getattr(p.status, "phase", "") != "Running", p.metadata.name))
    if not items:
        raise TransportError(f"no kube-proxy pod (label {KUBE_PROXY_SELECTOR}) runs on node {node_name}")
    pod = items[0]
    names = [c.name for c in (pod.spec.containers or [])]
    return pod.metadata.namespace, pod.metadata.name, "kube-proxy" if "kube-proxy" in names else names[0]


class KubeExecTransport:
    name = "kube-exec"

    def __init__(
        self,
        node_name: str,
        *,
        api: Any,
        cluster: Any = None,
        stream_fn: Callable[..., Any] | None = None,
    ) -> None:
        self.node_name = node_name
        self.api = api
        self.cluster = cluster
        self._stream = stream_fn
        self.address = ""
        self.namespace = ""
        self.pod = ""
        self.container = ""
        self._has_shell = True
        self._exec_api: Any = None
        self._open_lock = threading.Lock()

    def connect(self, timeout: float) -> None:
        if self.api is None:
            raise TransportError("kube-exec needs the cluster API (kubeconfig or in-cluster config)")
        self.namespace, self.pod, self.container = find_kube_proxy_pod(self.node_name, cluster=self.cluster, api=self.api)
        self.address = f"pod {self.namespace}/{self.pod}"
        if self._stream is None:
            self._stream = _default_stream()
        self._exec_api = _private_api(self.api)

    def exec_argv(self, argv: Sequence[str]) -> list[str]:
        """The exact command sent to the exec API: the argv itself, as a list (never a shell string)."""
        return [str(a) for a in argv]

    def which(self, tools: Sequence[str], timeout: float) -> set[str]:
        script = 'for t in "$@"; do command -v "$t" >/dev/null 2>&1 && echo "$t"; done; exit 0'
        res = self.run(["sh", "-c", script, "sh", *tools], timeout=timeout, max_bytes=65536)
        if not res.ok:
            # distroless images have no shell: try everything and let a missing tool be a per-fact error
            self._has_shell = False
            return set(tools)
        return set(res.stdout.decode(errors="replace").split()) & set(tools)

    def run(self, argv: Sequence[str], *, timeout: float, max_bytes: int) -> RunResult:
        assert self._stream is not None, "connect() first"
        start = time.monotonic()
        try:
            with self._open_lock:
                resp = self._stream(
                    (self._exec_api or self.api).connect_get_namespaced_pod_exec, self.pod, self.namespace,
                    command=self.exec_argv(argv), container=self.container,
                    stderr=True, stdin=False, stdout=True, tty=False, _preload_content=False,
                )  # fmt: skip
        except Exception as exc:
            return RunResult(duration=time.monotonic() - start, error=f"exec failed: {api_reason(exc)}")
        out = bytearray()
        err = bytearray()
        try:
            while resp.is_open():
                left = start + timeout - time.monotonic()
                if left <= 0:
                    return RunResult(b"", bytes(err), None, time.monotonic() - start, True, False,
                                     f"timed out after {timeout:g}s")  # fmt: skip
                resp.update(timeout=min(1.0, left))
                if resp.peek_stdout():
                    out.extend(_bytes(resp.read_stdout()))
                    if len(out) > max_bytes:
                        return RunResult(cut_at_line(bytes(out[:max_bytes])), bytes(err), 0,
                                         time.monotonic() - start, False, True)  # fmt: skip
                if resp.peek_stderr():
                    err.extend(_bytes(resp.read_stderr())[:65536])
            code, status_error = exit_status(resp)
        except Exception as exc:
            return RunResult(bytes(out), bytes(err), None, time.monotonic() - start, False, False,
                             f"exec stream failed: {api_reason(exc)}")  # fmt: skip
        finally:
            with contextlib.suppress(Exception):
                resp.close()
        error = ""
        if code is None:
            code = NOT_FOUND if b"executable file not found" in err or "executable file not found" in status_error \
                else None
            error = "not installed" if code == NOT_FOUND else (status_error or "no exit status from the exec stream")
        return RunResult(bytes(out), bytes(err), code, time.monotonic() - start, False, False, error)

    def read_file(self, path: str, *, timeout: float, max_bytes: int) -> RunResult:
        res = self.run(["cat", path], timeout=timeout, max_bytes=max_bytes)
        if res.exit_code == 1 and b"No such file" in res.stderr:
            return RunResult(exit_code=1, stderr=res.stderr, duration=res.duration, error="no such file")
        return res

    def http_get(self, host: str, port: int, path: str, *, timeout: float, max_bytes: int) -> RunResult:
        start = time.monotonic()
        # The pod proxy reaches the pod IP, which for kube-proxy's host-network pod is the node's address: a
        # wildcard bind (0.0.0.0:10256, which the plan asks for on loopback) answers there, a loopback-only
        # bind does not (then the proxy fails and the fact is "not available", never "not answering").
        loopback = host.startswith("127.") or host == "::1"
        try:
            resp = self.api.connect_get_namespaced_pod_proxy_with_path(
                f"{self.pod}:{port}", self.namespace, path.lstrip("/"), _preload_content=False, _request_timeout=timeout
            )
            body = _read_body(resp, max_bytes)
            status = getattr(resp, "status", 200)
        except Exception as exc:
            status = getattr(exc, "status", None)
            if status in (502, 503) or status is None:
                hint = f" (a {host}-only bind is not reachable through the API's pod proxy)" if loopback else ""
                return RunResult(duration=time.monotonic() - start, error=f"pod proxy failed: {api_reason(exc)}{hint}")
            body = (getattr(exc, "body", b"") or b"") if isinstance(getattr(exc, "body", b""), bytes) else \
                str(getattr(exc, "body", "")).encode()  # fmt: skip
        if len(body) > max_bytes:
            return RunResult(cut_at_line(body[:max_bytes]), b"", status, time.monotonic() - start, False, True)
        return RunResult(body, b"", status, time.monotonic() - start)

    def close(self) -> None:
        """Release the exec streams' own ApiClient (its connection pool); the caller's client stays open."""
        private, self._exec_api = self._exec_api, None
        inner = getattr(private, "api_client", None)
        if inner is not None and hasattr(inner, "close"):
            with contextlib.suppress(Exception):
                inner.close()


def _private_api(api: Any) -> Any:
    """A CoreV1Api on an ApiClient of its own, for exec streams only.

    kubernetes.stream.stream() swaps `api_client.request` for a websocket request while it opens a stream and
    restores it afterwards: two streams opened at once on one client can leave the websocket request in place
    for good, and a pod-proxy GET made meanwhile goes out as a websocket (seen on a real kubelet: every
    kube-proxy HTTP fact read back as "None"). So streams get their own client, opened one at a time, and
    the pod proxy keeps the caller's."""
    inner = getattr(api, "api_client", None)
    configuration = getattr(inner, "configuration", None)
    if configuration is None:
        return None
    from kubernetes import client

    return client.CoreV1Api(client.ApiClient(configuration))


def _read_body(resp: Any, max_bytes: int) -> bytes:
    """The body of a pod-proxy response, read once, at most max_bytes + 1 (urllib3's `.data` is None when the
    body was already read or the connection released; bytes(None) would have been reported as "None")."""
    if hasattr(resp, "read"):
        try:
            data = resp.read(max_bytes + 1)
        finally:
            with contextlib.suppress(Exception):
                resp.release_conn()
        return bytes(data or b"")
    return _bytes(resp)


def _bytes(value: Any) -> bytes:
    return value.encode("utf-8", errors="surrogateescape") if isinstance(value, str) else bytes(value)
