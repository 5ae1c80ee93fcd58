"""What every condition of `kpdoctor gate mode-switch` reads about the nodes: the one Node record (config,
where it came from, parsed facts) and the mode kube-proxy runs there. A leaf of the gate's mode-switch modules
(the pre-switch conditions, post-switch and the baseline import it; it imports none of them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from kpdoctor.cluster.config import KubeProxyConfig
from kpdoctor.cluster.state import ClusterState
from kpdoctor.node.parsed import ParsedNode
from kpdoctor.node.state import NodeState

GATE_NAME = "mode-switch"
TARGETS = ("nftables", "iptables", "ipvs")
MAX_LISTED = 20


@dataclass(frozen=True)
class Node:
    """What the gate knows about one node that runs kube-proxy."""

    name: str
    config: KubeProxyConfig | None
    origin: str
    facts: ParsedNode | None


def nodes_of(cluster: ClusterState, nodes: Mapping[str, NodeState]) -> list[Node]:
    names = sorted({p.node_name for p in cluster.kube_proxy_pods if p.node_name} or {n.name for n in cluster.nodes})
    out = []
    for name in names:
        found = cluster.proxy_config_for(name)
        state = nodes.get(name)
        facts = ParsedNode(state) if state is not None and state.reachable else None
        out.append(Node(name, found.config if found else None, found.origin if found else "", facts))
    return out


def current_mode(node: Node) -> tuple[str | None, str]:
    """The mode kube-proxy on the node runs (its /proxyMode, else its configuration) and the evidence."""
    if node.facts is not None and node.facts.proxy_mode:
        return node.facts.proxy_mode, f"kube-proxy/proxyMode.txt: {node.facts.proxy_mode}"
    if node.config is not None:
        return node.config.effective_mode, f"{node.origin}: mode={node.config.mode or '(unset: iptables)'}"
    return None, ""
