"""`kpdoctor trace`: follow one packet through a node's real rules, offline (docs/trace.md)."""

from __future__ import annotations

import sys
from typing import Any

import typer

from kpdoctor.commands import optgroups as og
from kpdoctor.commands.nodeflags import NodeFlags

PROTOS = ("tcp", "udp", "sctp")
STATES = ("new", "established")


def register(app: typer.Typer) -> None:
    @app.command("trace")
    @og.with_option_groups
    def trace(  # noqa: PLR0913
        node: list[str] = typer.Option([], "--node", "--nodes", help="The node whose rules the packet meets. "  # noqa: B008
                                       "--matrix: only these nodes (repeatable, comma-separated, globs)."),
        src: str = typer.Option(None, "--from", help="IP[:PORT], pod/NS/NAME, node/NAME, external."),
        dst: str = typer.Option(..., "--to", help="IP:PORT, svc/NS/NAME[:PORT], node/NAME:PORT, pod/NS/NAME:PORT."),
        bundle: str = typer.Option(None, "--bundle", help="Bundle directory or .tar.gz holding the node."),
        demo: bool = typer.Option(False, "--demo", help="Use the bundled demo (kpdoctor/demo/bundle)."),
        snapshot: str = typer.Option(None, "--snapshot", help="Cluster from this snapshot directory (needs "
                                     "--transport to read the node)."),
        api: og.ApiFlags = og.LIVE_API,
        transport: str = typer.Option(None, "--transport", help="With --snapshot or the live API: how to read "
                                      "the node's rules: local | ssh | kube-exec | pod."),
        node_selector: str = og.NODE_SELECTOR,
        concurrency: int = og.CONCURRENCY,
        timeout: float = og.TIMEOUT,
        ssh: og.SshFlags = og.SSH,
        proto: str = typer.Option(None, "--proto", help="tcp | udp | sctp (default: the Service port's, else tcp)."),
        state: str = typer.Option("new", "--state", help="new | established (the nat table sees only new)."),
        in_interface: str = typer.Option(None, "--in-interface", help="Interface the packet arrives on."),
        mark: str = typer.Option("0", "--mark", help="Packet mark when it enters (e.g. 0x4000)."),
        fmt: str = typer.Option("text", "-o", "--output", "--format", help="text | json."),
        explain: bool = typer.Option(False, "--explain", help="Add sentences naming the cause of each outcome."),
        matrix: bool = typer.Option(False, "--matrix", "--all-endpoints",
                                    help="For the Service of --to: every node x frontend x client (outside, a pod, "
                                         "the node) in one table."),
    ) -> None:
        """Follow one packet through NODE's real rules (iptables, nftables, IPVS): every matching rule with
        its file:line, jumps, the chance of each endpoint, NAT, marks, and the final verdict (docs/trace.md)."""
        from kpdoctor.errors import InputError
        from kpdoctor.trace.addresses import resolve
        from kpdoctor.trace.names import named_objects
        from kpdoctor.trace.render import render_json, render_text
        from kpdoctor.trace.run import TraceRequest, run_trace

        if bundle is not None and demo or (bundle is not None or demo) and (snapshot or transport):
            raise InputError("give one of --bundle B, --demo, or --snapshot DIR / the live API with --transport")
        if proto is not None and proto.lower() not in PROTOS:
            raise InputError(f"--proto {proto!r}: choose from {', '.join(PROTOS)}")
        if state.lower() not in STATES:
            raise InputError(f"--state {state!r}: choose from {', '.join(STATES)}")
        if fmt not in ("text", "json"):
            from kpdoctor.commands.options import format_error

            raise InputError(format_error(fmt, ("text", "json")))
        try:
            mark_value = int(mark, 0)
        except ValueError:
            raise InputError(f"--mark {mark!r}: not a number (e.g. 0x4000)") from None
        if not 0 <= mark_value <= 0xFFFFFFFF:
            raise InputError(f"--mark {mark!r}: out of the 32-bit range")
        # --matrix: every --node (comma-separated too); a trace: the last --node, as when it took one value
        nodes = [n.strip() for item in node for n in item.split(",") if n.strip()] if matrix else node[-1:]
        if not matrix and (not nodes or "," in nodes[0] or src is None):
            raise InputError("give --node NAME (one) and --from (or --matrix with --to svc/NS/NAME)")
        if node_selector and not matrix:
            raise InputError("--node-selector chooses the nodes of --matrix; a trace follows one --node")
        flags = NodeFlags(transport, None, ssh, timeout, concurrency)
        source = _open(bundle, demo, snapshot, api, flags, nodes, node_selector, matrix, named_objects((src, dst)))
        cluster = source.cluster
        if matrix:
            _matrix(source, cluster, dst, fmt)
            return
        node_state = source.node_state(nodes[0])
        origin = resolve(src, cluster, "--from")
        family = 6 if ":" in origin.address else 4
        target = resolve(dst, cluster, "--to", family)
        if target.port is None:
            raise InputError(f"--to {dst!r}: give a port (IP:PORT, svc/NS/NAME[:PORT], node/NAME:PORT)")
        req = TraceRequest(nodes[0], origin, target, (proto or target.proto or "tcp").lower(), state=state.upper(),
                           iif=in_interface, mark=mark_value)
        result = run_trace(req, node_state, cluster)
        if fmt == "json":
            sys.stdout.write(render_json(result) + "\n")
        else:
            from kpdoctor.commands.terminal import use_color

            use_colour = use_color(sys.stdout)
            sys.stdout.write(render_text(result, colour=use_colour, show_explain=explain))


def _open(bundle: str | None, demo: bool, snapshot: str | None, api: Any, flags: NodeFlags, nodes: list[str],
          node_selector: str, many: bool, named: Any) -> Any:
    """The TraceSource; for a bundle with --matrix, only the nodes --node / --node-selector choose."""
    from kpdoctor.commands.trace_source import TraceSource, from_bundle, from_cluster

    if bundle is not None or demo:
        import os

        from kpdoctor.demo import __file__ as demo_init

        opened = from_bundle(bundle if bundle is not None else os.path.join(os.path.dirname(demo_init), "bundle"),
                             named)
        if not many or opened.cluster is None:
            return opened
        from kpdoctor.scanner import select_nodes

        chosen = select_nodes(opened.cluster, nodes, node_selector, opened.node_names())
        return TraceSource(opened.cluster, lambda: chosen, opened.node_state, live=False)
    from kpdoctor.commands.nodeflags import node_collect_options

    return from_cluster(snapshot=snapshot, kubeconfig=api.kubeconfig, context=api.context, transport=flags.transport,
                        nodes=nodes, node_selector=node_selector, many=many,
                        collect_options=node_collect_options(flags, api), named=named)


def _matrix(source: Any, cluster: Any, dst: str, fmt: str) -> None:
    import json

    from kpdoctor.errors import InputError
    from kpdoctor.trace.matrix import is_not_collected, matrix, render_matrix

    kind, _, rest = dst.partition("/")
    if kind not in ("svc", "service") or cluster is None:
        raise InputError(f"--matrix needs --to svc/NAMESPACE/NAME[:PORT] and a bundle with cluster/ (got {dst!r})")
    key, _, port = rest.partition(":")
    svc = cluster.service_by_key.get(key)
    if svc is None:
        raise InputError(f"--to {dst!r}: no Service {key} in the cluster state")
    states = {n: source.node_state(n) for n in source.node_names()}
    cells = matrix(cluster, svc, port or None, states)
    if fmt == "json":
        # one cell a line: json's C encoder (indent= would select the pure-Python one, 5 s on 600 big cells)
        sys.stdout.write("[\n" + ",\n".join(json.dumps(c.__dict__) for c in cells) + "\n]\n")
    else:
        sys.stdout.write(render_matrix(cells))
    if cells and all(is_not_collected(c) for c in cells):
        raise typer.Exit(3)  # as `kpdoctor scan`: every requested node could not be read
