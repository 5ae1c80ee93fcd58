"""`kpdoctor why svc/NS/NAME[:PORT]`: why can't I reach this Service? Cause first, then every node's behaviour.

Heavy imports happen inside the command so `kpdoctor --help` stays fast.
"""

from __future__ import annotations

import sys

import typer

from kpdoctor.commands import optgroups as og
from kpdoctor.commands.nodeflags import NodeFlags, node_collect_options

WHY_HELP = (
    "Explain one Service, cause first: API-level causes with evidence (selector, pod readiness, ports, "
    "EndpointSlices, traffic policies, topology, affinity), then what each node's real rules do with each of its "
    "frontends (nodes grouped by identical behaviour), then a one-sentence verdict and the fix.\n\n"
    "Sources: the live API (default), --snapshot DIR, --bundle PATH (a bundle without cluster/ gives node rules "
    "only), --demo. Without node access the nodes are 'not evaluated'.\n\n"
    "Exit codes: 0 reachable (or only notes / nothing evaluated: the verdict says which); 1 a cause blocks it or "
    "some nodes fail it; 2 bad input; 3 the cluster could not be reached."
)


def register(app: typer.Typer) -> None:
    @app.command("why", help=WHY_HELP)
    @og.with_option_groups
    def why_cmd(
        service: str = typer.Argument(..., metavar="svc/NAMESPACE/NAME[:PORT]",
                                      help="The Service (and optionally one of its ports) to explain."),
        client: str = typer.Option(None, "--from", help="Where the client is: pod/NS/NAME | node/NAME | external | IP."),
        bundle: str = typer.Option(None, "--bundle", help="Bundle directory or .tar.gz."),
        snapshot: str = og.SNAPSHOT,
        demo: bool = og.DEMO,
        api: og.ApiFlags = og.LIVE_API,
        transport: str = typer.Option(None, "--transport", help="ssh | kube-exec | local | none (as for scan)."),
        nodes: str = og.NODES,
        fmt: str = typer.Option("console", "-o", "--output", "--format", help="console | json."),
    ) -> None:
        from kpdoctor.commands.why_run import run_why
        from kpdoctor.errors import InputError
        from kpdoctor.scanner import ScanRequest
        from kpdoctor.why.render import render_text, to_dict
        from kpdoctor.why.target import parse_from, parse_target

        if fmt not in ("console", "json"):
            from kpdoctor.commands.options import format_error

            raise InputError(format_error(fmt, ("console", "json")))
        target = parse_target(service)
        who = parse_from(client)
        collect_options = node_collect_options(NodeFlags(transport), api)
        req = ScanRequest(bundle=bundle, snapshot=snapshot, demo=demo, kubeconfig=api.kubeconfig, context=api.context,
                          transport=transport, node_names=[n.strip() for n in nodes.split(",") if n.strip()],
                          collect_options=collect_options, progress=sys.stderr.isatty())
        report = run_why(req, target, who)
        if fmt == "json":
            from kpdoctor.report.json_report import render_json

            sys.stdout.write(render_json(to_dict(report)))
        else:
            sys.stdout.write(render_text(report))
        sys.stdout.flush()
        raise typer.Exit(report.exit_code)
