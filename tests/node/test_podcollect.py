"""kpdoctor.node.podcollect without a cluster: the collector pod's manifest and the leftover cleanup's rule.
Every path against a real kubelet (success, error, timeout, Ctrl-C, RBAC) is in tests/test_klab_kubelet.py;
the listing below is a hand-made stand-in for the API (the last resort, said so) to pin the deadline rule."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from kpdoctor.node import podcollect


def test_pod_name_is_a_dns_label_for_any_node_name() -> None:
    for node in ("n0", "a" * 253, "ip-10-0-0-1.eu-west-1.compute.internal", "x;rm -rf /"):
        name = podcollect.pod_name(node)
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", name), name
    assert podcollect.pod_name("n0") != podcollect.pod_name("n0")  # one per run


def test_manifest_is_least_privilege_and_pinned() -> None:
    pod = podcollect.collector_pod("node-a", "img:1", name="p", lifetime_s=180)
    spec = pod["spec"]
    assert spec["nodeName"] == "node-a" and spec["hostNetwork"] is True
    assert "hostPID" not in spec and spec["automountServiceAccountToken"] is False
    assert spec["tolerations"] == [{"operator": "Exists"}]
    assert spec["activeDeadlineSeconds"] == 180 and spec["restartPolicy"] == "Never"
    (c,) = spec["containers"]
    sc = c["securityContext"]
    assert sc["capabilities"] == {"drop": ["ALL"], "add": ["NET_ADMIN", "NET_RAW"]}
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert "privileged" not in sc
    assert c["command"] == ["sleep", "180"] and c["image"] == "img:1"
    assert pod["metadata"]["labels"] == podcollect.LABELS
    assert pod["metadata"]["annotations"] == {podcollect.NODE_ANNOTATION: "node-a"}


class _Api:
    def __init__(self, pods: list[Any]) -> None:
        self.pods = pods
        self.deleted: list[str] = []
        self.selector = ""

    def list_namespaced_pod(self, namespace: str, label_selector: str = "") -> Any:
        self.selector = label_selector
        return SimpleNamespace(items=self.pods)

    def delete_namespaced_pod(self, name: str, namespace: str, grace_period_seconds: int = 0) -> None:
        self.deleted.append(name)


def _pod(name: str, age_s: int, deadline: int, now: datetime) -> Any:
    return SimpleNamespace(metadata=SimpleNamespace(name=name, creation_timestamp=now - timedelta(seconds=age_s)),
                           spec=SimpleNamespace(active_deadline_seconds=deadline))  # fmt: skip


def test_cleanup_deletes_only_pods_past_their_deadline() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    api = _Api([_pod("old", 500, 180, now), _pod("running", 60, 180, now), _pod("edge", 180, 180, now)])
    assert podcollect.cleanup_expired(api, now=now) == ["old"]
    assert api.deleted == ["old"]
    assert api.selector == podcollect.SELECTOR
