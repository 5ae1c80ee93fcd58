"""Where `kpdoctor trace` gets its cluster state and the node's facts: a bundle (or the demo), a --snapshot
directory or the live API (--kubeconfig/--context) with the node's facts (--matrix: the chosen nodes' facts)
collected through --transport by the scan's own collection code (`kpdoctor.scanner.gather`,
`kpdoctor.node.collect`).

The cluster loaders keep only kube-system Pods unless asked; the namespaces the trace's names mention are
asked for (`kpdoctor.trace.names`), as `kpdoctor why` does with `ScanRequest.pod_namespaces`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from kpdoctor.cluster.state import ClusterState
from kpdoctor.errors import InputError
from kpdoctor.node.state import NodeState
from kpdoctor.trace.names import NamedObjects

LIVE_TRANSPORTS = ("local", "ssh", "kube-exec", "pod")


@dataclass
class TraceSource:
    cluster: ClusterState | None
    node_names: Callable[[], Sequence[str]]
    node_state: Callable[[str], NodeState]
    live: bool  # the node's facts were collected now (snapshot / live API), not read from a bundle


def from_bundle(path: str, named: NamedObjects) -> TraceSource:
    from kpdoctor.node.bundle import read_bundle
    from kpdoctor.trace.inputs import trace_cluster_state

    b = read_bundle(path)
    cluster = trace_cluster_state(b, named.services, named.pod_namespaces)
    return TraceSource(cluster, b.node_names, b.node_state, live=False)


def from_cluster(*, snapshot: str | None, kubeconfig: str | None, context: str | None, transport: str | None,
                 nodes: Sequence[str], collect_options: Any, named: NamedObjects, node_selector: str = "",
                 many: bool = False) -> TraceSource:
    """--snapshot DIR or the live API, and the nodes' facts collected through --transport: the one --node of a
    trace, or (`many`, --matrix) every node that --node NAME|GLOB ... and --node-selector choose (all by
    default), collected as `kpdoctor scan` collects them (`kpdoctor.scanner.gather`: same fan-out, concurrency
    and per-node timeout). For `many`, a node that could not be read keeps its error in its NodeState (the
    matrix shows it as "not collected"); a single trace of such a node is one line, exit 2."""
    from kpdoctor.scanner import ScanRequest, gather, select_nodes

    if not many and len(nodes) != 1:
        raise InputError("--snapshot and the live API trace one node: give --node NAME")
    if transport not in LIVE_TRANSPORTS:
        raise InputError(f"--transport {transport or 'none'!r}: a trace from --snapshot or the live API reads the "
                         f"node's rules through {' | '.join(LIVE_TRANSPORTS)}")
    req = ScanRequest(snapshot=snapshot, kubeconfig=kubeconfig, context=context, transport=transport,
                      node_names=list(nodes), node_selector=node_selector, collect_options=collect_options,
                      pod_namespaces=named.pod_namespaces, progress=many and sys.stderr.isatty())
    cluster, source, _, _ = gather(req)
    states = {name: source.load(name) for name in source.names()}
    if many:
        chosen = select_nodes(cluster, list(nodes), node_selector)
        if not chosen:
            raise InputError("no node of the cluster to trace" + (f" matches --node-selector {node_selector}"
                                                                   if node_selector else ""))
        for name in chosen:  # the fan-out answers for every node (Ctrl-C included); never drop one silently
            if name not in states:
                states[name] = NodeState(name, transport or "", error="no result from the collection")
        return TraceSource(cluster, lambda: chosen, states.__getitem__, live=True)
    node = nodes[0]
    state = states.get(node)
    if state is None:
        raise InputError(f"node {node!r}: its facts were not collected", where=f"--transport {transport}")
    if state.error:
        raise InputError(f"node {node!r} could not be read: {state.error[:300]}", where=f"--transport {transport}")
    return TraceSource(cluster, lambda: [node], states.__getitem__, live=True)
