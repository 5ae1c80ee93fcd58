"""Build gate inputs from the real kube-proxy bundles plus the hand-built Cilium shapes.

Cilium cannot run on this machine: the agent files come from `tests/fixtures/cilium/` (written from Cilium's
API models, see its README); the kube-proxy side (cluster objects, iptables/nft dumps) is the real capture
of `tests/fixtures/bundles/`.
"""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from kpdoctor.cluster.model import ConfigMap, Pod
from kpdoctor.cluster.state import ClusterState
from kpdoctor.node.state import Fact, NodeState

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
CILIUM = FIXTURES / "cilium"
BUNDLES = FIXTURES / "bundles"
NODES = ("edge-1", "edge-2")
IMAGE_TAG = {"1.14": "v1.14.19", "1.18": "v1.18.2"}
STATUS = "cilium/status.json"  # a node's `cilium status -o json` fact
TABLE = "cilium/service-list.json"  # a node's `cilium service list -o json` fact


def build_bundle(
    tmp: Path,
    *,
    scenario: str = "B1-healthy",
    version: str = "1.18",
    config: Mapping[str, str | None] | None = None,
    with_config: bool = True,
    with_agents: bool = True,
    with_status: bool = True,
    with_service_list: bool = True,
) -> Path:
    """A bundle directory: a real kube-proxy capture + Cilium objects and per-node agent files."""
    root = tmp / f"{scenario}-cilium-{version}"
    shutil.copytree(BUNDLES / scenario / "bundle", root)
    if with_config:
        doc = json.loads((CILIUM / "cilium-config.json").read_text())
        data = doc["items"][0]["data"]
        for key, value in (config or {}).items():
            if value is None:
                data.pop(key, None)
            else:
                data[key] = value
        (root / "cluster" / "cilium-config.json").write_text(json.dumps(doc, indent=2))
    if with_agents:
        for name in ("cilium-daemonset.json", "cilium-pods.json"):
            text = (CILIUM / name).read_text().replace("v1.18.2", IMAGE_TAG.get(version, "v1.18.2"))
            (root / "cluster" / name).write_text(text)
    for node in NODES:
        target = root / "nodes" / node / "cilium"
        target.mkdir(parents=True, exist_ok=True)
        if with_status:
            shutil.copy(CILIUM / f"v{version}" / f"status-{node}.json", target / "status.json")
        if with_service_list and scenario == "B1-healthy":
            shutil.copy(CILIUM / f"v{version}" / f"service-list-{node}.json", target / "service-list.json")
    return root


def load(path: Path) -> tuple[ClusterState, dict[str, NodeState]]:
    from kpdoctor.node.bundle import read_bundle

    bundle = read_bundle(path)
    return bundle.cluster_state(), bundle.node_states()


# ---- in-memory mutations (used by the exhaustive zero-false-pass test) ---------------------------

def set_fact(nodes: dict[str, NodeState], node: str, key: str, content: str | None) -> dict[str, NodeState]:
    state = nodes[node]
    facts = dict(state.facts)
    if content is None:
        facts.pop(key, None)
    else:
        facts[key] = Fact(key, content, key)
    out = dict(nodes)
    out[node] = replace(state, facts=MappingProxyType(facts))
    return out


def edit_json_fact(nodes: dict[str, NodeState], node: str, key: str,
                   edit: Callable[[Any], Any]) -> dict[str, NodeState]:
    doc = json.loads(nodes[node].facts[key].content or "null")
    new = edit(copy.deepcopy(doc))
    return set_fact(nodes, node, key, json.dumps(new if new is not None else doc))


def edit_cilium_config(cluster: ClusterState, **changes: str | None) -> ClusterState:
    cms = []
    for cm in cluster.configmaps:
        if cm.namespace == "kube-system" and cm.name == "cilium-config":
            data = dict(cm.data)
            for key, value in changes.items():
                key = key.replace("_", "-")
                if value is None:
                    data.pop(key, None)
                else:
                    data[key] = value
            cm = ConfigMap(cm.namespace, cm.name, MappingProxyType(data), cm.source)
        cms.append(cm)
    return replace(cluster, configmaps=tuple(cms))


def drop_configmap(cluster: ClusterState, name: str) -> ClusterState:
    return replace(cluster, configmaps=tuple(c for c in cluster.configmaps if c.name != name))


def edit_pods(cluster: ClusterState, edit: Callable[[Pod], Pod | None]) -> ClusterState:
    pods = []
    for pod in cluster.pods:
        new = edit(pod)
        if new is not None:
            pods.append(new)
    return replace(cluster, pods=tuple(pods))


def without_kube_proxy(cluster: ClusterState) -> ClusterState:
    """The DaemonSets, their pods and ConfigMaps deleted (what `kubectl delete ds/cm kube-proxy` leaves)."""
    return replace(
        cluster,
        daemonsets=tuple(d for d in cluster.daemonsets if d not in cluster.kube_proxy_daemonsets),
        pods=tuple(p for p in cluster.pods if p not in cluster.kube_proxy_pods),
        configmaps=tuple(c for c in cluster.configmaps if not c.name.startswith("kube-proxy")),
    )
