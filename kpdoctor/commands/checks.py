"""`kpdoctor checks list` / `kpdoctor checks show ID`: what kpdoctor can diagnose, and how."""

from __future__ import annotations

import json
import sys

import typer


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="List the checks (built-in and plugins) and show one with its docs page.",
                        no_args_is_help=True)
    app.add_typer(group, name="checks")

    @group.command("list")
    def list_cmd(
        fmt: str = typer.Option("table", "-o", "--output", "--format", help="table | json"),
        checks: str = typer.Option(None, "--checks", help="Filter: ids, tag:<tag>, scope:cluster|node."),
    ) -> None:
        """Every registered check: id, scope, default severity, tags, title."""
        from kpdoctor.errors import InputError
        from kpdoctor.registry import discover

        reg = discover()
        selected = reg.select(checks)
        if fmt == "json":
            rows = [{"id": c.id, "title": c.title, "scope": c.scope, "severity": c.severity.label,
                     "tags": list(c.tags), "origin": reg.origins.get(c.id, ""), "docs": c.docs_url()}
                    for c in selected]
            sys.stdout.write(json.dumps({"checks": rows, "load_errors": [
                {"name": e.name, "origin": e.origin, "message": e.message} for e in reg.load_errors]}, indent=2) + "\n")
            return
        if fmt != "table":
            raise InputError(f"--format {fmt!r}: choose table or json")
        from rich.console import Console
        from rich.table import Table

        table = Table(box=None, show_edge=False, pad_edge=False)
        for col in ("ID", "SCOPE", "SEVERITY", "TAGS"):
            table.add_column(col, no_wrap=True)
        table.add_column("TITLE", overflow="fold")
        for c in selected:
            table.add_row(c.id, c.scope, c.severity.label, ",".join(c.tags), c.title)
        from kpdoctor.commands.terminal import rich_color_args

        con = Console(highlight=False, width=None if sys.stdout.isatty() else 200, **rich_color_args())  # type: ignore[arg-type]
        with con.capture() as captured:
            con.print(table)
        sys.stdout.write("\n".join(line.rstrip() for line in captured.get().splitlines()) + "\n")
        for e in reg.load_errors:
            con.print(f"[red]plugin {e.name} ({e.origin}) not loaded: {e.message}[/]")

    @group.command("show")
    def show_cmd(check_id: str = typer.Argument(..., metavar="ID", help="A check id (see `kpdoctor checks list`).")
                 ) -> None:
        """A check's metadata, rationale, remediation and its docs page."""
        from kpdoctor.registry import discover, docs_page_text

        reg = discover()
        c = reg.get(check_id)
        lines = [
            f"{c.id}: {c.title}",
            f"  scope:     {c.scope}",
            f"  severity:  {c.severity.label} (default)",
            f"  tags:      {', '.join(c.tags) or '-'}",
            f"  origin:    {_origin(reg.origins.get(c.id, ''))}",
            f"  docs:      {c.docs_url()}",
        ]
        if c.requires:
            lines.append(f"  reads:     {', '.join(c.requires)}")
        if c.rationale:
            lines += ["", "Why:", "  " + c.rationale.strip()]
        if c.remediation:
            lines += ["", "Remediation:", "  " + c.remediation.strip()]
        if c.references:
            lines += ["", "References:"] + [f"  - {r}" for r in c.references]
        page = docs_page_text(c)
        if page and sys.stdout.isatty():  # a terminal gets the page rendered, a pipe or file the Markdown itself
            from rich.console import Console
            from rich.markdown import Markdown

            from kpdoctor.commands.terminal import rich_color_args

            sys.stdout.write("\n".join(lines) + "\n\n")
            Console(**rich_color_args()).print(Markdown(page))  # type: ignore[arg-type]
            return
        lines += ["", "-" * 72, page.rstrip() if page else "(no docs page installed with this copy of kpdoctor)"]
        sys.stdout.write("\n".join(lines) + "\n")


def _origin(origin: str) -> str:
    """Where a check comes from, in words: "built in" or the plugin's entry point."""
    return "built in" if origin.startswith("builtin:") else (origin or "-")
