"""One module per CLI command group; each imports its heavy dependencies inside the command body.

`registry_of_commands` is the one place that lists them, so adding a command
group never means editing cli.py.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # kpdoctor.commands.options is read before typer is loaded (kpdoctor.entry, start-up)
    import typer

# (module under kpdoctor.commands, attribute) -> each module exposes `register(app)`
COMMAND_MODULES = (
    "proxier",
    "node",
    "collect",
    "scan",
    "checks",
    "gate",
    "lab",
    "why",
    "analyze",
    "version",
    "completion",
    "trace",
)


def registry_of_commands(app: typer.Typer) -> None:
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"kpdoctor.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"kpdoctor.commands.{name}":
                raise
            continue
        module.register(app)
