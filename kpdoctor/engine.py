"""The scan engine: run the selected checks over collected state and gather findings.

Cluster-scope checks run once; node-scope checks run once per reachable node.
Everything that goes wrong is turned into a finding rather than an exception,
because a doctor that stops at the first broken plugin or unreachable node
tells the user nothing about the other 39 nodes:

- a check that raises -> an ERROR finding "check X failed: ..." for that check;
- a node that could not be reached -> one finding saying what could not be seen;
- a cluster kind that could not be read (RBAC 403, `cluster.gaps`) -> the checks
  that need it report "not evaluated: forbidden" instead of concluding from an
  empty list (no DaemonSets visible is not "kube-proxy is absent").

Silences from `.kpdoctor.yaml` are applied last, so silenced findings stay in
the report with their reason.
"""

from __future__ import annotations

import gc
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from types import MappingProxyType
from typing import Any, Protocol

from kpdoctor import withhold
from kpdoctor.checks_api import Check, CheckContext
from kpdoctor.cluster.state import ClusterState
from kpdoctor.findings import Finding, Remediation, Severity
from kpdoctor.node.state import NodeState
from kpdoctor.node_only import NODE_ONLY_REASON, is_node_only
from kpdoctor.registry import LoadError
from kpdoctor.scan_options import ScanOptions
from kpdoctor.silences import SilenceSet
from kpdoctor.unseen import saw_any, unseen_finding

SCAN_CHECK_ID = "kpdoctor.scan"  # findings about the scan itself (unreachable nodes, broken plugins)
SCAN_CHECK_TITLE = "Scan coverage"

# ClusterState field -> the kind name a ResourceGap uses for it
_FIELD_KINDS = {
    "services": "service",
    "endpoint_slices": "endpointslice",
    "nodes": "node",
    "configmaps": "configmap",
    "daemonsets": "daemonset",
    "pods": "pod",
    "logs": "log",
}


def normalize_kind(kind: str) -> str:
    """'Service', 'services', 'discovery.k8s.io/endpointslices', 'pods/log' -> 'service', 'endpointslice', 'log'."""
    k = kind.strip().lower()
    if k.endswith("/log") or k in ("log", "logs"):
        return "log"
    k = k.rsplit("/", 1)[-1].split(".", 1)[0]
    if k.endswith("ies"):
        k = k[:-3] + "y"
    elif k.endswith("s") and not k.endswith("ss"):
        k = k[:-1]
    return k


class ForbiddenKind(Exception):
    """Raised when a check reads a cluster kind the loader was not allowed to list."""

    def __init__(self, kind: str, reason: str) -> None:
        self.kind = kind
        self.reason = reason
        super().__init__(f"{kind}: {reason}")


def guard_cluster(cluster: ClusterState) -> ClusterState:
    """A copy of `cluster` whose forbidden kinds raise ForbiddenKind when read (no copy without gaps)."""
    if not cluster.gaps:
        return cluster
    forbidden = {normalize_kind(g.kind): g for g in cluster.gaps}
    blocked = {f: forbidden[k] for f, k in _FIELD_KINDS.items() if k in forbidden}
    if not blocked:
        return cluster
    values = {f.name: getattr(cluster, f.name) for f in fields(cluster)}
    return _GuardedClusterState(**values, blocked=MappingProxyType(blocked))


class _GuardedClusterState(ClusterState):
    blocked: Mapping[str, Any]

    def __init__(self, *, blocked: Mapping[str, Any], **values: Any) -> None:
        super().__init__(**values)
        object.__setattr__(self, "blocked", blocked)

    def __getattribute__(self, name: str) -> Any:
        if name in _FIELD_KINDS:
            blocked = object.__getattribute__(self, "blocked")
            gap = blocked.get(name)
            if gap is not None:
                raise ForbiddenKind(gap.kind, gap.reason)
        return object.__getattribute__(self, name)


@dataclass
class CheckRun:
    """What happened to one check: its status drives the report's per-check summary and JUnit."""

    check: Check
    status: str = "passed"  # passed | findings | error | not_evaluated
    duration: float = 0.0
    evaluated: list[str] = field(default_factory=list)  # "cluster" or node names it ran on
    errors: list[str] = field(default_factory=list)


@dataclass
class ScanResult:
    cluster: ClusterState
    nodes: list[NodeState]
    findings: list[Finding]
    runs: list[CheckRun]
    silences: SilenceSet
    options: ScanOptions
    duration: float = 0.0
    load_errors: list[LoadError] = field(default_factory=list)
    # node -> who implements Services there, with the evidence (kpdoctor.service_proxy), as the checks decided it
    service_proxies: dict[str, str] = field(default_factory=dict)


def _required_gap(check: Check, cluster: ClusterState) -> Any:
    if not cluster.gaps or not check.requires:
        return None
    forbidden = {normalize_kind(g.kind): g for g in cluster.gaps}
    return next((forbidden[normalize_kind(k)] for k in check.requires if normalize_kind(k) in forbidden), None)


def _is_forbidden(reason: str) -> bool:
    return "403" in reason or "forbidden" in reason.lower()


def _engine_finding(check: Check, scope: str, severity: Severity, message: str, evidence: str,
                    remediation: Remediation) -> Finding:
    """A finding the engine writes about a check it could not run as such (not evaluated, or failed)."""
    return Finding(
        check_id=check.id,
        severity=severity,
        scope=scope,
        subject="Cluster" if scope == "cluster" else f"Node {scope}",
        message=message,
        evidence=(evidence,),
        remediation=remediation,
        docs=check.docs_url(),
        not_evaluated=True,
    )


def _not_evaluated(check: Check, scope: str, kind: str, reason: str) -> Finding:
    if reason == NODE_ONLY_REASON:
        return _not_evaluated_node_only(check, scope)
    # Absent evidence is at most INFO (issue 10): a kind that could not be read is a gap, not a verdict.
    return _engine_finding(
        check, scope, Severity.INFO,
        f"not evaluated: {'forbidden: ' if _is_forbidden(reason) else ''}cannot read {kind} ({reason})",
        f"cluster source could not list {kind}: {reason}",
        Remediation(
            f"Grant the identity kpdoctor runs as 'list' on {kind} (read-only), or run the scan with a kubeconfig "
            "that has it, then scan again.",
            (f"kubectl auth can-i list {kind} --all-namespaces",),
        ),
    )


def _not_evaluated_node_only(check: Check, scope: str) -> Finding:
    needs = ", ".join(check.requires) if check.requires else "the cluster's objects"
    return _engine_finding(
        check, scope, Severity.INFO,
        f"not evaluated: needs {needs} from the cluster, and this scan has node facts only",
        f"input has no cluster objects: {NODE_ONLY_REASON}",
        Remediation(
            "Collect with cluster access (a kubeconfig that can read Services, EndpointSlices, Nodes, Pods, "
            "DaemonSets and ConfigMaps) to evaluate this check too.",
            ("kpdoctor collect --kubeconfig ~/.kube/config -f bundle.tar.gz",),
        ),
    )


def _failure(check: Check, scope: str, exc: BaseException) -> Finding:
    frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    where = f" at {frame.filename.rsplit('/', 1)[-1]}:{frame.lineno}" if frame else ""
    return _engine_finding(
        check, scope, Severity.ERROR,
        f"check {check.id} failed: {type(exc).__name__}: {exc}",
        f"{type(exc).__name__}: {exc}{where}",
        Remediation(
            "This is a bug in the check, not a finding about the cluster; the other checks ran. Report it with "
            "the bundle (`kpdoctor collect`) or skip the check with --skip " + check.id + "."
        ),
    )


def _normalize(check: Check, item: Any, scope: str) -> Finding:
    if not isinstance(item, Finding):
        raise TypeError(f"run() yielded {type(item).__name__}, not a Finding")
    changes: dict[str, Any] = {}
    if item.check_id != check.id:
        changes["check_id"] = check.id
    if not isinstance(item.severity, Severity):
        changes["severity"] = Severity.parse(str(item.severity))
    if not item.docs:
        changes["docs"] = check.docs_url()
    if not item.scope:
        changes["scope"] = scope
    return replace(item, **changes) if changes else item


def _run_one(check: Check, ctx: CheckContext, scope: str, run: CheckRun) -> list[Finding]:
    if is_node_only(ctx.cluster):
        if not (check.scope == "node" and check.node_facts_suffice):
            return [_not_evaluated_node_only(check, scope)]
        gap = None  # its reads of the missing kinds still end in "not evaluated" (ForbiddenKind)
    else:
        gap = _required_gap(check, ctx.cluster)
    if gap is not None:
        return [_not_evaluated(check, scope, gap.kind, gap.reason)]
    out: list[Finding] = []
    try:
        for item in check.run(ctx) or ():
            out.append(_normalize(check, item, scope))
    except ForbiddenKind as exc:
        return [_not_evaluated(check, scope, exc.kind, exc.reason)]
    except Exception as exc:  # a check bug must not stop the scan
        run.errors.append(f"{scope}: {type(exc).__name__}: {exc}")
        out.append(_failure(check, scope, exc))
    return withhold.guard(out, ctx)  # no command removing what serves Services (issue 18)


def unreachable_finding(node: NodeState, node_checks: Sequence[Check]) -> Finding:
    names = ", ".join(c.id for c in node_checks) or "none selected"
    return Finding(
        check_id=SCAN_CHECK_ID,
        severity=Severity.ERROR,
        scope=node.name,
        subject=f"Node {node.name}",
        message=f"node {node.name} could not be reached over {node.transport}: its dataplane, kube-proxy "
        f"endpoints and sysctls were not seen; node checks not evaluated there: {names}",
        evidence=(f"{node.transport}{' ' + node.address if node.address else ''}: {node.error}",),
        remediation=Remediation(
            "Check the node is up and reachable with this transport (address, credentials, timeouts), or collect "
            "a bundle on it and scan that.",
            (f"kpdoctor node {node.name} --transport {node.transport}",) if node.transport != "bundle" else (),
        ),
        not_evaluated=True,
    )


def load_error_finding(error: LoadError) -> Finding:
    return Finding(
        check_id=SCAN_CHECK_ID,
        severity=Severity.ERROR,
        scope="cluster",
        subject=f"Check plugin {error.name}",
        message=f"check plugin {error.name} could not be used: {error.message}",
        evidence=(error.origin,),
        remediation=Remediation("Fix or uninstall the plugin package; the built-in checks ran without it."),
        not_evaluated=True,
    )


class NodeSource(Protocol):
    """Where node states come from. Bundles load one node at a time so a scan of 100 nodes' dumps of
    hundreds of thousands of lines holds one node in memory, not all of them."""

    def names(self) -> Sequence[str]: ...

    def load(self, name: str) -> NodeState: ...


class ListNodes:
    """Node states already in memory (live collection, tests)."""

    def __init__(self, nodes: Iterable[NodeState]) -> None:
        self._nodes = {n.name: n for n in nodes}

    def names(self) -> Sequence[str]:
        return list(self._nodes)

    def load(self, name: str) -> NodeState:
        return self._nodes[name]


class _LazyNodes(Mapping[str, NodeState]):
    """`ctx.nodes` over a NodeSource: a node is loaded when a check looks at it (not kept)."""

    def __init__(self, source: NodeSource, names: Sequence[str]) -> None:
        self._source = source
        self._names = list(names)
        self._set = set(names)

    def __getitem__(self, name: str) -> NodeState:
        if name not in self._set:
            raise KeyError(name)
        return self._source.load(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


def _light(node: NodeState) -> NodeState:
    """What the report needs of a node (name, transport, address, error), without its facts."""
    return NodeState(name=node.name, transport=node.transport, address=node.address, error=node.error,
                     collected_at=node.collected_at)


def _node_loop(names: list[str], source: NodeSource, seen: list[NodeState], reachable: list[str],
               findings: list[Finding], node_checks: list[Check], guarded: ClusterState,
               all_nodes: Mapping[str, NodeState], opts: ScanOptions, cache: dict[tuple[str, str], Any],
               produced: dict[str, list[Finding]], runs: dict[str, CheckRun],
               on_progress: Callable[[str], None] | None, shapes: dict[str, str]) -> None:
    for name in names:
        node = source.load(name)
        seen.append(_light(node))
        if not node.reachable:
            findings.append(unreachable_finding(node, node_checks))
            continue
        reachable.append(name)
        if on_progress is not None:
            on_progress(f"node {name}")
        for check in node_checks:
            t0 = time.perf_counter()
            ctx = CheckContext(cluster=guarded, node=node, nodes=all_nodes, options=opts, _cache=cache)
            got = _run_one(check, ctx, name, runs[check.id])
            produced[check.id] += got or ([] if saw_any(check, node) else [unseen_finding(check, node)])
            runs[check.id].evaluated.append(name)
            runs[check.id].duration += time.perf_counter() - t0
        decided = cache.get((name, "service-proxies"))
        if isinstance(decided, dict) and name in decided:
            shapes[name] = decided[name].line()
        for key in [k for k in cache if k[0] == name]:
            del cache[key]
        del node
        gc.collect(1)


def run_checks(
    checks: Sequence[Check],
    cluster: ClusterState,
    nodes: Iterable[NodeState] = (),
    *,
    node_source: NodeSource | None = None,
    options: ScanOptions | None = None,
    silences: SilenceSet | None = None,
    load_errors: Sequence[LoadError] = (),
    on_progress: Callable[[str], None] | None = None,
) -> ScanResult:
    """Node checks run node by node (each node loaded once, its derived views dropped after it); then the
    cluster checks, which see every reachable node through `ctx.nodes`."""
    started = time.perf_counter()
    source = node_source if node_source is not None else ListNodes(nodes)
    guarded = guard_cluster(cluster)
    opts = options if options is not None else ScanOptions()
    cache: dict[tuple[str, str], Any] = {}  # shared: a cluster-wide derived view is computed once per scan
    findings: list[Finding] = [load_error_finding(e) for e in load_errors]
    runs = {c.id: CheckRun(c) for c in checks}
    produced: dict[str, list[Finding]] = {c.id: [] for c in checks}
    node_checks = [c for c in checks if c.scope == "node"]
    cluster_checks = [c for c in checks if c.scope == "cluster"]
    names = list(source.names())
    all_nodes: Mapping[str, NodeState] = _LazyNodes(source, names)
    seen: list[NodeState] = []
    reachable: list[str] = []
    shapes: dict[str, str] = {}
    # The cyclic collector's automatic full passes re-scan the scan-long views (a reference dump's parse:
    # millions of objects) again and again. Off during the node loop; after each node a young-generation
    # pass frees that node's own cycles (everything it allocated is young then), so memory stays as flat
    # as before, and what survives it (scan-long views) is not scanned again.
    enabled = gc.isenabled()
    gc.disable()
    try:
        _node_loop(names, source, seen, reachable, findings, node_checks, guarded, all_nodes, opts, cache,
                   produced, runs, on_progress, shapes)
    finally:
        if enabled:
            gc.enable()
    cluster_nodes: Mapping[str, NodeState] = _LazyNodes(source, reachable)
    for check in cluster_checks:
        t0 = time.perf_counter()
        ctx = CheckContext(cluster=guarded, node=None, nodes=cluster_nodes, options=opts, _cache=cache)
        produced[check.id] += _run_one(check, ctx, "cluster", runs[check.id])
        runs[check.id].evaluated.append("cluster")
        runs[check.id].duration += time.perf_counter() - t0
    for check in checks:
        run, out = runs[check.id], produced[check.id]
        settle_status(run, out, any_reachable=bool(reachable))
        findings += out
    if silences is not None:
        findings = silences.apply(findings)
    return ScanResult(
        cluster=cluster,
        nodes=seen,
        findings=findings,
        runs=list(runs.values()),
        silences=silences or SilenceSet(),
        options=opts,
        duration=time.perf_counter() - started,
        load_errors=list(load_errors),
        service_proxies=shapes,
    )


def settle_status(run: CheckRun, out: Sequence[Finding], *, any_reachable: bool) -> None:
    """A check's status from what it produced (also kpdoctor.noderesult's merge of per-node results)."""
    if run.errors:
        run.status = "error"
    elif out and all(f.not_evaluated for f in out):
        run.status = "not_evaluated"
    elif out:
        run.status = "findings"
    elif run.check.scope == "node" and not any_reachable:
        run.status = "not_evaluated"


def exit_code(findings: Iterable[Finding], fail_on: Severity | None) -> int:
    """0 nothing at/above `fail_on` (silenced findings do not count); 1 otherwise. None never fails."""
    if fail_on is None:
        return 0
    return int(any(f.severity >= fail_on and not f.silenced_reason for f in findings))
