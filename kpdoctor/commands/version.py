"""`kpdoctor version`: the typer command (help, completion, errors); the versions are kpdoctor.commands.version_info's."""

from __future__ import annotations

import sys

import typer

from kpdoctor.commands import optgroups as og
from kpdoctor.commands.options import format_error
from kpdoctor.commands.version_info import FORMATS, collect_versions, render_versions


def register(app: typer.Typer) -> None:
    @app.command("version")
    @og.with_option_groups
    def version_cmd(
        client: bool = typer.Option(False, "--client", help="Client versions only; do not contact the API server."),
        fmt: str = typer.Option("text", "-o", "--output", help="text | json."),
        api: og.ApiFlags = og.KUBECONFIG,
        timeout: float = og.TIMEOUT,
    ) -> None:
        """Print the versions of kpdoctor, Python, the kubernetes client and (when reachable) the API server."""
        from kpdoctor.errors import InputError

        if fmt not in FORMATS:
            raise InputError(format_error(fmt, FORMATS))
        versions = collect_versions(client_only=client, kubeconfig=api.kubeconfig, context=api.context, timeout=timeout)
        sys.stdout.write(render_versions(versions, fmt))
        sys.stdout.flush()
