"""Where the gate's evidence comes from: a bundle, a snapshot, or the live cluster.

The verdict never depends on the source, only on what it holds: a snapshot
has no agent status, so a gate on a snapshot can fail but never pass — the
missing evidence is reported as "cannot prove" (exit 3).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kpdoctor.cluster.state import ClusterState
from kpdoctor.errors import InputError, UnreachableError
from kpdoctor.node.state import NodeState


@dataclass(frozen=True)
class GateInput:
    cluster: ClusterState
    nodes: dict[str, NodeState] = field(default_factory=dict)
    source: str = ""
    notes: tuple[str, ...] = ()


def from_bundle(path: str) -> GateInput:
    from kpdoctor.node.bundle import read_bundle

    bundle = read_bundle(path)
    if not bundle.has_cluster():
        raise InputError("bundle has no cluster/ snapshot: the gate needs the cluster objects", where=path)
    cluster = bundle.cluster_state()
    nodes = bundle.node_states()
    notes = (f"bundle read with an error: {bundle.error}",) if bundle.error else ()
    return GateInput(cluster, nodes, f"bundle {path}", notes)


def from_snapshot(path: str) -> GateInput:
    from kpdoctor.cluster.snapshot import load_snapshot

    cluster = load_snapshot(path)
    return GateInput(cluster, {}, f"snapshot {path}", (
        "a snapshot holds no agent status: agent conditions cannot be proven (use a bundle or a live context)",))


def from_live(kubeconfig: str | None, context: str | None, *, timeout: float = 30.0) -> GateInput:
    from kpdoctor.cluster import live
    from kpdoctor.gate.live import agent_node_states

    client_obj = live.api_client(kubeconfig, context)  # UnreachableError (exit 3) when there is no cluster
    cluster = live.load_live(kubeconfig, context, client_obj=client_obj, with_logs=False).state
    nodes = agent_node_states(cluster, client_obj, timeout=timeout)
    if cluster.cilium_pods and nodes and all(not s.reachable for s in nodes.values()):
        raise UnreachableError("could not exec into any Cilium agent pod to read its status")
    return GateInput(cluster, nodes, f"live {context or 'current context'}", (
        "live: agent status and service table read by exec into each Cilium agent pod; node rules are not "
        "inspected live (use a `kpdoctor collect` bundle for the post-removal leftover check)",))


def load(bundle: str | None, snapshot: str | None, kubeconfig: str | None, context: str | None,
         **live_options: Any) -> GateInput:
    if bundle and snapshot:
        raise InputError("choose one of --bundle, --snapshot (or neither for the live API)")
    if bundle:
        return from_bundle(bundle)
    if snapshot:
        return from_snapshot(snapshot)
    return from_live(kubeconfig, context, **live_options)
