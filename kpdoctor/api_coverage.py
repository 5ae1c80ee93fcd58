"""Which API facts the reference proxier's expectation for a node needs, and which of them were not collected.

A real cluster always has the `default/kubernetes` Service and its EndpointSlice, and every node has a Node
object. So a snapshot with no Services at all, Services but no EndpointSlice at all, or no Node object for the
node was not collected (a hand-assembled bundle, a file left out): the expectation cannot be built, and a check
that compares against it must say "not evaluated" rather than call every rule stale.
"""

from __future__ import annotations

from kpdoctor.cluster.state import ClusterState


def missing_for_expectation(cluster: ClusterState, node_name: str) -> list[str]:
    """One line per API fact missing for `node_name`'s expectation (empty when all are there)."""
    out: list[str] = []
    if not cluster.services:
        out.append("no Services in the snapshot (services.json not collected: every cluster has default/kubernetes)")
    elif not cluster.endpoint_slices:
        out.append("no EndpointSlices in the snapshot (endpointslices.json not collected: every cluster has "
                   "default/kubernetes's)")
    if node_name not in cluster.node_by_name:
        out.append(f"no Node object {node_name!r} in the snapshot (nodes.json not collected or the node was renamed)")
    return out
