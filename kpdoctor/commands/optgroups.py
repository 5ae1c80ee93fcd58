"""Option groups: a block of CLI options defined once, shared by several commands, handed to each as one value.

A command names the group by one parameter whose default is the group (the module-level constants are typed
Any so that they can stand as the default of a parameter annotated with the group's value type):

    @with_option_groups
    def node(name: str = ..., ssh: SshFlags = SSH, timeout: float = ...) -> None: ...

`with_option_groups` shows typer the group's options in that parameter's place (so `--help` lists them where
the block stood) and builds the typed value (here `SshFlags`) from them before the command body runs. The
options' names, help and defaults exist only here; `options.py` keeps the help strings that are not grouped.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import typer

from kpdoctor.commands.options import DEFAULT_TIMEOUT, OUTPUT_FILE_HELP, SSH_HELP, TIMEOUT_HELP

T = TypeVar("T")

# single options several commands share, as a parameter's default: `timeout: float = TIMEOUT`
TIMEOUT: Any = typer.Option(DEFAULT_TIMEOUT, "--timeout", help=TIMEOUT_HELP)
OUTPUT_FILE: Any = typer.Option(None, "-f", "--output-file", metavar="FILE", help=OUTPUT_FILE_HELP)
SNAPSHOT: Any = typer.Option(None, "--snapshot", help="Directory of `kubectl get -o json` files.")
BUNDLE: Any = typer.Option(None, "--bundle", help="Bundle directory or .tar.gz (docs/bundle.md).")
DEMO: Any = typer.Option(False, "--demo", help="Use the demo bundle shipped with kpdoctor.")
NODES: Any = typer.Option("", "--nodes", help="Comma-separated node names or globs (default: all).")
NODE_SELECTOR: Any = typer.Option("", "--node-selector", "-l", help="Node label selector k=v[,k=v].")
CONCURRENCY: Any = typer.Option(32, "--concurrency", help="Nodes collected at once.")


def show_plan_option(plan: str, more: str = "") -> Any:
    """The gates' --show-plan: print `plan` (the cleanup or rollout plan) under 'NOT SAFE TO RUN' when the gate
    did not pass; `more` ends the help text (before its period)."""
    return typer.Option(False, "--show-plan", help=(
        f"Print the {plan} even when the gate did not pass: under 'NOT SAFE TO RUN: the gate did not pass', every "
        f"command commented out{more}."))


F = TypeVar("F", bound=Callable[..., Any])


class OptionGroup(Generic[T]):
    """Options (python name, type, typer.Option(...)) that `build(**values)` turns into one value of type T."""

    def __init__(self, build: Callable[..., T], *options: tuple[str, Any, Any]) -> None:
        self.build = build
        self.options = options

    def parameters(self, kind: Any) -> list[inspect.Parameter]:
        return [inspect.Parameter(name, kind, default=option, annotation=annotation)
                for name, annotation, option in self.options]

    def take(self, values: dict[str, Any]) -> T:
        """The group's value from the command's keyword arguments (its options are removed from them)."""
        return self.build(**{name: values.pop(name) for name, _annotation, _option in self.options})


def with_option_groups(func: F) -> F:
    """Expand every parameter whose default is an OptionGroup into the group's options, in place."""
    signature = inspect.signature(func, eval_str=True)
    groups: dict[str, OptionGroup[Any]] = {}
    params: list[inspect.Parameter] = []
    for param in signature.parameters.values():
        if isinstance(param.default, OptionGroup):
            groups[param.name] = param.default
            params += param.default.parameters(param.kind)
        else:
            params.append(param)

    @functools.wraps(func)
    def command(**values: Any) -> Any:
        for name, group in groups.items():
            values[name] = group.take(values)
        return func(**values)

    expanded = signature.replace(parameters=params)
    command.__signature__ = expanded  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params if p.annotation is not inspect.Parameter.empty}
    del command.__wrapped__  # typer reads the expanded signature, not func's
    return command  # type: ignore[return-value]


@dataclass(frozen=True)
class SshFlags:
    """--ssh-user, --ssh-key, --ssh-port, --ssh-config, --jump-host, --known-hosts, --accept-new-host-keys."""

    user: str | None = None
    key: tuple[str, ...] = ()
    port: int | None = None
    config: str | None = None
    jump_host: str | None = None
    known_hosts: str | None = None
    accept_new_host_keys: bool = False


def _ssh(ssh_user: str | None, ssh_key: list[str] | None, ssh_port: int | None, ssh_config: str | None,
         jump_host: str | None, known_hosts: str | None, accept_new_host_keys: bool) -> SshFlags:
    return SshFlags(ssh_user, tuple(ssh_key or ()), ssh_port, ssh_config, jump_host, known_hosts, accept_new_host_keys)


SSH: Any = OptionGroup[SshFlags](
    _ssh,
    ("ssh_user", str, typer.Option(None, "--ssh-user", help=SSH_HELP["user"])),
    ("ssh_key", list[str], typer.Option([], "--ssh-key", help=SSH_HELP["key"])),
    ("ssh_port", int, typer.Option(None, "--ssh-port", help=SSH_HELP["port"])),
    ("ssh_config", str, typer.Option(None, "--ssh-config", help=SSH_HELP["config"])),
    ("jump_host", str, typer.Option(None, "--jump-host", help=SSH_HELP["jump"])),
    ("known_hosts", str, typer.Option(None, "--known-hosts", help=SSH_HELP["known_hosts"])),
    ("accept_new_host_keys", bool, typer.Option(False, "--accept-new-host-keys", help=SSH_HELP["accept_new"])),
)


@dataclass(frozen=True)
class ProbeFlags:
    """--probe-timeout, --probe-limit, --probe-concurrency (read only with --probe)."""

    timeout: float = 1.0
    limit: int = 512
    concurrency: int = 32

    def options(self) -> Any:
        """A validated ProbeOptions (bad values exit 2 before anything is contacted)."""
        from kpdoctor.node.probe import ProbeOptions

        return ProbeOptions(timeout=self.timeout, concurrency=self.concurrency, limit=self.limit).validated()


PROBE: Any = OptionGroup[ProbeFlags](
    lambda probe_timeout, probe_limit, probe_concurrency: ProbeFlags(probe_timeout, probe_limit, probe_concurrency),
    ("probe_timeout", float, typer.Option(1.0, "--probe-timeout", help="Seconds per probe connect (--probe).")),
    ("probe_limit", int, typer.Option(512, "--probe-limit", help="At most this many probe connects (--probe).")),
    ("probe_concurrency", int, typer.Option(32, "--probe-concurrency", help="Probe connects at once (--probe).")),
)


@dataclass(frozen=True)
class SilenceFlags:
    """--config-file, --no-config-file: where the silences come from."""

    config_file: str | None = None
    ignore: bool = False

    def load(self) -> Any:
        """The Silences (None with --no-config-file); expired silences are warned about on stderr."""
        import sys

        from kpdoctor.silences import load_silences

        silences = None if self.ignore else load_silences(self.config_file)
        for line in silences.expired_warnings() if silences else []:
            print(f"kpdoctor: warning: {line}", file=sys.stderr)
        return silences


SILENCES: Any = OptionGroup[SilenceFlags](
    lambda config_file, no_config_file: SilenceFlags(config_file, no_config_file),
    ("config_file", str, typer.Option(None, "--config-file",
                                      help="Silences file (default: ./.kpdoctor.yaml when present).")),
    ("no_config_file", bool, typer.Option(False, "--no-config-file", help="Ignore ./.kpdoctor.yaml.")),
)


@dataclass(frozen=True)
class PodFlags:
    """--collector-image, --analyze-in-pod: the collector pod of --transport pod (kpdoctor.inpod)."""

    collector_image: str | None = None
    analyze_in_pod: bool = False

    def validate(self, transport: str | None) -> None:
        """--analyze-in-pod needs --transport pod and a kpdoctor image (exit 2 before anything is contacted)."""
        from kpdoctor.errors import InputError

        if self.analyze_in_pod and (transport != "pod" or not self.collector_image):
            raise InputError("--analyze-in-pod needs --transport pod and --collector-image IMAGE (a kpdoctor image "
                             "with the netfilter tools; the kube-proxy image has no kpdoctor)")


POD: Any = OptionGroup[PodFlags](
    lambda collector_image, analyze_in_pod: PodFlags(collector_image, analyze_in_pod),
    ("collector_image", str, typer.Option(None, "--collector-image", help="--transport pod: the collector pod's "
                                          "image (default: the node's own kube-proxy image).")),
    ("analyze_in_pod", bool, typer.Option(False, "--analyze-in-pod", help="--transport pod: run the node checks in "
                                          "each collector pod (ServiceAccount kpdoctor, deploy/rbac.yaml); needs a "
                                          "kpdoctor image as collector image.")),
)


@dataclass(frozen=True)
class ApiFlags:
    """--kubeconfig, --context: which API server (None: $KUBECONFIG or ~/.kube/config, its current context)."""

    kubeconfig: str | None = None
    context: str | None = None


def _api_group(kubeconfig_help: str, context_help: str) -> OptionGroup[ApiFlags]:
    return OptionGroup[ApiFlags](
        ApiFlags,
        ("kubeconfig", str, typer.Option(None, "--kubeconfig", help=kubeconfig_help)),
        ("context", str, typer.Option(None, "--context", help=context_help)),
    )


# the same two options; the help says what the API is for in the command's words
LIVE_API: Any = _api_group("Kubeconfig for the live API.", "Kubeconfig context for the live API.")
KUBECONFIG: Any = _api_group("kubeconfig file (default $KUBECONFIG, ~/.kube/config).", "kubeconfig context.")
