"""`kpdoctor scan --transport pod --analyze-in-pod`: the cluster checks run here, every node's checks run in
its collector pod (kpdoctor.inpod), and the node results are merged into the one report
(kpdoctor.noderesult.merge), as bench/bench_merge.py measures at 1,000 nodes."""

from __future__ import annotations

import contextlib
import sys

from kpdoctor.engine import exit_code, run_checks
from kpdoctor.errors import InputError
from kpdoctor.inpod import NAMESPACE, InPodRun, analyze_nodes, with_unreachable_finding
from kpdoctor.node.fanout import default_reporter
from kpdoctor.node.podcollect import cleanup_expired
from kpdoctor.noderesult import merge
from kpdoctor.registry import Registry
from kpdoctor.report.model import SourceInfo, build_report
from kpdoctor.scan_options import ScanOptions
from kpdoctor.scanner import EXIT_UNREACHABLE, ScanOutcome, ScanRequest, _load_live, select_nodes
from kpdoctor.silences import SilenceSet


def scan_in_pods(req: ScanRequest, *, registry: Registry, silences: SilenceSet | None,
                 image: str) -> tuple[ScanOutcome, InPodRun]:
    """The report of `req` (a live scan) with the node checks run in collector pods of `image`."""
    if req.bundle or req.snapshot or req.demo:
        raise InputError("--analyze-in-pod scans the live API's nodes (its pods read the cluster themselves): "
                         "not with --bundle, --snapshot or --demo")
    if req.probe or req.service is not None:
        raise InputError("--analyze-in-pod cannot be combined with --probe or --service")
    checks = registry.select(req.checks, req.skip)
    if silences is not None:
        silences.validate_checks(registry.ids())
    cluster = _load_live(req)
    with contextlib.suppress(Exception):  # earlier runs' expired pods (listing may be forbidden: then not)
        cleanup_expired(req.collect_options.kube_api, NAMESPACE)
    names = select_nodes(cluster, req.node_names, req.node_selector)
    options = ScanOptions(probe=False, source="live", transport="pod", incremental=req.incremental)
    central = run_checks([c for c in checks if c.scope == "cluster"], cluster, nodes=[], options=options,
                         load_errors=registry.load_errors)  # fmt: skip
    check_ids = [c.id for c in checks if c.scope == "node"]
    if req.checks is None and req.skip is None:
        check_ids = []  # the pod's own default: every node check
    run = analyze_nodes(names, options=req.collect_options, image=image, cluster=cluster, check_ids=check_ids,
                        reporter=default_reporter() if req.progress else None)  # fmt: skip
    for leftover in run.leftovers:
        print(f"kpdoctor scan: collector pod not deleted: {leftover}", file=sys.stderr)
    node_checks = [c for c in checks if c.scope == "node"]
    results = [with_unreachable_finding(r, node_checks) for r in run.results.values()]
    result = merge(checks, central, results, silences=silences)
    code = exit_code(result.findings, req.fail_on)
    if names and not any(n.reachable for n in result.nodes):
        code = EXIT_UNREACHABLE
    if result.runs and all(r.status == "not_evaluated" for r in result.runs):
        code = EXIT_UNREACHABLE
    source = SourceInfo("live", cluster.source or (req.context or "current context"), "pod")
    report = build_report(result, source=source, fail_on=req.fail_on, exit_code=code, origins=registry.origins)
    return ScanOutcome(result, report, code), run
