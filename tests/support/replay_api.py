"""A replay Kubernetes API server on loopback serving bundle B1's recorded real API objects (kube-apiserver
v1.36.2) with real limit/continue pagination, a 403 for chosen kinds and an all-requests status mode."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from tests.conftest import BUNDLES

B1 = BUNDLES / "B1-healthy" / "bundle" / "cluster"
ROUTES = {
    "/api/v1/services": "services.json",
    "/apis/discovery.k8s.io/v1/endpointslices": "endpointslices.json",
    "/api/v1/nodes": "nodes.json",
    "/api/v1/namespaces/kube-system/configmaps": "configmaps.json",
    "/apis/apps/v1/namespaces/kube-system/daemonsets": "daemonsets.json",
    "/api/v1/namespaces/kube-system/pods": "pods.json",
}


class Replay(BaseHTTPRequestHandler):
    forbidden: set[str] = set()
    status_all: int | None = None
    seen: list[str] = []

    def log_message(self, *args: Any) -> None:
        return None

    def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802
        url = urlparse(self.path)
        self.seen.append(self.path)
        query = parse_qs(url.query)
        if self.status_all:
            self._send(self.status_all, json.dumps({"kind": "Status", "code": self.status_all}).encode())
            return
        if url.path in self.forbidden:
            self._send(403, json.dumps({"kind": "Status", "code": 403, "reason": "Forbidden"}).encode())
            return
        if url.path.endswith("/log"):
            pod = url.path.split("/")[-2]
            log = B1 / "logs" / "kube-system" / f"{pod}.log"
            self._send(200, log.read_bytes() if log.exists() else b"", "text/plain")
            return
        name = ROUTES.get(url.path)
        if name is None:
            self._send(404, b"{}")
            return
        items = json.loads((B1 / name).read_text())["items"]
        limit = int(query.get("limit", ["500"])[0])
        start = int(query.get("continue", ["0"])[0])
        page = items[start : start + limit]
        token = str(start + limit) if start + limit < len(items) else ""
        self._send(200, json.dumps({"kind": "List", "metadata": {"continue": token}, "items": page}).encode())


@contextmanager
def serve_replay(handler: type[Replay], tmp_path: Path) -> Iterator[Path]:
    """Serve `handler` on a loopback port for the block; yields a kubeconfig (in tmp_path) pointing at it."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: replay\n"
        f"clusters:\n- name: replay\n  cluster:\n    server: http://127.0.0.1:{httpd.server_address[1]}\n"
        "users:\n- name: u\n  user:\n    token: not-a-real-token\n"
        "contexts:\n- name: replay\n  context:\n    cluster: replay\n    user: u\n"
    )
    try:
        yield kubeconfig
    finally:
        httpd.shutdown()
        httpd.server_close()
