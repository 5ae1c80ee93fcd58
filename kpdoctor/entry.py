"""The `kpdoctor` console script: answers `kpdoctor --version` / `kpdoctor version` without loading typer
(about half of kpdoctor's start-up), hands everything else to kpdoctor.cli.main."""

from __future__ import annotations

import os
import sys


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if "_KPDOCTOR_COMPLETE" not in os.environ:  # a shell completion call: typer answers it
        from kpdoctor.commands.version_info import fast_version

        text = fast_version(args)
        if text is not None:
            try:
                sys.stdout.write(text)
                sys.stdout.flush()
            except BrokenPipeError:
                from kpdoctor.commands.terminal import end_like_sigpipe

                end_like_sigpipe()
            return
    from kpdoctor.cli import main as cli_main

    cli_main(args)
