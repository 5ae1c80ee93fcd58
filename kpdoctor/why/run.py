"""`kpdoctor why` end to end: load the sources the scan would (plus the Service's Pods), run the checks once
for node-wide faults, then the API causes, each node's behaviour for the Service, and the verdict.

A bundle without `cluster/` is read as "no API": node rules only.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from kpdoctor.cluster.state import ClusterState
from kpdoctor.engine import ListNodes, NodeSource, run_checks
from kpdoctor.findings import Finding
from kpdoctor.registry import Registry, discover
from kpdoctor.scan_options import ScanOptions
from kpdoctor.scanner import DEMO_BUNDLE, ScanRequest, gather
from kpdoctor.why.api import api_causes, find_service, service_ports
from kpdoctor.why.model import Client, NodeBehaviour, Target, WhyReport
from kpdoctor.why.nodes import behaviour_of, group
from kpdoctor.why.target import pod_namespaces, resolve_client
from kpdoctor.why.verdict import decide

_SERVICE_CHECK_SUBJECT = "Service "


def _bundle_without_cluster(req: ScanRequest) -> Path | None:
    """The bundle path when --bundle names a bundle that has no cluster/ (then there is no API)."""
    if not req.bundle or req.demo:
        return None
    root = Path(req.bundle)
    if root.is_dir():
        base = root / "bundle" if not (root / "nodes").is_dir() and (root / "bundle").is_dir() else root
        return root if (base / "nodes").is_dir() and not (base / "cluster").is_dir() else None
    from kpdoctor.node.bundle import read_bundle

    return None if read_bundle(root).has_cluster() else root


def load(req: ScanRequest) -> tuple[ClusterState, NodeSource, str, bool]:
    """(cluster, nodes, source label, has_api)."""
    nodes_only = _bundle_without_cluster(req)
    if nodes_only is not None:
        from kpdoctor.node.bundle import read_bundle

        states = read_bundle(nodes_only).node_states().values()
        return ClusterState(source=f"{nodes_only} (no cluster/)"), ListNodes(states), f"bundle {nodes_only}", False
    cluster, source, info, _ = gather(req)
    label = "kpdoctor demo bundle" if req.demo else f"{info.kind} {info.location}"
    return cluster, source, label, True


def build(cluster: ClusterState, nodes: NodeSource, target: Target, client: Client, *, has_api: bool,
          source: str, findings: list[Finding]) -> WhyReport:
    """The report from loaded state (pure but for reading the node source): used by `why` and `scan --service`."""
    client = resolve_client(client, cluster)
    service = find_service(cluster, target) if has_api else None
    report = WhyReport(target, client, source, service_found=(service is not None) if has_api else None)
    if has_api:
        report.causes, report.not_evaluated = api_causes(cluster, target, client)
    else:
        report.not_evaluated.append("API-level causes: no API objects (the bundle has no cluster/); node rules only")
    numbers = _port_numbers(service, target)
    names = list(nodes.names())
    if client.node is not None and client.kind != "external":
        if client.node in names:
            names = [client.node]
        else:
            report.not_evaluated.append(f"the client's node {client.node}: not collected")
            names = []
    if service is None and has_api:
        names = []  # nothing to compare a node with
    for name in names:
        node = nodes.load(name)
        nb = behaviour_of(node, cluster, target, has_api=has_api, findings=findings, service_ports=numbers)
        report.nodes.append(_with_commands(nb, findings, target))
    if not names and has_api and service is not None and not report.nodes:
        report.not_evaluated.append("node rules: no node access (use --bundle, or --transport ssh|kube-exec|local)")
    elif report.nodes and client.node is None:
        report.unchecked_nodes = unchecked_nodes(cluster, [nb.node for nb in report.nodes])
        if report.unchecked_nodes:
            report.not_evaluated.append(f"node rules of {len(report.unchecked_nodes)} more node(s) of the cluster "
                                        f"(not collected, or outside --nodes): {', '.join(report.unchecked_nodes[:5])}"
                                        + (" ..." if len(report.unchecked_nodes) > 5 else ""))
    report.groups = group(report.nodes)
    if service is not None and service.session_affinity == "ClientIP":
        stale = [nb for nb in report.nodes if nb.status == "stale"]
        if stale:
            from kpdoctor.why.model import Cause

            gone = sorted({e for nb in stale for fb in nb.frontends for e in fb.stale})
            report.causes.append(Cause(
                "affinity-pins-gone-endpoint", "partial",
                f"{target.key} pins each client to one endpoint (sessionAffinity: ClientIP, "
                f"{service.session_affinity_timeout}s): clients of {', '.join(nb.node for nb in stale)} pinned to "
                f"{', '.join(gone[:3])} keep going there until the node resyncs", evidence=()))
    decide(report)
    return report


def unchecked_nodes(cluster: ClusterState, checked: list[str]) -> list[str]:
    """The cluster's Node objects whose rules were not read (so "every node" would claim too much)."""
    return sorted({n.name for n in cluster.nodes} - set(checked))


def _port_numbers(service: Any, target: Target) -> list[int]:
    if service is None or target.port is None:
        return [int(target.port)] if target.port and target.port.isdigit() else []
    ports = service_ports(service, target)
    return sorted({p.port for p in ports} | {p.node_port for p in ports if p.node_port})


def _with_commands(nb: NodeBehaviour, findings: list[Finding], target: Target) -> NodeBehaviour:
    """The scan's remediation commands for this node: its node-wide faults and this Service's findings there."""
    cmds: list[str] = []
    conditions = set(nb.conditions)
    for f in findings:
        if f.scope != nb.node or f.remediation is None or f.silenced_reason:
            continue
        mine = f.subject.startswith(f"{_SERVICE_CHECK_SUBJECT}{target.key}:")
        no_rules = f.check_id == "KP-STALE-ENDPOINTS" and nb.status == "no-rules"
        if mine or no_rules or f"{f.check_id}: {f.message}" in conditions:
            cmds += [c for c in f.remediation.commands if c not in cmds]
    return replace(nb, commands=tuple(cmds)) if cmds else nb


def run_why(req: ScanRequest, target: Target, client: Client, *, registry: Registry | None = None) -> WhyReport:
    req.pod_namespaces = pod_namespaces(target, client)
    if req.demo and not DEMO_BUNDLE.is_dir():
        from kpdoctor.errors import InputError

        raise InputError("the demo bundle is missing from this installation", where=str(DEMO_BUNDLE))
    cluster, nodes, source, has_api = load(req)
    findings: list[Finding] = []
    if has_api and list(nodes.names()):
        reg = registry or discover()
        result = run_checks(reg.select(None, None), cluster, node_source=nodes,
                            options=ScanOptions(probe=False, source="why", transport=req.transport or ""))
        findings = result.findings
    return build(cluster, nodes, target, client, has_api=has_api, source=source, findings=findings)
