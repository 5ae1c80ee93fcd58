"""Text from outside (node files, API names) made inert for a rich console: the one helper for it."""

from __future__ import annotations

from typing import Any

from rich.markup import escape

from kpdoctor.report import printable


def inert(value: Any) -> str:
    """`value` as text with control, bidi and invisible characters shown as escapes and rich markup
    (`[bold]`, `[/]`, `[link=...]`) escaped, so it prints as itself and cannot style or break the output."""
    return str(escape(printable(str(value))))
