"""The scan pipeline without the CLI: sources -> ClusterState + NodeStates -> engine -> report dict.

`kpdoctor scan`, the benchmark and the tests all call `scan()`, so what the
tests prove is what the command does. Sources are a live API
(`kpdoctor.cluster.live`), a snapshot directory, a bundle (directory or
`.tar.gz`) or the demo bundle shipped inside the package.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kpdoctor.cluster.snapshot import load_snapshot
from kpdoctor.cluster.state import ClusterState
from kpdoctor.engine import ListNodes, NodeSource, ScanResult, exit_code, run_checks
from kpdoctor.errors import InputError
from kpdoctor.findings import Severity
from kpdoctor.node.state import NodeState
from kpdoctor.node_only import cluster_missing_error, node_only_cluster
from kpdoctor.registry import Registry, discover
from kpdoctor.report.model import SourceInfo, build_report
from kpdoctor.safeio import read_regular, regular_files
from kpdoctor.scan_options import ScanOptions
from kpdoctor.silences import SilenceSet

DEMO_BUNDLE = Path(__file__).resolve().parent / "demo" / "bundle"
_DEDUP_MIN_BYTES = 1 << 20  # node files at least this big are decoded once when two are byte-identical
EXIT_UNREACHABLE = 3


@dataclass
class ScanRequest:
    bundle: str | None = None
    snapshot: str | None = None
    demo: bool = False
    kubeconfig: str | None = None
    context: str | None = None
    transport: str | None = None  # None: bundle for --bundle/--demo, none otherwise
    node_names: Sequence[str] = ()  # explicit names or globs; empty = every Node
    node_selector: str = ""  # label selector k=v[,k=v]
    checks: str | None = None
    skip: str | None = None
    fail_on: Severity | None = Severity.ERROR
    probe: bool = False
    collect_options: Any = None  # kpdoctor.node.collect.CollectOptions for ssh / kube-exec / local
    progress: bool = False
    probe_options: Any = None  # kpdoctor.node.probe.ProbeOptions for --probe (None: its defaults)
    collected: Any = None  # (ClusterState, NodeSource, SourceInfo) the caller gathered itself (`kpdoctor node`)
    pod_namespaces: Sequence[str] = ()  # also load the Pods of these namespaces (`why`, `scan --service`)
    service: Any = None  # kpdoctor.why.model.Target: `scan --service NS/NAME` narrows the report to it
    incremental: bool = True  # engine option: big iptables dumps read as deltas of a reference dump


@dataclass
class ScanOutcome:
    result: ScanResult
    report: dict[str, Any]
    exit_code: int
    probe: Any = None  # kpdoctor.node.probe.ProbeRun when --probe ran


# ---- sources -------------------------------------------------------------------------------------
def load_bundle(path: str | os.PathLike[str]) -> tuple[ClusterState, list[NodeState]]:
    """Cluster and every node state of a bundle directory or .tar.gz, in memory (tests, small bundles)."""
    from kpdoctor.node.bundle import read_bundle

    bundle = read_bundle(Path(path))
    return bundle.cluster_state(), list(bundle.node_states().values())


class DirectoryBundleNodes:
    """A NodeSource over a bundle *directory* that reads one node's files at a time.

    The nodes helper's reader (`kpdoctor.node.bundle`) holds every file of a bundle in memory,
    which for 100 nodes' dumps of a 10,000-Service cluster is gigabytes; the scan only ever needs
    one node's facts at once. Each node is turned into a NodeState by that same reader (a Bundle
    holding just that node's files and the manifest), so facts mean the same thing either way.
    """

    def __init__(self, base: Path, manifest: Any) -> None:
        self.base = base
        self.manifest = manifest
        nodes_dir = base / "nodes"
        names = ({p.name for p in nodes_dir.iterdir() if p.is_dir() and not p.is_symlink()}
                 if nodes_dir.is_dir() and not nodes_dir.is_symlink() else set())
        if manifest:
            names.update((manifest.get("nodes") or {}).keys())
        from kpdoctor.node.bundle import safe_node_name

        self._names = sorted(n for n in names if safe_node_name(n))

    def names(self) -> Sequence[str]:
        return self._names

    def load(self, name: str) -> NodeState:
        from dataclasses import replace
        from types import MappingProxyType

        from kpdoctor.node.bundle import Bundle

        node_dir = self.base / "nodes" / name
        files: dict[str, bytes] = {}
        if node_dir.is_dir() and not node_dir.is_symlink():
            for file in regular_files(node_dir):  # never through a symlink, never a FIFO or device
                data = read_regular(file)
                if data is not None:
                    files[file.relative_to(self.base).as_posix()] = data
        # A big file byte-identical to another of the node (iptables-nft-save.txt and iptables-save.txt on an
        # nf_tables node: tens of MB each) is decoded once; its fact gets the same text (decoding is
        # deterministic) and everything else the reader derives for it (source, exit code from the manifest).
        copies: dict[str, str] = {}
        by_size: dict[int, list[str]] = {}
        for path, data in files.items():
            if len(data) >= _DEDUP_MIN_BYTES:
                same = by_size.setdefault(len(data), [])
                first = next((p for p in same if files[p] == data), None)  # memcmp, no hashing
                if first is None:
                    same.append(path)
                else:
                    copies[path] = first
        for path in copies:
            files[path] = b""
        state = Bundle(str(self.base), files, manifest=self.manifest).node_state(name)
        if not copies:
            return state
        prefix = f"nodes/{name}/"
        facts = dict(state.facts)
        for path, first in copies.items():
            key, source = path[len(prefix):], facts[first[len(prefix):]]
            facts[key] = replace(facts[key], content=source.content)
        return replace(state, facts=MappingProxyType(facts))


def open_bundle(path: str | os.PathLike[str], pod_namespaces: Sequence[str] = ()) -> tuple[ClusterState, NodeSource]:
    """The cluster of a bundle and a NodeSource for its nodes (streaming for directories)."""
    from kpdoctor.node import bundle as nb

    root = Path(path)
    if root.is_dir():
        base = root / "bundle" if not (root / "nodes").is_dir() and (root / "bundle").is_dir() else root
        manifest = None
        raw = base / "manifest.json"
        data = read_regular(raw) if raw.is_file() else None
        if data is not None:
            manifest = nb._manifest(nb.Bundle(str(root), {"manifest.json": data}))
        if not (base / "cluster").is_dir():
            if not (base / "nodes").is_dir():
                raise InputError("not a kpdoctor bundle: no nodes/<name>/ and no cluster/ inside", where=str(root))
            problem = cluster_missing_error(manifest, "")
            if problem:
                raise InputError(problem, where=str(root))
            return node_only_cluster(str(root)), DirectoryBundleNodes(base, manifest)  # `collect --offline`
        return load_snapshot(base / "cluster", pod_namespaces=pod_namespaces), DirectoryBundleNodes(base, manifest)
    bundle = nb.read_bundle(root)
    if bundle.has_cluster():
        return bundle.cluster_state(pod_namespaces), ListNodes(bundle.node_states().values())
    problem = cluster_missing_error(bundle.manifest, bundle.error)
    if problem:
        raise InputError(problem, where=str(root))
    cluster = node_only_cluster(str(root))
    return cluster, ListNodes(bundle.node_states().values())


class _Subset:
    """Only the selected nodes of a source (--nodes / --node-selector)."""

    def __init__(self, source: NodeSource, names: Sequence[str]) -> None:
        self._source = source
        self._names = list(names)

    def names(self) -> Sequence[str]:
        return self._names

    def load(self, name: str) -> NodeState:
        return self._source.load(name)


# ---- node selection ---------------------------------------------------------------------------------
def select_nodes(cluster: ClusterState, names: Sequence[str], selector: str,
                 available: Sequence[str] | None = None) -> list[str]:
    from fnmatch import fnmatchcase

    pool = list(available) if available is not None else [n.name for n in cluster.nodes]
    chosen = pool
    if names:
        chosen = [n for n in pool if any(fnmatchcase(n, pat) for pat in names)]
        missing = [pat for pat in names if not any(fnmatchcase(n, pat) for n in pool)]
        if missing:
            raise InputError(f"--nodes: no node matches {', '.join(missing)} (nodes: {', '.join(pool) or 'none'})")
    if selector:
        wanted: dict[str, str] = {}
        for part in selector.split(","):
            key, sep, value = part.partition("=")
            if not sep or not key.strip():
                raise InputError(f"--node-selector: {part!r} is not key=value")
            wanted[key.strip()] = value.strip()
        by_name = cluster.node_by_name
        chosen = [n for n in chosen if n in by_name and all(by_name[n].labels.get(k) == v for k, v in wanted.items())]
    return chosen


def _collect_live_nodes(cluster: ClusterState, names: list[str], req: ScanRequest) -> list[NodeState]:
    """Reach nodes through the nodes helper's fan-out (local / ssh / kube-exec), bounded and with progress."""
    from kpdoctor.node.collect import CollectOptions, collect_nodes
    from kpdoctor.node.fanout import Interrupted, default_reporter

    options = req.collect_options if req.collect_options is not None else CollectOptions(transport=req.transport or "")
    try:
        states = collect_nodes(names, cluster=cluster, options=options,
                               reporter=default_reporter() if req.progress else None)
    except Interrupted as exc:  # Ctrl-C: scan what was collected; the rest is reported as not reached
        states = exc.partial
    return list(states.values())


def _load_live(req: ScanRequest) -> ClusterState:
    from kpdoctor.cluster.live import load_live

    return load_live(req.kubeconfig, req.context, pod_namespaces=req.pod_namespaces).state


# ---- the pipeline ------------------------------------------------------------------------------------
def gather(req: ScanRequest) -> tuple[ClusterState, NodeSource, SourceInfo, bool]:
    """Load the cluster and nodes the request names; the bool says whether nodes were asked for."""
    if req.collected is not None:  # `kpdoctor node` collected its one node itself: same pipeline from here
        cluster, source, info = req.collected
        return cluster, source, info, bool(list(source.names()))
    sources = sum(bool(x) for x in (req.bundle, req.snapshot, req.demo))
    if sources > 1:
        raise InputError("choose one of --bundle, --snapshot, --demo (or none for the live API)")
    if req.demo or req.bundle:
        location = str(DEMO_BUNDLE) if req.demo else str(req.bundle)
        if req.demo and not DEMO_BUNDLE.is_dir():
            raise InputError("the demo bundle is missing from this installation", where=str(DEMO_BUNDLE))
        transport = req.transport or "bundle"
        if transport not in ("bundle", "none"):
            raise InputError(f"--transport {transport} cannot be used with a bundle (its nodes are files)")
        cluster, source = open_bundle(location, req.pod_namespaces)
        names = list(source.names()) if transport == "bundle" else []
        keep = select_nodes(cluster, req.node_names, req.node_selector, names)
        kind = "demo" if req.demo else "bundle"
        info = SourceInfo(kind, "kpdoctor demo bundle" if req.demo else location, transport)
        return cluster, _Subset(source, keep), info, False
    if req.snapshot:
        cluster = load_snapshot(req.snapshot, pod_namespaces=req.pod_namespaces)
        location, kind = req.snapshot, "snapshot"
    else:
        cluster = _load_live(req)
        location, kind = cluster.source or (req.context or "current context"), "live"
    transport = req.transport or "none"
    if transport == "none":
        return cluster, ListNodes(()), SourceInfo(kind, location, "none"), False
    if transport not in ("ssh", "kube-exec", "pod", "local"):
        raise InputError(f"--transport {transport!r}: choose ssh, kube-exec, pod, local or none")
    names = select_nodes(cluster, req.node_names, req.node_selector)
    if transport == "local" and len(names) != 1:
        raise InputError("--transport local reads this machine: name the one node it is with --nodes NAME")
    nodes = _collect_live_nodes(cluster, names, req)
    return cluster, ListNodes(nodes), SourceInfo(kind, location, transport), bool(names)


_MALLOC_TUNED = False


def _keep_big_buffers() -> None:
    """Let glibc serve big buffers from the heap and keep freed ones for the next node.

    A bundle scan reads, decodes and splits a ~35 MB dump per node; by default glibc maps every buffer
    over 32 MB freshly (and unmaps it when freed), so each node pays ~10k page faults per buffer (~5 s of
    system time over a 100-node scan at 10,000 Services). Peak memory is unchanged: the same sizes are
    live at once, only reused instead of returned and faulted in again. Best effort: glibc only."""
    global _MALLOC_TUNED
    if _MALLOC_TUNED:
        return
    _MALLOC_TUNED = True
    try:
        import ctypes
        import ctypes.util

        name = ctypes.util.find_library("c")
        if not name or "libc" not in name:
            return
        libc = ctypes.CDLL(name)
        if not hasattr(libc, "mallopt") or not hasattr(libc, "gnu_get_libc_version"):
            return
        libc.mallopt(-3, 256 << 20)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 256 << 20)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        return


def scan(req: ScanRequest, *, registry: Registry | None = None, silences: SilenceSet | None = None,
         checks_override: Sequence[Any] | None = None) -> ScanOutcome:
    if req.bundle is not None or req.demo:
        _keep_big_buffers()
    reg = registry or discover()
    checks = list(checks_override) if checks_override is not None else reg.select(req.checks, req.skip)
    if silences is not None:
        silences.validate_checks(reg.ids() + [c.id for c in checks])
    # No automatic cyclic-collector passes while the snapshot loads (millions of acyclic objects), the nodes
    # are checked (the engine collects each node's cycles itself) and the report is built: each full pass
    # re-scanned everything alive (~1 s of a 100-node scan at 10,000 Services). Restored afterwards. Only for
    # offline input: a live scan's SSH / API clients (threads, sockets) keep the collector as usual.
    enabled = gc.isenabled()
    if req.bundle is not None or req.demo:
        gc.disable()
    try:
        cluster, nodes, source, wanted_nodes = gather(req)
        probe_run = run_probe(req, cluster, nodes) if req.probe else None
        options = ScanOptions(probe=probe_run.results if probe_run is not None else False, source=source.kind,
                              transport=source.transport, incremental=req.incremental)
        result = run_checks(checks, cluster, node_source=nodes, options=options, silences=silences,
                            load_errors=reg.load_errors)
        view = None
        if req.service is not None:  # `scan --service`: this Service's findings and its `why` view
            from kpdoctor.why.scan_view import narrow

            result, view = narrow(result, nodes, req.service, f"{source.kind} {source.location}")
        code = exit_code(result.findings, req.fail_on)
        if wanted_nodes and result.nodes and not any(n.reachable for n in result.nodes):
            code = EXIT_UNREACHABLE
        if result.runs and all(r.status == "not_evaluated" for r in result.runs):
            code = EXIT_UNREACHABLE  # no check saw anything: the report is not "ok" (issue 9)
        report = build_report(result, source=source, fail_on=req.fail_on, exit_code=code, origins=reg.origins)
        if view is not None:
            report["service"] = view
    finally:
        if enabled:
            gc.enable()
    return ScanOutcome(result, report, code, probe_run)


def run_probe(req: ScanRequest, cluster: ClusterState, nodes: NodeSource) -> Any:
    """--probe: connect to the NodePorts of the scanned (reachable) nodes from here (`kpdoctor.node.probe`);
    KP-NODEPORT-FIREWALL reads the results from `options["probe"]` on each node."""
    from kpdoctor.node.probe import probe_node_ports

    names = list(nodes.names())
    if not names:
        raise InputError("--probe: no node is scanned, so no node check would read the results; reach the nodes "
                         "with --bundle or --transport (the probe connects to each scanned node's InternalIP)")
    if isinstance(nodes, ListNodes):  # collected live: an unreachable node gets no node checks to read results
        names = [n for n in names if nodes.load(n).reachable]
    return probe_node_ports(cluster, names, req.probe_options)
