"""`kpdoctor version` (and `kpdoctor --version`): kpdoctor, Python, the kubernetes client, the server.

Like `kubectl version`: the client versions always, the API server's version when a kubeconfig (or the
in-cluster service account) is there and the server answers; `--client` never contacts it. Start-up
matters here: the kubernetes client is imported only when there are credentials to use.
"""

from __future__ import annotations

import json
import platform
import re
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import typer

from kpdoctor import __version__
from kpdoctor.commands.options import DEFAULT_TIMEOUT, TIMEOUT_HELP, format_error

FORMATS = ("text", "json")


@dataclass(frozen=True)
class Versions:
    kpdoctor: str
    python: str
    kubernetes_client: str
    server: str | None = None  # gitVersion of the API server
    server_error: str | None = None  # why there is none (not asked, no credentials, unreachable)


def kubernetes_client_version() -> str:
    """The installed `kubernetes` package's version, read from its __init__ without importing it (the import
    alone costs ~0.3 s); importlib.metadata when the file does not say."""
    import importlib.util

    spec = importlib.util.find_spec("kubernetes")
    if spec is None or not spec.origin:
        return "not installed"
    try:
        head = Path(spec.origin).read_text(encoding="utf-8", errors="replace")[:4096]
    except OSError:
        head = ""
    found = re.search(r"""^__version__\s*=\s*["']([^"']+)["']""", head, re.M)
    if found:
        return found.group(1)
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("kubernetes")
    except PackageNotFoundError:
        return "unknown"


def server_version(kubeconfig: str | None, context: str | None, timeout: float) -> tuple[str | None, str | None]:
    """(gitVersion, None) or (None, why not). Never raises: the client versions are printed regardless."""
    from kpdoctor.cluster.kubeconfig import NO_CREDENTIALS, credentials_source

    if credentials_source(kubeconfig, context).kind == "none":
        return None, NO_CREDENTIALS.split(";")[0]
    from kpdoctor.cluster.live import api_client
    from kpdoctor.errors import KpdoctorError

    try:
        from kubernetes import client

        info = client.VersionApi(api_client(kubeconfig, context)).get_code(_request_timeout=(min(timeout, 10.0),
                                                                                              timeout))
        return str(info.git_version), None
    except KpdoctorError as exc:
        return None, str(exc)
    except Exception as exc:  # unreachable, TLS, 401/403: the reason in one line
        text = str(exc).strip()
        reason = getattr(exc, "reason", None) or (text.splitlines()[0] if text else type(exc).__name__)
        return None, f"not reachable: {reason}"[:300]


def collect_versions(*, client_only: bool, kubeconfig: str | None = None, context: str | None = None,
                     timeout: float = DEFAULT_TIMEOUT) -> Versions:
    impl = platform.python_implementation()
    local = Versions(__version__, f"{platform.python_version()} ({impl})", kubernetes_client_version())
    if client_only:
        return local
    server, error = server_version(kubeconfig, context, timeout)
    return Versions(local.kpdoctor, local.python, local.kubernetes_client, server, error)


def render_versions(v: Versions, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(asdict(v), indent=2) + "\n"
    lines = [f"kpdoctor Version: {v.kpdoctor}", f"Python Version: {v.python}",
             f"Kubernetes Client Version: {v.kubernetes_client}"]
    if v.server is not None:
        lines.append(f"Server Version: {v.server}")
    elif v.server_error is not None:
        lines.append(f"Server Version: unknown; {v.server_error}")
    return "\n".join(lines) + "\n"


def register(app: typer.Typer) -> None:
    @app.command("version")
    def version_cmd(
        client: bool = typer.Option(False, "--client", help="Client versions only; do not contact the API server."),
        fmt: str = typer.Option("text", "-o", "--output", help="text | json."),
        kubeconfig: str = typer.Option(None, "--kubeconfig", help="kubeconfig file (default $KUBECONFIG, ~/.kube/config)."),
        context: str = typer.Option(None, "--context", help="kubeconfig context."),
        timeout: float = typer.Option(DEFAULT_TIMEOUT, "--timeout", help=TIMEOUT_HELP),
    ) -> None:
        """Print the versions of kpdoctor, Python, the kubernetes client and (when reachable) the API server."""
        from kpdoctor.errors import InputError

        if fmt not in FORMATS:
            raise InputError(format_error(fmt, FORMATS))
        versions = collect_versions(client_only=client, kubeconfig=kubeconfig, context=context, timeout=timeout)
        sys.stdout.write(render_versions(versions, fmt))
        sys.stdout.flush()
