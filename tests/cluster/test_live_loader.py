"""The live loader with the REAL kubernetes client against a replay API server on loopback.

No kube-apiserver can run here, so a small HTTP server replays the recorded real API objects of bundle B1
(captured from kube-apiserver v1.36.2) with real limit/continue pagination, a 403 for one kind and a 401
mode. The kubernetes client, its kubeconfig loading and its HTTP stack are real. The kube-exec transport is
tested with a recording fake client object (command construction and pod lookup only): no real exec here.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from kpdoctor.cluster.live import load_live
from kpdoctor.errors import UnreachableError
from kpdoctor.node.bundle import read_bundle
from kpdoctor.node.kube_exec import KubeExecTransport, find_kube_proxy_pod
from tests.conftest import BUNDLES
from tests.support.replay_api import Replay, serve_replay


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[tuple[Path, type[Replay]]]:
    handler = type("H", (Replay,), {"forbidden": set(), "status_all": None, "seen": []})
    with serve_replay(handler, tmp_path) as kubeconfig:
        yield kubeconfig, handler


def test_paginated_load_equals_the_snapshot(server: tuple[Path, type[Replay]], monkeypatch: pytest.MonkeyPatch) -> None:
    kubeconfig, handler = server
    monkeypatch.setattr("kpdoctor.cluster.live.PAGE", 2)
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))  # honoured without --kubeconfig
    result = load_live()
    expected = read_bundle(BUNDLES / "B1-healthy").cluster_state()
    assert result.state.services == expected.services
    def unsourced(objs: Any) -> list[Any]:  # `source` names the file / API page each came from
        return [replace(o, source="") for o in objs]

    assert unsourced(result.state.endpoint_slices) == unsourced(expected.endpoint_slices)
    assert result.state.nodes == expected.nodes and result.state.pods == expected.pods
    assert unsourced(result.state.configmaps) == unsourced(expected.configmaps)  # same parse path as snapshots
    assert any("continue=2" in p for p in handler.seen) and all("limit=2" in p for p in handler.seen
                                                                 if "/log" not in p)  # fmt: skip
    assert set(result.state.logs) == set(expected.logs)
    assert result.gaps == [] and len(result.objects["services"]) == 7


def test_forbidden_kind_is_a_gap_not_a_crash(server: tuple[Path, type[Replay]]) -> None:
    kubeconfig, handler = server
    handler.forbidden.add("/apis/apps/v1/namespaces/kube-system/daemonsets")
    result = load_live(str(kubeconfig))
    assert [g.kind for g in result.state.gaps] == ["DaemonSet"]
    assert "403" in result.state.gaps[0].reason
    assert result.state.daemonsets == () and len(result.state.services) == 7


def test_rejected_credentials_are_unreachable(server: tuple[Path, type[Replay]]) -> None:
    kubeconfig, handler = server
    handler.status_all = 401
    with pytest.raises(UnreachableError, match="401.*expired or invalid") as info:
        load_live(str(kubeconfig))
    assert info.value.exit_code == 3


def test_unreachable_api_and_bad_context(tmp_path: Path, server: tuple[Path, type[Replay]]) -> None:
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    config = tmp_path / "dead"
    config.write_text(server[0].read_text().replace(server[0].read_text().split("server: ")[1].split("\n")[0],
                                                    f"http://127.0.0.1:{port}"))  # fmt: skip
    with pytest.raises(UnreachableError, match="cannot reach the API server"):
        load_live(str(config))
    with pytest.raises(UnreachableError, match="credentials"):
        load_live(str(server[0]), context="no-such-context")


# ---- kube-exec (fake client object: records calls; there is no API server to exec into) ----------------

class _Stream:
    def __init__(self, out: bytes, code: int) -> None:
        self._out, self.returncode, self._open = out, code, True

    def is_open(self) -> bool:
        return self._open

    def update(self, timeout: float) -> None:
        return None

    def peek_stdout(self) -> bool:
        return bool(self._out)

    def read_stdout(self) -> bytes:
        out, self._out, self._open = self._out, b"", False
        return out

    def peek_stderr(self) -> bool:
        return False

    def read_stderr(self) -> bytes:
        return b""

    def close(self) -> None:
        self._open = False


class _RecordingApi:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, list[str], str]] = []

    def connect_get_namespaced_pod_exec(self, *a: Any, **kw: Any) -> None:
        raise AssertionError("only through stream()")


def test_kube_exec_finds_the_pod_on_the_node_and_sends_argv_as_a_list() -> None:
    cluster = read_bundle(BUNDLES / "B1-healthy").cluster_state()
    assert find_kube_proxy_pod("edge-1", cluster=cluster)[1] == "kube-proxy-fn2sb"
    assert find_kube_proxy_pod("edge-2", cluster=cluster)[1] == "kube-proxy-nftables-2vwpn"
    api = _RecordingApi()

    def stream(fn: Any, name: str, namespace: str, **kw: Any) -> _Stream:
        assert fn == api.connect_get_namespaced_pod_exec and kw["tty"] is False and kw["stdin"] is False
        api.calls.append((namespace, name, kw["command"], kw["container"]))
        return _Stream(b"iptables v1.8.9 (nf_tables)\n", 0)

    t = KubeExecTransport("edge-1", api=api, cluster=cluster, stream_fn=stream)
    t.connect(5)
    res = t.run(["iptables", "--version"], timeout=5, max_bytes=1024)
    assert res.ok and res.stdout.startswith(b"iptables v1.8.9")
    hostile = "10.96.0.1; rm -rf /"
    t.run(["conntrack", "-L", "-d", hostile], timeout=5, max_bytes=1024)
    assert api.calls == [("kube-system", "kube-proxy-fn2sb", ["iptables", "--version"], "kube-proxy"),
                         ("kube-system", "kube-proxy-fn2sb", ["conntrack", "-L", "-d", hostile], "kube-proxy")]  # fmt: skip
    assert "127.0.0.1" in t.http_get("127.0.0.1", 10249, "/metrics", timeout=1, max_bytes=10).error


def test_kube_exec_pod_lookup_through_the_api_when_no_cluster_state() -> None:
    class Meta:
        def __init__(self, name: str) -> None:
            self.name, self.namespace = name, "kube-system"

    class PodObj:
        def __init__(self, name: str, phase: str) -> None:
            self.metadata = Meta(name)
            self.status = type("S", (), {"phase": phase})()
            self.spec = type("Sp", (), {"containers": [type("C", (), {"name": "kube-proxy"})()]})()

    class Api:
        args: dict[str, Any] = {}

        def list_namespaced_pod(self, namespace: str, **kw: Any) -> Any:
            self.args = {"namespace": namespace, **kw}
            return type("L", (), {"items": [PodObj("kube-proxy-old", "Failed"), PodObj("kube-proxy-new", "Running")]})()

    api = Api()
    assert find_kube_proxy_pod("node-7", api=api) == ("kube-system", "kube-proxy-new", "kube-proxy")
    assert api.args == {"namespace": "kube-system", "label_selector": "k8s-app=kube-proxy",
                        "field_selector": "spec.nodeName=node-7"}  # fmt: skip
