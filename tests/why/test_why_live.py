"""`kpdoctor why` against the live-API path: the real kubernetes client against test_live_loader's replay server
(recorded real B1 objects from kube-apiserver v1.36.2, served with pagination). It checks that the Service's
namespace Pods are read, and that a 403 on them makes the pod causes "not evaluated", never "no pods".
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from kpdoctor.cluster.live import load_live
from kpdoctor.commands.why_run import run_why
from kpdoctor.scanner import ScanRequest
from kpdoctor.why.target import parse_from, parse_target
from tests.support.replay_api import B1, Replay, serve_replay

STOREFRONT_PODS = "/api/v1/namespaces/storefront/pods"


class WithWorkloads(Replay):
    def do_GET(self) -> None:  # noqa: N802
        url = urlparse(self.path)
        if url.path == STOREFRONT_PODS and url.path not in self.forbidden:
            self.seen.append(self.path)
            items = [p for p in json.loads((B1 / "pods.json").read_text())["items"]
                     if p["metadata"]["namespace"] == "storefront"]
            self._send(200, json.dumps({"kind": "List", "metadata": {"continue": ""}, "items": items}).encode())
            return
        super().do_GET()


@pytest.fixture()
def live(tmp_path: Path) -> Iterator[tuple[Path, Any]]:
    handler = type("W", (WithWorkloads,), {"forbidden": set(), "status_all": None, "seen": []})
    with serve_replay(handler, tmp_path) as kubeconfig:
        yield kubeconfig, handler


def test_live_reads_the_services_namespace_pods(live: tuple[Path, Any]) -> None:
    kubeconfig, handler = live
    state = load_live(str(kubeconfig), pod_namespaces=["storefront"], with_logs=False).state
    assert state.workload_namespaces == ("storefront",)
    assert {p.namespace for p in state.workload_pods} == {"storefront"} and len(state.workload_pods) > 0
    assert all(p.namespace == "kube-system" for p in state.pods)  # the checks' view is unchanged
    assert any(p.startswith(STOREFRONT_PODS) for p in handler.seen)


def test_live_why_without_node_access(live: tuple[Path, Any]) -> None:
    kubeconfig, _ = live
    report = run_why(ScanRequest(kubeconfig=str(kubeconfig)), parse_target("svc/storefront/catalog"), parse_from(None))
    assert report.exit_code == 0 and report.causes == [] and report.nodes == []
    assert "what the nodes do with it is not known" in report.verdict


def test_live_pods_forbidden_is_not_evaluated(live: tuple[Path, Any]) -> None:
    kubeconfig, handler = live
    handler.forbidden.add(STOREFRONT_PODS)
    report = run_why(ScanRequest(kubeconfig=str(kubeconfig)), parse_target("svc/storefront/catalog"), parse_from(None))
    assert all(c.code != "selector-matches-no-pods" for c in report.causes)
    assert any("forbidden (403): cannot list Pods in storefront" in n for n in report.not_evaluated)
