"""`kpdoctor trace --matrix`: one Service, every node, every kind of client, one table.

For each node and each frontend of the Service that the node serves (ClusterIP:port, the node's own
NodePort, LoadBalancer ingress and external IPs) the packet comes from outside, from a pod on that node
(an address of the node's podCIDR), and from the node itself. Each cell is the trace's summary: where it
goes (endpoints, with chance) or what stops it, "partial" when the trace could not see everything.

A node whose facts could not be read (unreachable, collection failed; `NodeState.error`), or that was reached
but left no dump to walk (every dump command failed) or a dump that cannot be read, is one row whose frontend
and client are "-" and whose summary is "not collected: <reason>": nothing is guessed for it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from kpdoctor.cluster.model import Service
from kpdoctor.cluster.state import ClusterState
from kpdoctor.errors import InputError
from kpdoctor.node.state import NodeState
from kpdoctor.trace.addresses import EXTERNAL_V4, Endpoint, Labels
from kpdoctor.trace.run import TraceRequest, TraceResult, outcomes, prepare, run_trace
from kpdoctor.trace.spec_cache import SpecCache


@dataclass
class Cell:
    node: str
    frontend: str  # "clusterIP 10.96.0.10:80"
    client: str  # external | pod | node
    summary: str
    delivered: float  # probability of delivery over branches without assumptions
    complete: bool
    outcomes: list[dict[str, Any]] = field(default_factory=list)


def frontends(svc: Service, port_name: str | None, node_ip: str | None) -> list[tuple[str, str, int, str]]:
    """(label, address, port, proto) of each way into the Service through one node."""
    out = []
    for p in svc.ports:
        if port_name and port_name not in (p.name, str(p.port)):
            continue
        proto = p.protocol.lower()
        for ip in svc.cluster_ips:
            if ip and ip != "None" and ":" not in ip:
                out.append((f"clusterIP {ip}:{p.port}/{proto}", ip, p.port, proto))
        if p.node_port and node_ip:
            out.append((f"nodePort {node_ip}:{p.node_port}/{proto}", node_ip, p.node_port, proto))
        for ing in svc.load_balancer_ingress:
            if ing.ip and ":" not in ing.ip:
                out.append((f"loadBalancer {ing.ip}:{p.port}/{proto}", ing.ip, p.port, proto))
        for ip in svc.external_ips:
            if ":" not in ip:
                out.append((f"externalIP {ip}:{p.port}/{proto}", ip, p.port, proto))
    return out


def _pod_source(cluster: ClusterState, node: str) -> str | None:
    found = cluster.node_by_name.get(node)
    for cidr in found.pod_cidrs if found is not None else ():
        try:
            net = ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            continue
        if net.version == 4 and net.num_addresses > 16:
            return str(net.network_address + 13)
    return None


def summarize(result: TraceResult, found: list[dict[str, Any]] | None = None) -> tuple[str, float]:
    """One line: each distinct outcome with its chance; outcomes that rest on an assumption (a fact the dumps
    do not give) are listed as "if ...: " without a chance (theirs is conditional on the assumption).
    `found`: the result's outcomes when the caller already has them."""
    shares: dict[str, float] = {}
    possible: list[str] = []
    delivered = 0.0
    for o in outcomes(result) if found is None else found:
        if o["verdict"] == "accept":
            text = f"-> {o['dnat_to'] or 'not translated'}"
        else:
            by = o["decided_by"] or {}
            where = by.get("where", "") or "?"
            if where == "routing":
                where = by.get("text", where)
            text = f"{o['verdict'].upper()} by {where}"
        if o["assumptions"]:
            if text not in possible:
                possible.append(text)
            continue
        if o["verdict"] == "accept":
            delivered += o["p"]
        shares[text] = shares.get(text, 0.0) + o["p"]
    parts = [f"{100 * p:.0f}% {text}" for text, p in shares.items()]
    if possible:
        parts.append("if assumed (see the full trace): " + ", ".join(possible))
    if result.error:
        parts.append(f"stopped: {result.error}")
    return "; ".join(parts) or "no outcome", delivered


def requests(cluster: ClusterState, svc: Service, port_name: str | None,
             node_name: str) -> list[tuple[str, str, TraceRequest]]:
    """(frontend label, client, request) of each cell of one node's rows."""
    node = cluster.node_by_name.get(node_name)
    node_ip = node.internal_ips[0] if node is not None and node.internal_ips else None
    sources = [("external", Endpoint(EXTERNAL_V4, None, None, "external client"))]
    pod_ip = _pod_source(cluster, node_name)
    if pod_ip:
        sources.append(("pod", Endpoint(pod_ip, None, None, f"a pod on {node_name}", node_name)))
    if node_ip:
        sources.append(("node", Endpoint(node_ip, None, None, f"node {node_name}", node_name)))
    return [(label, client, TraceRequest(node_name, src, Endpoint(address, port, proto, f"svc {svc.key}"), proto))
            for label, address, port, proto in frontends(svc, port_name, node_ip) for client, src in sources]


def cell(node_name: str, label: str, client: str, result: TraceResult) -> Cell:
    found = outcomes(result)
    summary, delivered = summarize(result, found)
    return Cell(node_name, label, client, summary, delivered, result.complete and not result.error, found)


NOT_COLLECTED = "not collected: "
REASON_MAX = 300  # characters of a node's error kept in its row (the error comes from outside)


def not_collected(node_name: str, reason: str) -> Cell:
    """The one row of a node whose facts could not be read: no outcome, not complete."""
    text = " ".join(reason.split())
    if len(text) > REASON_MAX:
        text = text[:REASON_MAX] + "..."
    return Cell(node_name, "-", "-", NOT_COLLECTED + (text or "unknown reason"), 0.0, False)


DUMPS = ("iptables-nft-save.txt", "iptables-legacy-save.txt", "iptables-save.txt", "nft-ruleset.json")


def _unusable(state: NodeState, exc: InputError) -> str:
    """Why a reached node cannot be traced: the error, and why its first failed dump was not collected."""
    failed = next((f"{key}: {state.fact(key).error}" for key in DUMPS if state.fact(key).error), "")
    return f"{exc} ({failed})" if failed else str(exc)


def is_not_collected(c: Cell) -> bool:
    return c.frontend == "-" and c.summary.startswith(NOT_COLLECTED)


def matrix(cluster: ClusterState, svc: Service, port_name: str | None, states: dict[str, NodeState]) -> list[Cell]:
    cells: list[Cell] = []
    specs = SpecCache()  # the nodes' dumps hold mostly the same rules: each compiled once
    labels = Labels(cluster)  # built once, copied per node
    for node_name, state in sorted(states.items()):
        if state.error:
            cells.append(not_collected(node_name, state.error))
            continue
        try:
            prepared = prepare(state, cluster, specs=specs, labels=labels)
        except InputError as exc:  # reached, but nothing to walk (every dump failed) or a dump that cannot be read
            cells.append(not_collected(node_name, _unusable(state, exc)))
            continue
        for label, client, req in requests(cluster, svc, port_name, node_name):
            cells.append(cell(node_name, label, client, run_trace(req, state, cluster, prepared)))
    return cells


def render_matrix(cells: list[Cell]) -> str:
    from kpdoctor.trace.render import _safe

    lines = ["| node | frontend | from | outcome |", "|---|---|---|---|"]
    for c in cells:
        partial = "" if c.complete or is_not_collected(c) else " (partial)"
        lines.append(f"| {_safe(c.node)} | {c.frontend} | {c.client} | {_safe(c.summary)}{partial} |")
    return "\n".join(lines) + "\n"
