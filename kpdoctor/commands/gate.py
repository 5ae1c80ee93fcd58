"""`kpdoctor gate kube-proxy-removal`: prove it is safe to remove kube-proxy (or that it was removed cleanly).

Heavy imports (the gate, renderers, kubernetes) happen inside the command so
`kpdoctor --help` stays fast.
"""

from __future__ import annotations

import sys

import typer

from kpdoctor.commands import optgroups as og
from kpdoctor.commands.options import format_error
from kpdoctor.commands.report_output import write_gate_report

GATE_HELP = """CI gate for replacing kube-proxy with Cilium's kube-proxy replacement. Zero false passes:
it passes only when every condition is proven from the evidence.

Pre-removal (default): cilium-config kube-proxy-replacement=true (legacy `strict` accepted with a warning);
a Running+Ready Cilium agent on every node that runs kube-proxy, each reporting KubeProxyReplacement True
(Cilium 1.14-1.18); k8s-service-host/port set to the API server itself, not the `kubernetes` ClusterIP;
every Service port kube-proxy programs covered by the agents' features and, where the agents' service
tables were collected, present there with the same backends; Services served on every node now; every
node ready for the switch. The verdict comes first. Only when the gate passes does the report print the cleanup
plan (DaemonSet + ConfigMap deletion, then `kube-proxy --cleanup` or the equivalent commands per node);
otherwise it says what the plan would contain, and --show-plan prints it under "NOT SAFE TO RUN: the gate did
not pass" with every command commented out.

Post-removal (--phase post-removal): kube-proxy DaemonSet/pods/ConfigMap gone, no kube-proxy state on any
node, and the replacement healthy and covering every Service.

Sources: --bundle PATH (a `kpdoctor collect` bundle with nodes/<node>/cilium/status.json and
service-list.json; fully offline), --snapshot DIR (cluster objects only: can fail, never pass), or the live
API (--kubeconfig/--context; agent status read by exec into the Cilium pods).

Exit codes: 0 pass; 1 at least one blocking reason (all are listed); 2 bad input; 3 the cluster or
required evidence could not be reached or recognised ("cannot prove"; an unknown is never a pass).
"""


def register(app: typer.Typer) -> None:
    gate_app = typer.Typer(name="gate", help="CI gates with a strict verdict (exit 0 only on pass).",
                           no_args_is_help=True)

    @gate_app.command("kube-proxy-removal", help=GATE_HELP)
    @og.with_option_groups
    def kube_proxy_removal(
        bundle: str = og.BUNDLE,
        snapshot: str = og.SNAPSHOT,
        api: og.ApiFlags = og.LIVE_API,
        phase: str = typer.Option("pre-removal", "--phase", help="pre-removal | post-removal."),
        fmt: str = typer.Option("console", "-o", "--output", "--format", help="console | json | junit."),
        output: str = og.OUTPUT_FILE,
        timeout: float = og.TIMEOUT,
        show_plan: bool = og.show_plan_option("cleanup plan", " (console; JSON always carries it, commented out "
                                               "unless passed)"),
    ) -> None:
        from dataclasses import replace
        from typing import cast

        from kpdoctor.errors import InputError
        from kpdoctor.gate import run_gate
        from kpdoctor.gate.model import PHASES, Phase
        from kpdoctor.gate.render import FORMATS, render
        from kpdoctor.gate.sources import load

        if fmt not in FORMATS:
            raise InputError(format_error(fmt, FORMATS))
        if phase not in PHASES:
            raise InputError(f"--phase {phase!r}: choose from {', '.join(PHASES)}")
        options = {"timeout": timeout} if not (bundle or snapshot) else {}
        source = load(bundle, snapshot, api.kubeconfig, api.context, **options)
        result = run_gate(source.cluster, source.nodes, phase=cast(Phase, phase))
        result = replace(result, source=source.source, notes=source.notes)
        if output:
            write_gate_report(result, fmt, output, render(fmt, result, show_plan=show_plan), detail=(
                f"{len(result.blocking_reasons)} blocking, {len(result.unknown_reasons)} cannot-prove; "))
        else:
            from kpdoctor.commands.terminal import use_color
            from kpdoctor.report.layout import console_width

            sys.stdout.write(render(fmt, result, color=use_color(sys.stdout) and fmt == "console", show_plan=show_plan,
                                    width=console_width(sys.stdout)))
            sys.stdout.flush()
        raise typer.Exit(result.exit_code)

    from kpdoctor.commands.gate_mode_switch import register_mode_switch

    register_mode_switch(gate_app)
    app.add_typer(gate_app, name="gate")
