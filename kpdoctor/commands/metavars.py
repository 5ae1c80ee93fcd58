"""Value placeholders in help as kubectl writes them (`--node string`, `--timeout seconds`), not typer's
`<list[str]>`: applied once to the click command tree kpdoctor runs (kpdoctor.cli.main)."""

from __future__ import annotations

from typing import Any

WORDS = {"str": "string", "list[str]": "string", "int": "int", "list[int]": "int", "float": "float"}


def placeholder(param: Any) -> str:
    """kubectl's word for an option's value type; seconds for timeouts."""
    bare = param.bare_type() if hasattr(param, "bare_type") else type(param.default).__name__
    word = WORDS.get(str(bare), "value")
    if word in ("float", "int") and "timeout" in (param.name or ""):
        return "seconds"
    return word


def kubectl_metavars(command: Any) -> None:
    """Give every value-taking option without an explicit metavar kubectl's placeholder, recursively."""
    for param in getattr(command, "params", ()):
        if getattr(param, "param_type_name", "") == "option" and not param.is_flag and param.metavar is None:
            param.metavar = placeholder(param)
    for sub in getattr(command, "commands", {}).values():
        kubectl_metavars(sub)
