"""`kpdoctor gate mode-switch`: is it safe to switch kube-proxy between iptables, nftables and IPVS?"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from kpdoctor.commands.options import OUTPUT_FILE_HELP, format_error

MODE_SWITCH_HELP = """CI gate for switching kube-proxy's mode (--to nftables|iptables|ipvs). Zero false passes:
it passes only when every condition is proven from the evidence (docs/mode-switch.md).

--phase pre-switch (the only phase so far): the current mode of every node is known; the kube-proxy version
supports the target (nftables GA v1.33; IPVS deprecated, KEP-5495); every node's kernel has what the target needs
(kernel >= 5.13 and nf_tables for nftables, ip_vs + scheduler for IPVS); the reference proxier in the current and
the target mode serves every Service port alike on every node, but for documented differences (listed as
warnings); for nftables, the node addresses NodePorts stop answering on (default nodePortAddresses [primary]).
The verdict comes first. Only when the gate passes does the report print the ordered rollout plan (per kube-proxy
DaemonSet: back up its ConfigMap, edit the mode, restart, watch, roll back); otherwise it says what the plan would
do, and --show-plan prints it under "NOT SAFE TO RUN: the gate did not pass" with every command commented out.

Sources: --bundle PATH (a `kpdoctor collect` bundle), --demo (the bundle shipped with kpdoctor), --snapshot DIR
(cluster objects only: no node facts, so it can fail but never pass). The live API is not supported yet.

Exit codes: 0 pass; 1 at least one blocking reason; 2 bad input; 3 cannot prove.
"""


def register_mode_switch(gate_app: typer.Typer) -> None:
    @gate_app.command("mode-switch", help=MODE_SWITCH_HELP)
    def mode_switch(
        to: str = typer.Option(..., "--to", help="Target mode: nftables | iptables | ipvs."),
        phase: str = typer.Option("pre-switch", "--phase", help="pre-switch (post-switch is not built yet)."),
        bundle: str = typer.Option(None, "--bundle", help="Bundle directory or .tar.gz (docs/bundle.md)."),
        snapshot: str = typer.Option(None, "--snapshot", help="Directory of `kubectl get -o json` files."),
        demo: bool = typer.Option(False, "--demo", help="Use the demo bundle shipped with kpdoctor."),
        fmt: str = typer.Option("console", "-o", "--output", "--format", help="console | json | junit."),
        output: str = typer.Option(None, "-f", "--output-file", metavar="FILE", help=OUTPUT_FILE_HELP),
        show_plan: bool = typer.Option(False, "--show-plan", help=(
            "Print the rollout plan even when the gate did not pass: under 'NOT SAFE TO RUN: the gate did not "
            "pass', every command commented out.")),
    ) -> None:
        import os

        from kpdoctor.demo import __file__ as demo_init
        from kpdoctor.errors import InputError
        from kpdoctor.gate.mode_switch import TARGETS, run_mode_switch
        from kpdoctor.gate.render import FORMATS, render
        from kpdoctor.gate.sources import from_bundle, from_snapshot

        if fmt not in FORMATS:
            raise InputError(format_error(fmt, FORMATS))
        if to not in TARGETS:
            raise InputError(f"--to {to!r}: choose from {', '.join(TARGETS)}")
        if phase != "pre-switch":
            raise InputError(f"--phase {phase!r}: only pre-switch is available (post-switch is not built yet)")
        if sum(bool(x) for x in (bundle, snapshot, demo)) != 1:
            raise InputError("give exactly one of --bundle PATH, --snapshot DIR, --demo (the live API is not "
                             "supported by this gate yet)")
        if demo:
            bundle = os.path.join(os.path.dirname(demo_init), "bundle")
        source = from_bundle(bundle) if bundle else from_snapshot(snapshot)
        notes = source.notes if snapshot is None else (
            "a snapshot holds no node facts: kernel readiness cannot be proven (use a bundle)",)
        from dataclasses import replace

        result = replace(run_mode_switch(source.cluster, source.nodes, target=to),
                         source="demo bundle" if demo else source.source, notes=notes)
        text = render(fmt, result, show_plan=show_plan)
        if output:
            try:
                Path(output).write_text(text, encoding="utf-8")
            except OSError as exc:
                raise InputError(f"cannot write report: {exc.strerror}", where=output) from None
            print(f"kpdoctor: gate {result.gate} ({result.phase}): {result.verdict} — {fmt} report written to "
                  f"{output} (exit {result.exit_code})", file=sys.stderr)
        else:
            sys.stdout.write(text)
            sys.stdout.flush()
        raise typer.Exit(result.exit_code)
