"""`kpdoctor completion bash|zsh|fish`: the shell script that completes kpdoctor's commands and flags.

As with kubectl: `source <(kpdoctor completion bash)`. The script calls kpdoctor back with
_KPDOCTOR_COMPLETE set (typer's completion protocol); `kpdoctor.cli.main` answers those calls.
"""

from __future__ import annotations

import os

import typer

SHELLS = ("bash", "zsh", "fish")
PROG = "kpdoctor"
COMPLETE_VAR = "_KPDOCTOR_COMPLETE"
COMPLETION_HELP = """Print a shell completion script (bash, zsh or fish).

\b
  bash:  source <(kpdoctor completion bash)      # or: kpdoctor completion bash > /etc/bash_completion.d/kpdoctor
  zsh:   source <(kpdoctor completion zsh)       # after compinit; or write it to a file named _kpdoctor in $fpath
  fish:  kpdoctor completion fish > ~/.config/fish/completions/kpdoctor.fish
"""


def completion_requested() -> bool:
    """True when the shell's completion function is calling kpdoctor back."""
    return COMPLETE_VAR in os.environ


def prepare_completion() -> None:
    """Register the shells' completion answerers (only for a completion call: it imports shellingham)."""
    from typer._completion_classes import completion_init

    completion_init()


def script_for(shell: str) -> str:
    from typer._completion_shared import get_completion_script

    return get_completion_script(prog_name=PROG, complete_var=COMPLETE_VAR, shell=shell) + "\n"


def register(app: typer.Typer) -> None:
    @app.command("completion", help=COMPLETION_HELP)
    def completion_cmd(
        shell: str = typer.Argument(..., metavar="SHELL", help="bash | zsh | fish."),
    ) -> None:
        import sys

        from kpdoctor.errors import InputError

        if shell not in SHELLS:
            raise InputError(f"completion {shell!r}: choose from {', '.join(SHELLS)}")
        sys.stdout.write(script_for(shell))
        sys.stdout.flush()
