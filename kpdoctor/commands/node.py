"""`kpdoctor node <name>`: collect one node's dataplane facts, show them, and run the node-scope checks.

The checks run through `kpdoctor.scanner.scan` (handed the collected node via `ScanRequest.collected`), so
`kpdoctor node X` and `kpdoctor scan --nodes X --checks scope:node` give the same findings; `--facts-json`
prints the bare NodeState (what `-o json` printed before the checks were wired in).

The flags shared with `collect`, `scan` and `why` (SSH, probe, silences; transport to CollectOptions) are
defined once in kpdoctor/commands/optgroups.py and nodeflags.py.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import typer

from kpdoctor.commands import optgroups as og
from kpdoctor.commands.nodeflags import TRANSPORT_HELP, NodeFlags, kube_exec_api, load_cluster, options_from
from kpdoctor.commands.options import format_error


def state_to_dict(state: Any) -> dict[str, Any]:
    return {
        "name": state.name,
        "transport": state.transport,
        "address": state.address,
        "error": state.error,
        "collected_at": state.collected_at,
        "summary": state.summary().to_dict(),
        "facts": {
            k: {
                "content": f.content, "source": f.source, "exit_code": f.exit_code, "stderr": f.stderr,
                "duration": f.duration, "error": f.error, "truncated": f.truncated,
            }  # fmt: skip
            for k, f in state.facts.items()
        },
    }


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB"):
        if n < 1024 or unit == "MiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def print_state(state: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    from kpdoctor.commands.terminal import rich_color_args
    from kpdoctor.report.console_text import inert as t  # node text: no markup, no control/bidi characters

    console = Console(**rich_color_args())  # type: ignore[arg-type]
    head = f"[bold]node {t(state.name)}[/bold]  transport={t(state.transport)}"
    if state.address:
        head += f"  address={t(state.address)}"
    if state.collected_at:
        head += f"  collected={t(state.collected_at)}"
    console.print(head)
    if state.error:
        console.print(f"[red]error: {t(state.error)}[/red]")
    if state.facts:
        s = state.summary()
        rows = [
            ("kernel", s.kernel or "?"),
            ("iptables", f"{s.iptables_version or '?'} ({s.iptables_backend or 'unknown backend'})"),
            ("KUBE-* chains in", ", ".join(s.backends_with_kube_chains) or "none"),
            ("kube-proxy rules in", ", ".join(s.backends_with_kube_proxy_rules) or "none"),
            ("iptables-wrappers would pick", f"{s.wrapper_mode or '?'} ({s.wrapper_reason})"),
            ("legacy tables loaded", ", ".join(s.legacy_tables_loaded) or "none"),
            ("IPVS", f"{'available' if s.ipvs_available else 'unknown' if s.ipvs_available is None else 'absent'}"
                     f" ({s.ipvs_evidence})"),
            ("nft tables", ", ".join(s.nft_tables) or "none"),
            ("host firewall", ", ".join(s.host_firewall) or "none seen"),
            ("kube-proxy answered", ", ".join(k for k, v in s.kube_proxy_surfaces.items() if v) or "nothing"),
            ("proxyMode / healthy", f"{s.proxy_mode or '-'} / {s.healthz_healthy}"),
            ("sysctls", ", ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in s.sysctls.items()) or "-"),
            ("conntrack towards Services", "-" if s.conntrack_service_entries is None
             else str(s.conntrack_service_entries)),
        ]  # fmt: skip
        table = Table(show_header=False, box=None, pad_edge=False)
        for key, value in rows:
            table.add_row(f"[cyan]{key}[/cyan]", t(value))
        console.print(table)
        facts = Table(title="facts", show_lines=False)
        for col in ("file", "status", "size", "time", "source / note"):
            facts.add_column(col)
        for key, f in sorted(state.facts.items()):
            if f.content is None:
                status = "[yellow]absent[/yellow]"
            elif f.content == "":
                status = "empty"
            else:
                status = "[green]ok[/green]" + (" [yellow](capped)[/yellow]" if f.truncated else "")
            note = t(f.source) + (f"  [yellow]{t(f.error)}[/yellow]" if f.error else "")
            size = _size(len(f.content.encode("utf-8", "replace"))) if f.content is not None else "-"
            facts.add_row(t(key), status, size, f"{f.duration:.2f}s", note)
        console.print(facts)


NODE_HELP = (
    "Collect one node's dataplane facts (rules, kernel, kube-proxy surfaces), show what was collected, and run "
    "the node-scope checks on it (the same pipeline as `kpdoctor scan`). Read-only, except the opt-in --probe.\n\n"
    "The checks need the cluster (Services, EndpointSlices, kube-proxy's ConfigMap): from --bundle's cluster/, "
    "--snapshot DIR, or the live API (--kubeconfig/--context; also used for ssh without --address and for "
    "kube-exec). Without a cluster only the collected facts are shown.\n\n"
    "-o picks the report format like `kpdoctor scan`; --facts-json prints the collected NodeState as JSON "
    "instead (no checks). Exit codes: 0 nothing at/above --fail-on; 1 findings at/above it; 2 bad input; 3 the "
    "node could not be reached."
)
REPORT_FORMATS = ("console", "json", "junit", "markdown", "html")


def register(app: typer.Typer) -> None:
    @app.command("node", help=NODE_HELP)
    @og.with_option_groups
    def node(
        name: str = typer.Argument(..., help="Node name (as in the cluster / bundle)."),
        transport: str = typer.Option(None, "--transport", help=TRANSPORT_HELP + " Default: bundle with --bundle, else ssh."),
        snapshot: str = typer.Option(None, "--snapshot", help="Cluster snapshot directory (instead of the live API)."),
        bundle: str = typer.Option(None, "--bundle", help="Read the node from a bundle directory or .tar.gz."),
        api: og.ApiFlags = og.KUBECONFIG,
        address: str = typer.Option(None, "--address", help="Connect here instead of the Node's InternalIP."),
        ssh: og.SshFlags = og.SSH,
        timeout: float = og.TIMEOUT,
        concurrency: int = typer.Option(32, "--concurrency", help="Nodes collected at once (commands visiting many nodes)."),
        fmt: str = typer.Option("console", "-o", "--output", "--format", help="Report: console | json | junit | markdown | html ('text' = console)."),
        output: str = og.OUTPUT_FILE,
        facts_json: bool = typer.Option(False, "--facts-json", help="Print the collected NodeState as JSON instead (no checks run)."),
        result_json: bool = typer.Option(False, "--result-json", help="Print the node checks' compact result "
                                         "(kpdoctor-node-result/v1, what `scan --analyze-in-pod` reads back) instead of a report."),
        checks: str = typer.Option(None, "--checks", help="Only these node checks: ids, tag:<tag>."),
        skip: str = typer.Option(None, "--skip", help="Not these: ids, tag:<tag>."),
        fail_on: str = typer.Option(None, "--fail-on", help="info | warning | error | critical (default error)."),
        silence: og.SilenceFlags = og.SILENCES,
        probe: bool = typer.Option(False, "--probe", help="Opt-in: TCP-connect to the cluster's NodePorts on this node's InternalIP from here."),
        probe_flags: og.ProbeFlags = og.PROBE,
        pod: og.PodFlags = og.POD,
    ) -> None:
        from kpdoctor.errors import InputError, UnreachableError
        from kpdoctor.node.collect import collect_node

        fmt = "console" if fmt == "text" else fmt
        if fmt not in REPORT_FORMATS:
            raise InputError(format_error(fmt, REPORT_FORMATS) + " (--facts-json for the NodeState)")
        if output in ("text", *REPORT_FORMATS):
            raise InputError(f"--output-file names the report FILE; for the format use -o {output}")
        if snapshot and bundle:
            raise InputError("use either --snapshot or --bundle, not both")
        if facts_json and (probe or output):
            raise InputError("--facts-json prints the collected NodeState to stdout; it runs no checks, no probe "
                             "and writes no report")
        if result_json and (facts_json or probe or output or fmt != "console"):
            raise InputError("--result-json prints the node result to stdout: no -o, --output-file, --facts-json or --probe")
        chosen = transport or ("bundle" if bundle else "ssh")
        flags = NodeFlags(transport, address, ssh, timeout, concurrency)
        pod.validate(transport)
        if pod.analyze_in_pod:  # kpdoctor.inpod, one node
            from kpdoctor.commands.node_inpod import node_in_pod, refuse_with

            refuse_with(bundle=bundle, snapshot=snapshot, address=address, facts_json=facts_json,
                        result_json=result_json, probe=probe)  # fmt: skip
            node_in_pod(name, pod=pod, flags=flags, api=api, setup=_check_setup(checks, skip, fail_on, silence),
                        fmt=fmt, output=output)  # fmt: skip
        # everything that can be wrong with the flags fails here, before any node or API is contacted
        selected: list[Any] = []
        silences, threshold, probe_options = (None, None, None)
        need_live = not snapshot and not bundle and (
            chosen in ("kube-exec", "pod") or (chosen == "ssh" and not address) or bool(api.kubeconfig or api.context)
        )
        # Issue 12: with a kubeconfig in the environment, `node` reads the live API on its own; if that API
        # cannot be reached the node's facts are still shown and the checks say why they did not run.
        implicit_live = False
        if not need_live and not snapshot and not bundle and chosen != "bundle" and not facts_json:
            from kpdoctor.cluster.live import kubeconfig_available

            need_live = implicit_live = kubeconfig_available()
        # Without a cluster source the checks a node's own facts allow still run (kpdoctor.node_only).
        if not facts_json:
            selected, silences, threshold = _check_setup(checks, skip, fail_on, silence)
            probe_options = probe_flags.options() if probe else None
        cluster, live = (None, None)
        if chosen == "bundle":
            from kpdoctor.node.bundle import read_bundle

            if not bundle:
                raise InputError("--transport bundle needs --bundle PATH")
            opened = read_bundle(bundle)
            state = opened.node_state(name)
            if not facts_json and opened.has_cluster():
                cluster = opened.cluster_state()
            elif not facts_json:
                from kpdoctor.node_only import cluster_missing_error

                problem = cluster_missing_error(opened.manifest, opened.error)
                if problem:
                    raise InputError(problem, where=str(bundle))
        else:
            try:
                cluster, live = load_cluster(snapshot=snapshot, bundle=bundle, api=api, live=need_live)
            except UnreachableError as exc:
                if not implicit_live:
                    raise
                print(f"kpdoctor node: live API not used: {exc}", file=sys.stderr)
            if cluster is not None and cluster.nodes and name not in cluster.node_by_name:
                known = ", ".join(sorted(cluster.node_by_name)[:20])
                raise InputError(f"node {name!r} not found in the cluster (nodes: {known})")
            if chosen == "ssh" and not address and cluster is None:
                raise InputError("ssh needs the node's address: pass --address, --snapshot DIR or a kubeconfig")
            kube_api = kube_exec_api(chosen, api)
            options = options_from(flags, transport=chosen, bundle=bundle, kube_api=kube_api)
            if chosen == "pod":  # --collector-image, and earlier runs' expired collector pods deleted
                from kpdoctor.node.podcollect import prepare

                options = prepare(options, pod.collector_image)
            state = collect_node(name, cluster=cluster, options=options)
        unreachable = bool(state.error and not state.facts)
        if facts_json:
            json.dump(state_to_dict(state), sys.stdout, indent=1)
            sys.stdout.write("\n")
            if unreachable:
                raise UnreachableError(state.error, where=f"node {name}")
            return
        if fmt == "console" and not result_json:
            print_state(state)
        if cluster is None:  # node facts only: the checks those allow run, the others are listed as not evaluated
            from kpdoctor.node_only import node_only_cluster

            cluster = node_only_cluster(f"node {name} ({chosen}), no cluster objects")
        from kpdoctor.commands.report_output import emit_report
        from kpdoctor.engine import ListNodes
        from kpdoctor.report.model import SourceInfo
        from kpdoctor.scanner import ScanRequest, scan

        if chosen == "bundle" or bundle:
            kind, location = "bundle", str(bundle)
        elif snapshot:
            kind, location = "snapshot", str(snapshot)
        else:
            kind, location = "live", (cluster.source or api.context or "current context")
        req = ScanRequest(fail_on=threshold, probe=probe, probe_options=probe_options,
                          collected=(cluster, ListNodes([state]), SourceInfo(kind, location, chosen)))
        outcome = scan(req, silences=silences, checks_override=selected)
        if result_json:  # the node side of `scan --analyze-in-pod` (kpdoctor.inpod): exit 0 once written
            from kpdoctor.noderesult import encode

            json.dump(encode(outcome.result, name), sys.stdout, separators=(",", ":"))
            sys.stdout.write("\n")
            return
        if fmt == "console" and not output:
            print()
        emit_report(outcome, fmt, output)
        if unreachable:
            raise UnreachableError(state.error, where=f"node {name}")
        raise typer.Exit(outcome.exit_code)


def _check_setup(checks: str | None, skip: str | None, fail_on: str | None,
                 silence: og.SilenceFlags) -> tuple[list[Any], Any, Any]:
    """(node checks, silences, --fail-on threshold) from the flags; InputError when bad."""
    from kpdoctor.errors import InputError
    from kpdoctor.findings import Severity
    from kpdoctor.registry import discover

    try:
        threshold = Severity.parse(fail_on) if fail_on else Severity.ERROR
    except ValueError as exc:
        raise InputError(f"--fail-on: {exc}") from None
    registry = discover()
    selected = [c for c in registry.select(checks, skip) if c.scope == "node"]
    if not selected:
        raise InputError("--checks/--skip leave no node-scope check to run (`kpdoctor node` runs node checks; "
                         "cluster checks run in `kpdoctor scan`)")
    silences = silence.load()
    if silences is not None:
        silences.validate_checks(registry.ids())
    return selected, silences, threshold
