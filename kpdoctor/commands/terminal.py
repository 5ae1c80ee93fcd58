"""What the terminal gets: colour (--color auto|always|never, NO_COLOR) and a quiet end on a closed pipe.

Loaded at start-up: standard library only.
"""

from __future__ import annotations

import errno
import os
import select
import signal
import sys
from contextvars import ContextVar
from typing import TextIO

COLOR_MODES = ("auto", "always", "never")
COLOR_HELP = "Colour in console output: auto (a terminal, unless NO_COLOR is set), always, never."
# set once per invocation by the root callback (`kpdoctor --color ...`), read by the commands that print
color_mode: ContextVar[str] = ContextVar("kpdoctor_color_mode", default="auto")


def use_color(stream: TextIO | None = None, mode: str | None = None) -> bool:
    """Whether to colour what goes to `stream` (stdout by default): https://no-color.org for auto."""
    chosen = mode or color_mode.get()
    if chosen == "always":
        return True
    if chosen == "never" or os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    target = stream if stream is not None else sys.stdout
    try:
        return target.isatty()
    except (AttributeError, ValueError):  # closed or replaced stream
        return False


def hoist_global_flags(argv: list[str]) -> list[str]:
    """`--color X` is global, like kubectl's persistent flags: accepted anywhere before `--`, moved to the front
    where the root command reads it (`kpdoctor scan --color never` = `kpdoctor --color never scan`)."""
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            rest.extend(argv[i:])
            break
        if arg.startswith("--color="):
            front.append(arg)
        elif arg == "--color" and i + 1 < len(argv):
            front.extend(argv[i:i + 2])
            i += 1
        else:
            rest.append(arg)
        i += 1
    return front + rest


def stdout_is_broken() -> bool:
    """True when stdout is a pipe whose reader went away (`kpdoctor ... | head` after head exits)."""
    try:
        fd = sys.__stdout__.fileno() if sys.__stdout__ else 1
        poller = select.poll()
        poller.register(fd, 0)  # POLLERR/POLLHUP are always reported
        return any(ev & (select.POLLERR | select.POLLHUP) for _, ev in poller.poll(0))
    except (OSError, ValueError):
        return False


def closed_pipe(exc: BaseException) -> bool:
    """Whether `exc` is (or click's exit for) a write to a stdout pipe whose reader went away. click turns EPIPE
    into exit 1, indistinguishable from "findings" unless its cause is looked at."""
    for cause in (exc, exc.__context__):
        if isinstance(cause, OSError) and cause.errno == errno.EPIPE:
            return stdout_is_broken()
    return False


def end_like_sigpipe() -> None:
    """End as a C tool does on a closed pipe: killed by SIGPIPE, nothing on stderr (the shell shows 141).

    Python ignores SIGPIPE (so sockets get EPIPE as an exception); only this last step restores the default."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.__stdout__.fileno() if sys.__stdout__ else 1)  # nothing left to flush into the pipe
    except (OSError, ValueError):
        pass
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGPIPE)
    os._exit(128 + signal.SIGPIPE)  # not reached on POSIX


def rich_color_args(stream: TextIO | None = None) -> dict[str, object]:
    """Keyword arguments for a rich Console printing to `stream` that follow --color and NO_COLOR."""
    if use_color(stream):
        return {"force_terminal": True}
    return {"color_system": None, "no_color": True}
