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

from kpdoctor.commands import optgroups as og
from kpdoctor.commands.nodeflags import TRANSPORT_HELP, NodeFlags, kube_exec_api, load_cluster, options_from
from kpdoctor.commands.options import format_error

BUNDLE_FORMATS = ("dir", "tar.gz")


def check_bundle_path(out: str, fmt: str | None = None) -> None:
    """A bundle is a directory or a .tar.gz, and the name says which: a name promising another format (x.zip,
    x.tar) or one contradicting -o is refused rather than written as something the name misdescribes."""
    from kpdoctor.errors import InputError
    from kpdoctor.node.bundle import is_tarball

    tarball = is_tarball(Path(out).name)  # what write_bundle will decide (case-sensitive)
    archive = (".zip", ".tar", ".gz", ".tgz", ".xz", ".txz", ".bz2", ".tbz2", ".zst", ".7z")
    if not tarball and Path(out).name.lower().endswith(archive):
        raise InputError("a bundle is written as a directory or a .tar.gz/.tgz; choose such a name", where=out)
    if fmt == "tar.gz" and not tarball:
        raise InputError("-o tar.gz needs a -f name ending .tar.gz or .tgz", where=out)
    if fmt == "dir" and tarball:
        raise InputError("-o dir writes a directory; a name ending .tar.gz/.tgz would misdescribe it", where=out)


def snapshot_objects(directory: str) -> dict[str, list[dict[str, Any]]]:
    """Raw objects of a snapshot directory grouped by bundle file (services, endpointslices, ...).

    ServiceCIDRs get a file only when the snapshot has some: an empty servicecidrs.json would
    claim "the cluster has none", which a snapshot without them does not know.
    """
    from kpdoctor.cluster.snapshot import SNAPSHOT_SUFFIXES, iter_objects, parse_documents
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
        for doc in parse_documents(data.decode("utf-8", errors="replace"), str(path)):
            for obj in iter_objects(doc, str(path)):
                bucket = by_kind.get(str(obj.get("kind")))
                if bucket:
                    grouped[bucket].append(obj)
    if not grouped.get("servicecidrs"):
        grouped.pop("servicecidrs", None)
    return grouped


def register(app: typer.Typer) -> None:
    @app.command("collect")
    @og.with_option_groups
    def collect(
        out: str = typer.Option(None, "-f", "--output-file", metavar="PATH",
                                help="Bundle to write: a new directory, or a path ending .tar.gz / .tgz."),
        fmt: str = typer.Option(None, "-o", "--output", metavar="FORMAT",
                                help="dir | tar.gz (default: from the -f name; a name saying otherwise is refused)."),
        node: list[str] = typer.Option([], "--node", help="Node to collect (repeatable). Default: every Node of the cluster."),  # noqa: B008
        no_nodes: bool = typer.Option(False, "--no-nodes", help="Write only the cluster snapshot."),
        transport: str = typer.Option(None, "--transport", help=TRANSPORT_HELP + " Default ssh (local with no cluster)."),
        snapshot: str = typer.Option(None, "--snapshot", help="Use this snapshot directory instead of the live API."),
        api: og.ApiFlags = og.KUBECONFIG,
        offline: bool = typer.Option(False, "--offline", help="No cluster access: collect this machine's node facts "
                                     "only (local transport; the bundle has nodes/<name>/ and no cluster/)."),
        address: str = typer.Option(None, "--address", help="Address of the single --node (overrides InternalIP)."),
        ssh: og.SshFlags = og.SSH,
        timeout: float = og.TIMEOUT,
        concurrency: int = og.CONCURRENCY,
    ) -> None:
        """Write a bundle (docs/bundle.md): cluster snapshot, kube-proxy logs and each node's facts. Read-only."""
        from kpdoctor.errors import InputError, UnreachableError
        from kpdoctor.node.bundle import write_bundle
        from kpdoctor.node.collect import collect_nodes
        from kpdoctor.node.fanout import Interrupted, default_reporter

        if fmt is not None and fmt not in BUNDLE_FORMATS:
            raise InputError(format_error(fmt, BUNDLE_FORMATS))
        if not out:
            raise InputError("collect needs -f/--output-file PATH (a new directory, or a name ending .tar.gz)")
        check_bundle_path(out, fmt)
        if Path(out).exists() and (not Path(out).is_dir() or any(Path(out).iterdir())):
            raise InputError("output exists; choose a new path", where=out)
        try:
            cluster, live = load_cluster(snapshot=snapshot, bundle=None, api=api, live=not snapshot and not offline)
        except UnreachableError as exc:
            if api.kubeconfig or api.context:
                raise
            raise UnreachableError(f"{exc.args[0].split('; use ')[0]}; pass --offline to collect only this "
                                   "machine's node facts, or --snapshot DIR") from None
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
        kube_api = kube_exec_api(chosen, api)
        flags = NodeFlags(transport, address, ssh, timeout, concurrency)
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
