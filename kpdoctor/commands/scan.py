"""`kpdoctor scan`: diagnose Service networking from the live API, a snapshot, a bundle, or the demo.

Heavy imports (the scanner, renderers, kubernetes, paramiko) happen inside the
command so `kpdoctor --help` stays fast.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from kpdoctor.commands.options import DEFAULT_TIMEOUT, OUTPUT_FILE_HELP, SSH_HELP, TIMEOUT_HELP, format_error

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
    def scan_cmd(
        bundle: str = typer.Option(None, "--bundle", help="Bundle directory or .tar.gz (docs/bundle.md)."),
        snapshot: str = typer.Option(None, "--snapshot", help="Directory of `kubectl get -o json` files."),
        demo: bool = typer.Option(False, "--demo", help="Scan the demo bundle shipped with kpdoctor (exit 0 "
                                  "unless --fail-on is given)."),
        kubeconfig: str = typer.Option(None, "--kubeconfig", help="Kubeconfig for the live API."),
        context: str = typer.Option(None, "--context", help="Kubeconfig context for the live API."),
        transport: str = typer.Option(None, "--transport",
                                      help="How to reach nodes: ssh | kube-exec | pod | local | none (default: the "
                                      "bundle's files for --bundle/--demo, none otherwise)."),
        nodes: str = typer.Option("", "--nodes", help="Comma-separated node names or globs (default: all)."),
        node_selector: str = typer.Option("", "--node-selector", "-l", help="Node label selector k=v[,k=v]."),
        checks: str = typer.Option(None, "--checks", help="Only these: ids, tag:<tag>, scope:cluster|node."),
        skip: str = typer.Option(None, "--skip", help="Not these: ids, tag:<tag>, scope:cluster|node."),
        config_file: str = typer.Option(None, "--config-file",
                                        help="Silences file (default: ./.kpdoctor.yaml when present)."),
        no_config_file: bool = typer.Option(False, "--no-config-file", help="Ignore ./.kpdoctor.yaml."),
        fmt: str = typer.Option("console", "-o", "--output", "--format", help="console | json | junit | markdown | html."),
        output: str = typer.Option(None, "-f", "--output-file", metavar="FILE", help=OUTPUT_FILE_HELP),
        fail_on: str = typer.Option(None, "--fail-on", help="info | warning | error | critical (default error; "
                                    "off with --demo)."),
        probe: bool = typer.Option(False, "--probe", help="Opt-in active probe: TCP-connect to every NodePort on each "
                                   "scanned node's InternalIP from here; results read by KP-NODEPORT-FIREWALL."),
        probe_timeout: float = typer.Option(1.0, "--probe-timeout", help="Seconds per probe connect (--probe)."),
        probe_limit: int = typer.Option(512, "--probe-limit", help="At most this many probe connects (--probe)."),
        probe_concurrency: int = typer.Option(32, "--probe-concurrency", help="Probe connects at once (--probe)."),
        concurrency: int = typer.Option(32, "--concurrency", help="Nodes collected at once."),
        collector_image: str = typer.Option(None, "--collector-image", help="--transport pod: the collector pod's "
                                            "image (default: the node's own kube-proxy image)."),
        timeout: float = typer.Option(DEFAULT_TIMEOUT, "--timeout", help=TIMEOUT_HELP),
        ssh_user: str = typer.Option(None, "--ssh-user", help=SSH_HELP["user"]),
        ssh_key: Annotated[list[str] | None, typer.Option("--ssh-key", help=SSH_HELP["key"])] = None,
        ssh_port: int = typer.Option(None, "--ssh-port", help=SSH_HELP["port"]),
        ssh_config: str = typer.Option(None, "--ssh-config", help=SSH_HELP["config"]),
        jump_host: str = typer.Option(None, "--jump-host", help=SSH_HELP["jump"]),
        known_hosts: str = typer.Option(None, "--known-hosts", help=SSH_HELP["known_hosts"]),
        accept_new_host_keys: bool = typer.Option(False, "--accept-new-host-keys", help=SSH_HELP["accept_new"]),
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
        from kpdoctor.silences import load_silences

        if fmt not in FORMATS:
            raise InputError(format_error(fmt, FORMATS))
        try:
            threshold = Severity.parse(fail_on) if fail_on else (None if demo else Severity.ERROR)
        except ValueError as exc:
            raise InputError(f"--fail-on: {exc}") from None
        registry = discover()
        silences = None if no_config_file else load_silences(config_file)
        for line in silences.expired_warnings() if silences else []:
            print(f"kpdoctor: warning: {line}", file=sys.stderr)
        collect_options = None
        if transport in ("ssh", "kube-exec", "pod", "local"):
            from kpdoctor.commands.node import NodeFlags, options_from

            kube_api = None
            if transport in ("kube-exec", "pod"):
                from kubernetes import client

                from kpdoctor.cluster.live import api_client

                kube_api = client.CoreV1Api(api_client(kubeconfig, context))
            flags = NodeFlags(transport, None, ssh_user, list(ssh_key or []), ssh_port, ssh_config, jump_host, known_hosts,
                              accept_new_host_keys, timeout, concurrency)
            collect_options = options_from(flags, transport=transport, bundle=None, kube_api=kube_api)
            if transport == "pod":
                from kpdoctor.node.podcollect import prepare

                collect_options = prepare(collect_options, collector_image)
        if probe and demo:
            raise InputError("--probe cannot be used with --demo: the demo's node addresses are not real machines")
        probe_options = probe_options_from(probe_timeout, probe_limit, probe_concurrency) if probe else None
        req = ScanRequest(
            bundle=bundle, snapshot=snapshot, demo=demo, kubeconfig=kubeconfig, context=context,
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
        outcome = scan(req, registry=registry, silences=silences)
        emit_report(outcome, fmt, output, min_severity=shown_from)
        raise typer.Exit(outcome.exit_code)


def probe_options_from(timeout: float, limit: int, concurrency: int) -> Any:
    """--probe-* flags -> a validated ProbeOptions (bad values exit 2 before anything is contacted)."""
    from kpdoctor.node.probe import ProbeOptions

    return ProbeOptions(timeout=timeout, concurrency=concurrency, limit=limit).validated()


def emit_report(outcome: Any, fmt: str, output: str | None, *, min_severity: str | None = None) -> None:
    """Render a ScanOutcome to stdout or --output FILE (shared by `scan` and `node`), plus the probe summary."""
    from kpdoctor.errors import InputError
    from kpdoctor.report import render

    if outcome.probe is not None:
        print(f"kpdoctor: probe: {outcome.probe.summary()}", file=sys.stderr)
    if output:
        text = render(fmt, outcome.report, min_severity=min_severity)
        try:
            Path(output).write_text(text, encoding="utf-8")
        except OSError as exc:
            raise InputError(f"cannot write report: {exc}", where=output) from None
        s = outcome.report["summary"]["findings"]
        print(f"kpdoctor: {fmt} report written to {output} ({', '.join(f'{v} {k}' for k, v in s.items())}; "
              f"exit {outcome.exit_code})", file=sys.stderr)
    else:
        from kpdoctor.report.layout import console_width

        width = console_width(sys.stdout)
        from kpdoctor.commands.terminal import use_color

        sys.stdout.write(render(fmt, outcome.report, color=use_color(sys.stdout) and fmt == "console", width=width,
                                min_severity=min_severity))
        sys.stdout.flush()
