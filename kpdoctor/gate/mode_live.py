"""The live source of `kpdoctor gate mode-switch`: the cluster read from the API (with the kube-proxy pods' logs,
for their "Using X Proxier" line) and every kube-proxy node's facts collected through the existing collectors
(`kpdoctor.node.collect`: ssh, kube-exec, pod, local) — the same code `scan` and `collect` use.

An API that cannot be used raises UnreachableError (exit 3). A node that cannot be reached keeps its unreachable
NodeState, so every condition reads "cannot prove" for it (kpdoctor.gate.mode_nodes gives it no facts); with
`--transport local` only the named node is this machine, and every other node is not collected at all, which
the conditions read the same way.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from kpdoctor.errors import InputError
from kpdoctor.gate.sources import GateInput
from kpdoctor.node.state import NodeState

LIVE_TRANSPORTS = ("kube-exec", "pod", "ssh", "local")


def check_transport(transport: str | None, node: str | None) -> None:
    """Bad --transport / --node: exit 2 before anything is contacted."""
    if transport not in LIVE_TRANSPORTS:
        raise InputError(f"--transport {transport!r}: the live gate reaches nodes by {', '.join(LIVE_TRANSPORTS)}")
    if transport == "local" and not node:
        raise InputError("--transport local reads this machine: name the node it is with --node NAME")
    if node and transport != "local":
        raise InputError("--node names the node this machine is; it goes with --transport local")


def from_live_nodes(kubeconfig: str | None, context: str | None, options: Any, *, node: str | None = None,
                    loader: Any = None, collector: Any = None) -> GateInput:  # fmt: skip
    """GateInput from the live API and the nodes reached with `options` (a CollectOptions; the command builds
    it with kpdoctor.commands.nodeflags.node_collect_options, as `scan` does).

    `loader(kubeconfig, context)` and `collector(names, cluster, options)` default to the real ones; tests that
    cannot run a cluster pass their own and say so."""
    from kpdoctor.gate.mode_nodes import nodes_of

    transport = options.transport
    check_transport(transport, node)
    cluster = (loader or _load)(kubeconfig, context)  # UnreachableError: exit 3
    names = [n.name for n in nodes_of(cluster, {})]
    if node and node not in names:
        raise InputError(f"--node {node}: not a node that runs kube-proxy (nodes: {', '.join(names) or 'none'})")
    chosen = [node] if node else names
    states = {name: _nothing_is_unreached(state) for name, state in (collector or _collect)(chosen, cluster,
                                                                                            options).items()}
    notes = [f"live: node facts collected by --transport {transport}"]
    unreached = sorted(n for n in chosen if n not in states or not states[n].reachable)
    if unreached:
        notes.append(f"not reached: {', '.join(unreached)} (their conditions cannot be proven)")
    if node and len(names) > 1:
        notes.append(f"--transport local collected only {node}; the other nodes' conditions cannot be proven")
    return GateInput(cluster, states, f"live {cluster.source or context or 'current context'}", tuple(notes))


def _nothing_is_unreached(state: NodeState) -> NodeState:
    """A node the collector answered for but of which no fact could be read (kube-exec through an API that
    refuses the exec: every fact failed) is a node not reached, and reported so."""
    if not state.reachable or any(f.content is not None for f in state.facts.values()):
        return state
    errors = sorted({f.error.strip().splitlines()[0] for f in state.facts.values() if f.error.strip()})
    return replace(state, error="no fact could be collected" + (f" ({errors[0][:200]})" if errors else ""))


def _load(kubeconfig: str | None, context: str | None) -> Any:
    from kpdoctor.cluster.live import load_live

    return load_live(kubeconfig, context, with_logs=True).state


def _collect(names: list[str], cluster: Any, options: Any) -> dict[str, Any]:
    from kpdoctor.node.collect import collect_nodes
    from kpdoctor.node.fanout import Interrupted

    try:
        return dict(collect_nodes(names, cluster=cluster, options=options))
    except Interrupted as exc:  # Ctrl-C: what was collected; the rest is not reached, so cannot be proven
        return dict(exc.partial)
