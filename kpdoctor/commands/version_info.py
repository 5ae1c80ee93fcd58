"""The versions `kpdoctor version` and `kpdoctor --version` print: kpdoctor, Python, the kubernetes client,
and the API server's.

Like `kubectl version`: the client versions always, the API server's version when a kubeconfig (or the
in-cluster service account) is there and the server answers; `--client` never contacts it. Start-up
matters here (bench/bench_startup.py): no typer, and the kubernetes client is imported only when there are
credentials to use. `fast_version` answers the plain forms of both commands before typer is loaded
(kpdoctor.entry); anything else (help, a bad flag) goes through the typer command in commands/version.py,
which prints the same text (tests/cluster/test_versions.py).
"""

from __future__ import annotations

import json
import platform
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from kpdoctor import __version__
from kpdoctor.commands.options import DEFAULT_TIMEOUT

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


def fast_version(args: list[str]) -> str | None:
    """The output of `kpdoctor ARGS` when ARGS is `--version` or a plain `version [--client] [-o text|json]
    [--kubeconfig F] [--context C] [--timeout S]` (with --color anywhere); None for anything else."""
    rest = list(args)
    color = [i for i, a in enumerate(rest) if a == "--color" or a.startswith("--color=")]
    for i in reversed(color):  # a global flag that does not change this output; a bad value goes to typer
        value = rest[i].partition("=")[2] if "=" in rest[i] else (rest[i + 1] if i + 1 < len(rest) else "")
        if value not in ("auto", "always", "never"):
            return None
        del rest[i:i + (1 if "=" in rest[i] else 2)]
    if rest == ["--version"]:
        return render_versions(collect_versions(client_only=False), "text")
    if rest[:1] != ["version"]:
        return None
    values: dict[str, str] = {}
    client, i = False, 1
    names = {"-o": "fmt", "--output": "fmt", "--kubeconfig": "kubeconfig", "--context": "context",
             "--timeout": "timeout"}
    while i < len(rest):
        arg = rest[i]
        name, eq, value = arg.partition("=")
        if arg == "--client":
            client = True
        elif eq and name in names and name != "-o":
            values[names[name]] = value
        elif arg in names and i + 1 < len(rest) and not rest[i + 1].startswith("-"):
            values[names[arg]] = rest[i + 1]
            i += 1
        else:
            return None
        i += 1
    fmt = values.get("fmt", "text")
    try:
        timeout = float(values.get("timeout", DEFAULT_TIMEOUT))
    except ValueError:
        return None
    if fmt not in FORMATS or not values.get("kubeconfig", "x") or not values.get("context", "x"):
        return None
    return render_versions(collect_versions(client_only=client, kubeconfig=values.get("kubeconfig"),
                                            context=values.get("context"), timeout=timeout), fmt)
