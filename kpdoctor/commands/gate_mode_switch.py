"""`kpdoctor gate mode-switch`: is it safe to switch kube-proxy between iptables, nftables and IPVS?"""

from __future__ import annotations

import sys

import typer

from kpdoctor.commands import optgroups as og
from kpdoctor.commands.options import OUTPUT_FILE_HELP, format_error
from kpdoctor.commands.report_output import write_gate_report

MODE_SWITCH_HELP = """CI gate for switching kube-proxy's mode (--to nftables|iptables|ipvs). Zero false passes:
it passes only when every condition is proven from the evidence (docs/mode-switch.md).

--phase pre-switch: the current mode of every node is known; the kube-proxy version
supports the target (nftables GA v1.33; IPVS deprecated, KEP-5495); every node's kernel has what the target needs
(kernel >= 5.13 and nf_tables for nftables, ip_vs + scheduler for IPVS); the reference proxier in the current and
the target mode serves every Service port alike on every node, but for documented differences (listed as
warnings); for nftables, the node addresses NodePorts stop answering on (default nodePortAddresses [primary]);
the tools the target needs (nft >= 1.0.1; ipset and strictARP beside kube-vip/MetalLB for IPVS; conntrack);
per-mode settings the switch drops (masqueradeAll, masqueradeBit, sync periods, the INVALID drop, IPVS
schedulers/timeouts/kube-ipvs0); for nftables, a default-deny host firewall that only kube-proxy's iptables
accepts got through (the NodePorts and health-check ports that would stop answering).
The verdict comes first. Only when the gate passes does the report print the ordered rollout plan (per kube-proxy
DaemonSet: back up its ConfigMap, edit the mode, restart, watch, roll back); otherwise it says what the plan would
do, and --show-plan prints it under "NOT SAFE TO RUN: the gate did not pass" with every command commented out.
--write-baseline FILE stores each node's mode and view per Service for the post-switch phase.

--phase post-switch --baseline FILE (after the switch): every node's kube-proxy runs and reports the target
(/proxyMode, else its "Using X Proxier" log line; a crash loop blocks); every kube-proxy DaemonSet's ConfigMap
says the target; every node's rules in the target mode equal the reference proxier's; none of the old mode's
state is left (listed with cleanup commands safe next to the new mode); every Service port behaves as in the
baseline but for the documented differences.

Sources: --bundle PATH (a `kpdoctor collect` bundle), --demo (the bundle shipped with kpdoctor), --snapshot DIR
(cluster objects only: no node facts, so it can fail but never pass), or the live API (--kubeconfig/--context)
with the nodes reached by --transport kube-exec | pod | ssh | local (local: this machine is --node NAME, every
other node cannot be proven). An API that cannot be reached exits 3; a node that cannot be reached is "cannot
prove" for every condition about it (exit 3), never a pass.

Exit codes: 0 pass; 1 at least one blocking reason; 2 bad input; 3 cannot prove.
"""


def register_mode_switch(gate_app: typer.Typer) -> None:
    @gate_app.command("mode-switch", help=MODE_SWITCH_HELP)
    @og.with_option_groups
    def mode_switch(
        to: str = typer.Option(..., "--to", help="Target mode: nftables | iptables | ipvs."),
        phase: str = typer.Option("pre-switch", "--phase", help="pre-switch | post-switch."),
        baseline: str = typer.Option(None, "--baseline", metavar="FILE", help=(
            "post-switch: the baseline the pre-switch phase wrote (--write-baseline).")),
        write_baseline: str = typer.Option(None, "--write-baseline", metavar="FILE", help=(
            "pre-switch: write each node's mode and view per Service to FILE (JSON) for --phase post-switch.")),
        bundle: str = og.BUNDLE,
        snapshot: str = og.SNAPSHOT,
        demo: bool = og.DEMO,
        api: og.ApiFlags = og.LIVE_API,
        transport: str = typer.Option(None, "--transport", help=(
            "Live API: how to reach the nodes: kube-exec | pod | ssh | local (local: with --node NAME).")),
        node: str = typer.Option(None, "--node", help="--transport local: the node this machine is."),
        timeout: float = og.TIMEOUT,
        ssh: og.SshFlags = og.SSH,
        fmt: str = typer.Option("console", "-o", "--output", "--format", help="console | json | junit."),
        output: str = typer.Option(None, "-f", "--output-file", metavar="FILE", help=OUTPUT_FILE_HELP),
        show_plan: bool = og.show_plan_option("rollout plan"),
    ) -> None:
        import os

        from kpdoctor.cluster.kube_proxy_node import is_proxy_mode
        from kpdoctor.demo import __file__ as demo_init
        from kpdoctor.errors import InputError
        from kpdoctor.gate.mode_switch import TARGETS, run_mode_switch
        from kpdoctor.gate.render import FORMATS, render
        from kpdoctor.gate.sources import from_bundle, from_snapshot

        if fmt not in FORMATS:
            raise InputError(format_error(fmt, FORMATS))
        if not is_proxy_mode(to):  # TARGETS: the proxy modes, in the order --help shows them
            raise InputError(f"--to {to!r}: choose from {', '.join(TARGETS)}")
        if phase not in ("pre-switch", "post-switch"):
            raise InputError(f"--phase {phase!r}: choose from pre-switch, post-switch")
        if phase == "post-switch" and not baseline:
            raise InputError("--phase post-switch needs --baseline FILE (written by --phase pre-switch "
                             "--write-baseline FILE)")
        if baseline and phase != "post-switch" or write_baseline and phase != "pre-switch":
            raise InputError("--baseline goes with --phase post-switch, --write-baseline with --phase pre-switch")
        offline = sum(bool(x) for x in (bundle, snapshot, demo))
        if offline > 1 or offline == 0 and not transport:
            raise InputError("give exactly one of --bundle PATH, --snapshot DIR, --demo, or the live API with "
                             "--transport kube-exec|pod|ssh|local")
        if offline and (transport or node or api.kubeconfig or api.context):
            raise InputError("--kubeconfig/--context/--transport/--node read the live API; not with --bundle, "
                             "--snapshot or --demo")
        if demo:
            bundle = os.path.join(os.path.dirname(demo_init), "bundle")
        if not offline:
            from kpdoctor.commands.nodeflags import NodeFlags, node_collect_options
            from kpdoctor.gate.mode_live import check_transport, from_live_nodes

            check_transport(transport, node)
            options = node_collect_options(NodeFlags(transport, None, ssh, timeout), api)
            source = from_live_nodes(api.kubeconfig, api.context, options, node=node)
        else:
            source = from_bundle(bundle) if bundle else from_snapshot(snapshot)
        notes = source.notes if snapshot is None else (
            "a snapshot holds no node facts: kernel readiness cannot be proven (use a bundle)",)
        from dataclasses import replace

        shown_source = "demo bundle" if demo else source.source
        if phase == "post-switch":
            from kpdoctor.gate.mode_baseline import read_baseline
            from kpdoctor.gate.mode_post import run_post_switch

            base = read_baseline(baseline)
            if base.target != to:
                raise InputError(f"the baseline was written for --to {base.target}, not {to}", where=baseline)
            result = run_post_switch(source.cluster, source.nodes, target=to, baseline=base)
        else:
            result = run_mode_switch(source.cluster, source.nodes, target=to)
            if write_baseline:
                from kpdoctor.gate.mode_baseline import make_baseline
                from kpdoctor.gate.mode_baseline import write_baseline as write

                write(write_baseline, make_baseline(source.cluster, source.nodes, to, shown_source))
        result = replace(result, source=shown_source, notes=notes)
        text = render(fmt, result, show_plan=show_plan)
        if output:
            write_gate_report(result, fmt, output, text)
        else:
            sys.stdout.write(text)
            sys.stdout.flush()
        raise typer.Exit(result.exit_code)
