"""`kpdoctor collect`: write a bundle (cluster snapshot + node facts) for offline analysis.

Read-only on the cluster and the nodes. Secrets never enter the bundle, and
kubeconfig credentials, PEM blocks and tokens are redacted (see
kpdoctor/node/redact.py). Ctrl-C writes what was collected so far.
"""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path
from typing import Any

import typer

from kpdoctor.commands.node import TRANSPORT_HELP, NodeFlags, load_cluster, options_from


def snapshot_objects(directory: str) -> dict[str, list[dict[str, Any]]]:
    """Raw objects of a snapshot directory grouped by bundle file (services, endpointslices, ...).

    ServiceCIDRs get a file only when the snapshot has some: an empty servicecidrs.json would
    claim "the cluster has none", which a snapshot without them does not know.
    """
    from kpdoctor.cluster.snapshot import SNAPSHOT_SUFFIXES, _parse_documents, iter_objects
    from kpdoctor.node.bundle import CLUSTER_FILES
    from kpdoctor.safeio import read_regular

    by_kind = {"Service": "services", "EndpointSlice": "endpointslices", "Node": "nodes", "ConfigMap": "configmaps",
               "DaemonSet": "daemonsets", "Pod": "pods", "ServiceCIDR": "servicecidrs"}  # fmt: skip
    grouped: dict[str, list[dict[str, Any]]] = {k: [] for k in CLUSTER_FILES}
    for path in sorted(Path(directory).iterdir()):
        if not (path.is_file() and path.suffix in SNAPSHOT_SUFFIXES):
            continue
        data = read_regular(path)  # bounded, no symlink, no FIFO
        if data is None:
            continue
        for doc in _parse_documents(data.decode("utf-8", errors="replace"), str(path)):
            for obj in iter_objects(doc, str(path)):
                bucket = by_kind.get(str(obj.get("kind")))
                if bucket:
                    grouped[bucket].append(obj)
    if not grouped.get("servicecidrs"):
        grouped.pop("servicecidrs", None)
    return grouped


def register(app: typer.Typer) -> None:
    @app.command("collect")
    def collect(
        out: str = typer.Option(..., "-o", "--output", help="Bundle to write: a new directory, or a path ending .tar.gz."),
        node: list[str] = typer.Option([], "--node", help="Node to collect (repeatable). Default: every Node of the cluster."),  # noqa: B008
        no_nodes: bool = typer.Option(False, "--no-nodes", help="Write only the cluster snapshot."),
        transport: str = typer.Option(None, "--transport", help=TRANSPORT_HELP + " Default ssh (local with no cluster)."),
        snapshot: str = typer.Option(None, "--snapshot", help="Use this snapshot directory instead of the live API."),
        kubeconfig: str = typer.Option(None, "--kubeconfig", help="kubeconfig file (default $KUBECONFIG, ~/.kube/config)."),
        context: str = typer.Option(None, "--context", help="kubeconfig context."),
        offline: bool = typer.Option(False, "--offline", help="Do not contact the API (local node facts only)."),
        address: str = typer.Option(None, "--address", help="Address of the single --node (overrides InternalIP)."),
        ssh_user: str = typer.Option(None, "--ssh-user"),
        ssh_key: list[str] = typer.Option([], "--ssh-key"),  # noqa: B008
        ssh_port: int = typer.Option(None, "--ssh-port"),
        ssh_config: str = typer.Option(None, "--ssh-config"),
        jump_host: str = typer.Option(None, "--jump-host"),
        known_hosts: str = typer.Option(None, "--known-hosts"),
        accept_new_host_keys: bool = typer.Option(False, "--accept-new-host-keys"),
        timeout: float = typer.Option(120.0, "--timeout", help="Seconds per node, connect included."),
        concurrency: int = typer.Option(32, "--concurrency", help="Nodes collected at once."),
    ) -> None:
        """Write a bundle (docs/bundle.md): cluster snapshot, kube-proxy logs and each node's facts. Read-only."""
        from kpdoctor.errors import InputError, UnreachableError
        from kpdoctor.node.bundle import write_bundle
        from kpdoctor.node.collect import collect_nodes
        from kpdoctor.node.fanout import Interrupted, default_reporter

        if Path(out).exists() and (not Path(out).is_dir() or any(Path(out).iterdir())):
            raise InputError("output exists; choose a new path", where=out)
        cluster, live = load_cluster(snapshot=snapshot, bundle=None, kubeconfig=kubeconfig, context=context,
                                     live=not snapshot and not offline)  # fmt: skip
        chosen = transport or ("ssh" if cluster is not None else "local")
        if chosen == "bundle":
            raise InputError("collect writes a bundle; --transport bundle is for reading one")
        names = list(node)
        if not names and not no_nodes:
            if chosen == "local":
                names = [socket.gethostname()]
            elif cluster is not None:
                names = sorted(cluster.node_by_name)
        if no_nodes:
            names = []
        kube_api = None
        if chosen == "kube-exec":
            from kubernetes import client

            from kpdoctor.cluster.live import api_client

            kube_api = client.CoreV1Api(api_client(kubeconfig, context))
        flags = NodeFlags(transport, address, ssh_user, ssh_key, ssh_port, ssh_config, jump_host, known_hosts,
                          accept_new_host_keys, timeout, concurrency)  # fmt: skip
        options = options_from(flags, transport=chosen, bundle=None, kube_api=kube_api)
        interrupted = False
        states: dict[str, Any] = {}
        if names:
            try:
                states = collect_nodes(names, cluster=cluster, options=options, reporter=default_reporter())
            except Interrupted as exc:
                states = exc.partial
                interrupted = True
        if live is not None:
            objects, logs, source = live.objects, live.logs, live.server
            gaps = [(g.kind, g.reason) for g in live.gaps]
        elif snapshot:
            objects, logs, source = snapshot_objects(snapshot), dict(cluster.logs), snapshot
            gaps = []
        else:
            objects, logs, source, gaps = None, {}, "", []
        if objects is not None:
            from kpdoctor.cluster.bundle_scope import scope_objects

            objects = scope_objects(objects)  # only the ConfigMaps the checks read (issue 9: no secrets)
        path = write_bundle(out, nodes=states, cluster_objects=objects, logs=logs, cluster_source=source, gaps=gaps)
        failed = [n for n, s in states.items() if s.error]
        summary = {"bundle": str(path), "nodes": len(states), "failed": failed, "interrupted": interrupted}
        print(json.dumps(summary), file=sys.stderr)
        if interrupted:
            raise typer.Exit(130)
        if states and len(failed) == len(states) and all(not s.facts for s in states.values()):
            raise UnreachableError(f"no node could be collected (bundle written to {path})")
