"""`kpdoctor why` end to end: load the sources the scan would (plus the Service's Pods), run the checks once
for node-wide faults, then build the report (`kpdoctor.why.run.build`: API causes, each node's behaviour for
the Service, the verdict).

A bundle without `cluster/` is read as "no API": node rules only.
"""

from __future__ import annotations

from pathlib import Path

from kpdoctor.cluster.state import ClusterState
from kpdoctor.engine import ListNodes, NodeSource, run_checks
from kpdoctor.findings import Finding
from kpdoctor.registry import Registry, discover
from kpdoctor.scan_options import ScanOptions
from kpdoctor.scanner import DEMO_BUNDLE, ScanRequest, gather
from kpdoctor.why.model import Client, Target, WhyReport
from kpdoctor.why.run import build
from kpdoctor.why.target import pod_namespaces


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
