"""`kpdoctor scan`: diagnose Service networking from the live API, a snapshot, a bundle, or the demo.

Heavy imports (the scanner, renderers, kubernetes, paramiko) happen inside the
command so `kpdoctor --help` stays fast.
"""

from __future__ import annotations

import sys

import typer

from kpdoctor.commands import optgroups as og
from kpdoctor.commands.nodeflags import NodeFlags, node_collect_options
from kpdoctor.commands.options import format_error
from kpdoctor.commands.report_output import emit_report

SCAN_HELP = (
    "Run the checks and print a report with evidence and remediation commands.\n\n"
    "Sources (pick one): the live API (default; --kubeconfig/--context); --snapshot DIR (cluster-scope checks, "
    "plus node checks when --transport reaches the nodes); --bundle PATH (a `kpdoctor collect` bundle: cluster "
    "and node checks fully offline); --demo (a bundle shipped inside kpdoctor, captured from real kube-proxy "
    "v1.36.2 nodes with faults planted; needs no root and no cluster).\n\n"
    "Exit codes: 0 nothing at/above --fail-on; 1 findings at/above --fail-on; 2 usage or input error (unknown "
    "check id, malformed .kpdoctor.yaml, bad bundle); 3 the cluster or every requested node could not be "
    "reached. --fail-on defaults to error; with --demo it is off (exit 0: the demo's faults are planted, not "
    "yours) unless you pass --fail-on."
)


def register(app: typer.Typer) -> None:
    @app.command("scan", help=SCAN_HELP)
    @og.with_option_groups
    def scan_cmd(
        bundle: str = og.BUNDLE,
        snapshot: str = og.SNAPSHOT,
        demo: bool = typer.Option(False, "--demo", help="Scan the demo bundle shipped with kpdoctor (exit 0 "
                                  "unless --fail-on is given)."),
        api: og.ApiFlags = og.LIVE_API,
        transport: str = typer.Option(None, "--transport",
                                      help="How to reach nodes: ssh | kube-exec | pod | local | none (default: the "
                                      "bundle's files for --bundle/--demo, none otherwise)."),
        nodes: str = og.NODES,
        node_selector: str = og.NODE_SELECTOR,
        checks: str = typer.Option(None, "--checks", help="Only these: ids, tag:<tag>, scope:cluster|node."),
        skip: str = typer.Option(None, "--skip", help="Not these: ids, tag:<tag>, scope:cluster|node."),
        silence: og.SilenceFlags = og.SILENCES,
        fmt: str = typer.Option("console", "-o", "--output", "--format", help="console | json | junit | markdown | html."),
        output: str = og.OUTPUT_FILE,
        fail_on: str = typer.Option(None, "--fail-on", help="info | warning | error | critical (default error; "
                                    "off with --demo)."),
        probe: bool = typer.Option(False, "--probe", help="Opt-in active probe: TCP-connect to every NodePort on each "
                                   "scanned node's InternalIP from here; results read by KP-NODEPORT-FIREWALL."),
        probe_flags: og.ProbeFlags = og.PROBE,
        concurrency: int = og.CONCURRENCY,
        pod: og.PodFlags = og.POD,
        timeout: float = og.TIMEOUT,
        ssh: og.SshFlags = og.SSH,
        service: str = typer.Option(None, "--service", help="Narrow the report to one Service NS/NAME and add its "
                                    "`kpdoctor why` view (JSON: the \"service\" key)."),
        min_severity: str = typer.Option(None, "--min-severity", help="Console/Markdown/HTML: hide findings below "
                                         "this severity (info|warning|error|critical); -o json keeps all."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="Same as --min-severity warning."),
    ) -> None:
        from kpdoctor.errors import InputError
        from kpdoctor.findings import Severity
        from kpdoctor.registry import discover
        from kpdoctor.report import FORMATS
        from kpdoctor.scanner import ScanRequest, scan

        if fmt not in FORMATS:
            raise InputError(format_error(fmt, FORMATS))
        try:
            threshold = Severity.parse(fail_on) if fail_on else (None if demo else Severity.ERROR)
        except ValueError as exc:
            raise InputError(f"--fail-on: {exc}") from None
        registry = discover()
        silences = silence.load()
        pod.validate(transport)
        flags = NodeFlags(transport, None, ssh, timeout, concurrency)
        collect_options = node_collect_options(flags, api, collector_image=pod.collector_image)
        if probe and demo:
            raise InputError("--probe cannot be used with --demo: the demo's node addresses are not real machines")
        probe_options = probe_flags.options() if probe else None
        req = ScanRequest(
            bundle=bundle, snapshot=snapshot, demo=demo, kubeconfig=api.kubeconfig, context=api.context,
            transport=transport, node_names=[n.strip() for n in nodes.split(",") if n.strip()],
            node_selector=node_selector, checks=checks, skip=skip, fail_on=threshold, probe=probe,
            collect_options=collect_options, progress=sys.stderr.isatty(), probe_options=probe_options,
        )
        if service:
            from kpdoctor.why.target import parse_target

            req.service = parse_target(service)
            req.pod_namespaces = [req.service.namespace]
        try:
            shown_from = Severity.parse(min_severity).label if min_severity else ("warning" if quiet else None)
        except ValueError as exc:
            raise InputError(f"--min-severity: {exc}") from None
        if pod.analyze_in_pod and pod.collector_image:  # kpdoctor.inpod
            from kpdoctor.inpod_scan import scan_in_pods

            outcome, _ = scan_in_pods(req, registry=registry, silences=silences, image=pod.collector_image)
        else:
            outcome = scan(req, registry=registry, silences=silences)
        emit_report(outcome, fmt, output, min_severity=shown_from)
        raise typer.Exit(outcome.exit_code)
