"""What the gate's conditions read: the cluster, the nodes' facts, and the Cilium documents parsed once.

Parsing happens here, not in the conditions, so that a malformed or
unrecognised agent status is turned into an *explained unknown* exactly once
and every condition that needs it says the same thing about it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType

from kpdoctor.cilium import (
    SERVICE_LIST_FACT,
    STATUS_FACT,
    AgentStatus,
    CiliumConfig,
    CiliumShapeError,
    ServiceTable,
    agent_ready,
    parse_cilium_config,
    parse_service_list,
    proves_replacement,
    read_agent_status,
)
from kpdoctor.cluster.model import Pod
from kpdoctor.cluster.state import ClusterState
from kpdoctor.gate.model import Phase
from kpdoctor.node.parsed import ParsedNode
from kpdoctor.node.state import NodeState
from kpdoctor.service_proxy import EMBEDDED, HOST_PROCESS, ServiceProxy, decide


@dataclass(frozen=True)
class GateContext:
    cluster: ClusterState
    nodes: Mapping[str, NodeState] = field(default_factory=lambda: MappingProxyType({}))
    phase: Phase = "pre-removal"

    # ---- Cilium configuration ---------------------------------------------------------------
    @cached_property
    def cilium_config(self) -> CiliumConfig | None:
        cm = self.cluster.cilium_config
        return parse_cilium_config(cm) if cm is not None else None

    # ---- nodes ---------------------------------------------------------------------------------
    @cached_property
    def kube_proxy_nodes(self) -> tuple[str, ...]:
        """Nodes that run kube-proxy today: where a kube-proxy pod is scheduled."""
        return tuple(sorted({p.node_name for p in self.cluster.kube_proxy_pods if p.node_name}))

    @cached_property
    def all_nodes(self) -> tuple[str, ...]:
        names = {n.name for n in self.cluster.nodes} | set(self.kube_proxy_nodes)
        return tuple(sorted(names))

    @cached_property
    def agent_nodes(self) -> tuple[str, ...]:
        """Nodes the replacement must be proven on.

        Before removal: every node that runs kube-proxy today (all nodes when
        none does, e.g. after the DaemonSet was deleted). After removal: every node.
        """
        if self.phase == "pre-removal" and self.kube_proxy_nodes:
            return self.kube_proxy_nodes
        return self.all_nodes

    def service_proxy(self, node: str) -> ServiceProxy:
        """Who implements Services on the node (the one definition, `kpdoctor.service_proxy.decide`)."""
        cache = self._service_proxies
        if node not in cache:
            state = self.nodes.get(node)
            cache[node] = decide(self.cluster, node, ParsedNode(state) if state is not None and state.reachable
                                 else None)
        return cache[node]

    @cached_property
    def _service_proxies(self) -> dict[str, ServiceProxy]:
        return {}

    def kube_proxy_serving(self, node: str) -> bool:
        """kube-proxy runs on the node now: its pod Running and Ready, or - without a pod (embedded in k3s, a host
        process) - the node's kube-proxy answered on :10256 (collected `kube-proxy/healthz.json`)."""
        pod = self.cluster.kube_proxy_pod_on(node)
        if pod is not None:
            return pod.phase == "Running" and pod.ready
        state = self.nodes.get(node)
        answered = state is not None and state.fact("kube-proxy/healthz.json").present
        return answered and self.service_proxy(node).kind in (EMBEDDED, HOST_PROCESS)

    def kube_proxy_outside_api(self, node: str) -> str:
        """The shape line when kube-proxy runs on the node without a pod (embedded in k3s, a host process)."""
        sp = self.service_proxy(node)
        return sp.line() if sp.kind in (EMBEDDED, HOST_PROCESS) else ""

    # ---- Cilium agents ------------------------------------------------------------------------
    @cached_property
    def agent_pods(self) -> Mapping[str, tuple[Pod, ...]]:
        by_node: dict[str, list[Pod]] = {}
        for pod in self.cluster.cilium_pods:
            if pod.node_name:
                by_node.setdefault(pod.node_name, []).append(pod)
        return MappingProxyType({k: tuple(sorted(v, key=lambda p: p.name)) for k, v in by_node.items()})

    def agent_ready(self, node: str) -> bool:
        return agent_ready(self.agent_pods.get(node, ()))

    @cached_property
    def _statuses(self) -> tuple[dict[str, AgentStatus], dict[str, str]]:
        parsed: dict[str, AgentStatus] = {}
        errors: dict[str, str] = {}
        for name, state in self.nodes.items():
            status, error = read_agent_status(name, state)
            if status is not None:
                parsed[name] = status
            else:
                errors[name] = error
        return parsed, errors

    def agent_status(self, node: str) -> AgentStatus | None:
        return self._statuses[0].get(node)

    def agent_status_error(self, node: str) -> str:
        """Why there is no usable status for the node ("" when there is one)."""
        status, errors = self._statuses[0].get(node), self._statuses[1]
        if status is not None:
            return ""
        if node in errors:
            return errors[node]
        return f"no node facts for {node} ({STATUS_FACT} not collected: use a bundle or a live context)"

    def proven_kpr(self, node: str) -> bool:
        """The agent on the node proves it replaces kube-proxy (`kpdoctor.cilium.proves_replacement`)."""
        return proves_replacement(self.agent_status(node), self.agent_ready(node))

    @cached_property
    def _tables(self) -> tuple[dict[str, ServiceTable], dict[str, str]]:
        parsed: dict[str, ServiceTable] = {}
        errors: dict[str, str] = {}
        for name, state in self.nodes.items():
            fact = state.facts.get(SERVICE_LIST_FACT)
            if fact is None or fact.content is None:
                continue
            try:
                parsed[name] = parse_service_list(fact.content, node=name, source=fact.source or SERVICE_LIST_FACT)
            except CiliumShapeError as exc:
                errors[name] = f"{SERVICE_LIST_FACT} not recognised: {exc}"
        return parsed, errors

    def service_table(self, node: str) -> ServiceTable | None:
        return self._tables[0].get(node)

    def service_table_error(self, node: str) -> str:
        return self._tables[1].get(node, "")
