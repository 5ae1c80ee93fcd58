"""The `kpdoctor` command: wires sub-commands, turns KpdoctorError into one line and an exit code.

Start-up must stay fast (`--help`, `--version`): command modules import the
kubernetes client, paramiko and the renderers inside their function bodies.

Exit codes (see docs/cli.md): 0 nothing at/above --fail-on; 1 findings at/above
it (or the gate did not pass); 2 usage or input error; 3 the cluster or every
node could not be reached (the gate: required evidence missing).
"""

from __future__ import annotations

import sys

import typer

from kpdoctor.commands import registry_of_commands
from kpdoctor.commands.completion import completion_requested, prepare_completion
from kpdoctor.commands.metavars import kubectl_metavars
from kpdoctor.commands.terminal import (
    COLOR_HELP,
    COLOR_MODES,
    closed_pipe,
    color_mode,
    end_like_sigpipe,
    hoist_global_flags,
)
from kpdoctor.errors import InputError, KpdoctorError

app = typer.Typer(
    name="kpdoctor",
    help="A doctor for Kubernetes Service networking (kube-proxy). Read-only on clusters and nodes.\n\n"
    "Exit codes: 0 ok, 1 findings at/above --fail-on (or gate failed), 2 bad input, 3 unreachable.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    # plain help like kubectl's, and no rich import at start-up (0.1 s of `kpdoctor --help`)
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from kpdoctor.commands.version_info import collect_versions, render_versions

        typer.echo(render_versions(collect_versions(client_only=False), "text"), nl=False)
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the versions (as `kpdoctor version`) and exit."),
    color: str = typer.Option("auto", "--color", metavar="WHEN", help=COLOR_HELP + " Accepted after any command."),
) -> None:
    """kpdoctor: exact, read-only diagnosis of kube-proxy and Service networking."""
    if color not in COLOR_MODES:
        raise InputError(f"--color {color!r}: choose from {', '.join(COLOR_MODES)}")
    color_mode.set(color)


registry_of_commands(app)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: one clear line on stderr for every KpdoctorError, never a traceback."""
    args = hoist_global_flags(list(sys.argv[1:] if argv is None else argv))
    if completion_requested():
        prepare_completion()
    try:
        # what app(...) does, with kubectl's value placeholders in help; standalone_mode=False makes click
        # *return* a typer.Exit's code instead of raising it
        command = typer.main.get_command(app)
        kubectl_metavars(command)
        code = command.main(args=args, prog_name="kpdoctor", standalone_mode=False)
        sys.stdout.flush()  # here, not at interpreter exit: a closed pipe is handled below
        if isinstance(code, int) and code:
            sys.exit(code)
    except KpdoctorError as exc:
        print(f"kpdoctor: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except SystemExit as exc:
        if closed_pipe(exc):  # `kpdoctor ... | head`: end quietly, as killed by SIGPIPE (the shell shows 141)
            end_like_sigpipe()
        raise
    except KeyboardInterrupt:
        print("kpdoctor: interrupted", file=sys.stderr)
        sys.exit(130)
    except OSError as exc:  # a path the OS refuses outright (ENAMETOOLONG, ELOOP...): bad input, one line
        where = f"{str(exc.filename)[:80]}...: " if exc.filename else ""
        print(f"kpdoctor: error: {where}{exc.strerror or exc}", file=sys.stderr)
        sys.exit(2)
    except Exception as exc:  # click usage errors and anything unexpected
        if closed_pipe(exc):
            end_like_sigpipe()
        aborts, usage = _click_exception_types()
        if isinstance(exc, aborts):
            print("kpdoctor: aborted", file=sys.stderr)
            sys.exit(130)
        if isinstance(exc, usage):
            # one line, like every other input error (click's own form adds usage and hint lines); an empty
            # message is no_args_is_help, whose help text is already printed
            message = exc.format_message()  # type: ignore[attr-defined]
            if type(exc).__name__ == "NoArgsIsHelpError":  # bare `kpdoctor` / `kpdoctor gate`: the help, on stdout
                print(message)
            elif message:
                print(f"kpdoctor: error: {message} (see --help)", file=sys.stderr)
            sys.exit(2)
        print(f"kpdoctor: internal error: {type(exc).__name__}: {exc} (run with KPDOCTOR_DEBUG=1 for a traceback)",
              file=sys.stderr)
        import os

        if os.environ.get("KPDOCTOR_DEBUG"):
            raise
        sys.exit(70)


def _click_exception_types() -> tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...]]:
    """(abort, usage-error) classes of click and of the click copy newer typer releases vendor
    (typer._click, typer >= 0.29, which no longer installs click at all): a bad flag raises whichever
    copy typer runs on, so both are looked up and neither is required."""
    aborts: list[type[BaseException]] = [typer.Abort]
    usage: list[type[BaseException]] = [c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"]
    try:
        import click
    except ModuleNotFoundError:
        pass
    else:
        aborts.append(click.exceptions.Abort)
        usage.append(click.ClickException)
    return tuple(aborts), tuple(usage)


if __name__ == "__main__":
    main()
