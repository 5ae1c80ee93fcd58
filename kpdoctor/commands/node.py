"""`kpdoctor node <name>`: collect one node's dataplane facts and show what was collected.

The shared flag definitions (transport, SSH, timeouts) live here too so that
`kpdoctor collect` (and later `scan`) spell them identically.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

TRANSPORT_HELP = "How to reach the node: local | ssh | kube-exec | bundle."


@dataclass
class NodeFlags:
    transport: str | None
    address: str | None
    ssh_user: str | None
    ssh_key: list[str]
    ssh_port: int | None
    ssh_config: str | None
    jump_host: str | None
    known_hosts: str | None
    accept_new_host_keys: bool
    timeout: float
    concurrency: int


def options_from(flags: NodeFlags, *, transport: str, bundle: str | None, kube_api: Any = None) -> Any:
    from kpdoctor.errors import InputError
    from kpdoctor.node.collect import TRANSPORTS, CollectOptions
    from kpdoctor.node.ssh import SshOptions

    if transport not in TRANSPORTS:
        raise InputError(f"--transport {transport!r}: choose from {', '.join(TRANSPORTS)}")
    if flags.timeout <= 0:
        raise InputError("--timeout must be positive (seconds per node)")
    if flags.concurrency < 1:
        raise InputError("--concurrency must be at least 1")
    if flags.ssh_port is not None and not 0 < flags.ssh_port < 65536:
        raise InputError(f"--ssh-port {flags.ssh_port}: not a TCP port")
    for key in flags.ssh_key:
        if not Path(key).expanduser().is_file():
            raise InputError("no such key file", where=f"--ssh-key {key}")
    ssh = SshOptions(
        user=flags.ssh_user,
        key_files=tuple(str(Path(k).expanduser()) for k in flags.ssh_key),
        port=flags.ssh_port,
        config_path=flags.ssh_config,
        jump_host=flags.jump_host,
        known_hosts=str(Path(flags.known_hosts).expanduser()) if flags.known_hosts else None,
        accept_new_host_keys=flags.accept_new_host_keys,
        connect_timeout=min(15.0, flags.timeout),
    )
    return CollectOptions(
        transport=transport, address=flags.address, ssh=ssh, timeout=flags.timeout,
        concurrency=flags.concurrency, bundle=bundle, kube_api=kube_api,
    )  # fmt: skip


def load_cluster(
    *, snapshot: str | None, bundle: str | None, kubeconfig: str | None, context: str | None, live: bool
) -> tuple[Any, Any]:
    """(ClusterState or None, LiveResult or None) from --snapshot, a bundle's cluster/, or the live API."""
    if snapshot:
        from kpdoctor.cluster.snapshot import load_snapshot

        return load_snapshot(snapshot), None
    if bundle:
        from kpdoctor.node.bundle import read_bundle

        opened = read_bundle(bundle)
        return (opened.cluster_state() if opened.has_cluster() else None), None
    if live:
        from kpdoctor.cluster.live import load_live

        result = load_live(kubeconfig, context)
        return result.state, result
    return None, None


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

    console = Console()
    head = f"[bold]node {state.name}[/bold]  transport={state.transport}"
    if state.address:
        head += f"  address={state.address}"
    if state.collected_at:
        head += f"  collected={state.collected_at}"
    console.print(head)
    if state.error:
        console.print(f"[red]error: {state.error}[/red]")
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
            table.add_row(f"[cyan]{key}[/cyan]", value)
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
            note = f.source + (f"  [yellow]{f.error}[/yellow]" if f.error else "")
            size = _size(len(f.content.encode())) if f.content is not None else "-"
            facts.add_row(key, status, size, f"{f.duration:.2f}s", note)
        console.print(facts)


def register(app: typer.Typer) -> None:
    @app.command("node")
    def node(
        name: str = typer.Argument(..., help="Node name (as in the cluster / bundle)."),
        transport: str = typer.Option(None, "--transport", help=TRANSPORT_HELP + " Default: bundle with --bundle, else ssh."),
        snapshot: str = typer.Option(None, "--snapshot", help="Cluster snapshot directory (instead of the live API)."),
        bundle: str = typer.Option(None, "--bundle", help="Read the node from a bundle directory or .tar.gz."),
        kubeconfig: str = typer.Option(None, "--kubeconfig", help="kubeconfig file (default $KUBECONFIG, ~/.kube/config)."),
        context: str = typer.Option(None, "--context", help="kubeconfig context."),
        address: str = typer.Option(None, "--address", help="Connect here instead of the Node's InternalIP."),
        ssh_user: str = typer.Option(None, "--ssh-user", help="SSH user (default: ~/.ssh/config, then $USER)."),
        ssh_key: list[str] = typer.Option([], "--ssh-key", help="SSH private key (repeatable); agent and ~/.ssh keys also tried."),  # noqa: B008
        ssh_port: int = typer.Option(None, "--ssh-port", help="SSH port (default: ~/.ssh/config, then 22)."),
        ssh_config: str = typer.Option(None, "--ssh-config", help="ssh_config file (default ~/.ssh/config)."),
        jump_host: str = typer.Option(None, "--jump-host", help="Jump host [user@]host[:port] (or ProxyJump in ssh config)."),
        known_hosts: str = typer.Option(None, "--known-hosts", help="known_hosts file (default ~/.ssh/known_hosts)."),
        accept_new_host_keys: bool = typer.Option(False, "--accept-new-host-keys", help="Accept and record unknown host keys (changed keys are still refused)."),
        timeout: float = typer.Option(120.0, "--timeout", help="Seconds per node, connect included."),
        concurrency: int = typer.Option(32, "--concurrency", help="Nodes collected at once (commands visiting many nodes)."),
        output: str = typer.Option("text", "-o", "--output", help="text | json (the NodeState)."),
    ) -> None:
        """Collect one node's dataplane facts (rules, kernel, kube-proxy surfaces) and show them. Read-only."""
        from kpdoctor.errors import InputError, UnreachableError
        from kpdoctor.node.collect import collect_node

        if output not in ("text", "json"):
            raise InputError(f"-o {output!r}: choose text or json")
        if snapshot and bundle:
            raise InputError("use either --snapshot or --bundle, not both")
        chosen = transport or ("bundle" if bundle else "ssh")
        flags = NodeFlags(transport, address, ssh_user, ssh_key, ssh_port, ssh_config, jump_host, known_hosts,
                          accept_new_host_keys, timeout, concurrency)  # fmt: skip
        need_live = not snapshot and not bundle and (
            chosen == "kube-exec" or (chosen == "ssh" and not address) or bool(kubeconfig or context)
        )
        cluster, live = (None, None)
        if chosen != "bundle":
            cluster, live = load_cluster(snapshot=snapshot, bundle=bundle, kubeconfig=kubeconfig, context=context,
                                         live=need_live)  # fmt: skip
            if cluster is not None and cluster.nodes and name not in cluster.node_by_name:
                known = ", ".join(sorted(cluster.node_by_name)[:20])
                raise InputError(f"node {name!r} not found in the cluster (nodes: {known})")
            if chosen == "ssh" and not address and cluster is None:
                raise InputError("ssh needs the node's address: pass --address, --snapshot DIR or a kubeconfig")
        kube_api = None
        if chosen == "kube-exec":
            from kubernetes import client

            from kpdoctor.cluster.live import api_client

            kube_api = client.CoreV1Api(api_client(kubeconfig, context))
        options = options_from(flags, transport=chosen, bundle=bundle, kube_api=kube_api)
        state = collect_node(name, cluster=cluster, options=options)
        if output == "json":
            json.dump(state_to_dict(state), sys.stdout, indent=1)
            sys.stdout.write("\n")
        else:
            print_state(state)
        if state.error and not state.facts:
            raise UnreachableError(state.error, where=f"node {name}")
