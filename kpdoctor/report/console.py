"""Console renderer (rich): what a human reads first, grouped by check then subject, worst first."""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

import kpdoctor.report.layout as layout
from kpdoctor.report.layout import PIPED_WIDTH, affected, ordered_checks, where
from kpdoctor.report.model import SEVERITIES

_STYLE = {"critical": "bold white on red", "error": "bold red", "warning": "yellow", "info": "cyan"}
_MAX_COMMANDS = 12
_MAX_EVIDENCE = 6
_MAX_CAUSES = 20


def _severity_rank(group: Mapping[str, Any]) -> int:
    return SEVERITIES.index(group["severity"])


def render_console(report: Mapping[str, Any], *, color: bool = False, width: int | None = None,
                   min_severity: str | None = None) -> str:
    buf = io.StringIO()
    con = Console(file=buf, force_terminal=color, no_color=not color, width=width or PIPED_WIDTH, highlight=False,
                  soft_wrap=False, emoji=False)
    src = report["source"]
    s = report["summary"]
    _say(con, 0, f"[bold]kpdoctor {escape(report['kpdoctor_version'])}[/] scan of {escape(src['kind'])} "
              f"[bold]{escape(src['location'])}[/] - {s['checks_run']} checks, "
              f"{s['nodes_reachable']}/{s['nodes_total']} nodes reachable (transport {escape(src['transport'])})")
    if src["kind"] == "demo":
        _say(con, 0, "[dim]This is kpdoctor's demo: a real kube-proxy v1.36.2 capture with faults planted (see "
             "kpdoctor/demo/README.md). Scan yours with `kpdoctor scan` (live API) or `kpdoctor scan --bundle DIR`.[/]")
    for gap in report["gaps"]:
        con.print(f"[yellow]cannot read {escape(gap['kind'])}: {escape(gap['reason'])}[/]")
    shapes = [n["services_by"] for n in report["nodes"] if n.get("services_by")]
    for line in shapes[:5]:  # who implements Services on each node, and from what (kpdoctor.service_proxy)
        _say(con, 0, f"[dim]{escape(line)}[/]")
    if len(shapes) > 5:
        _say(con, 0, f"[dim]... and {len(shapes) - 5} more nodes (JSON report: nodes[].services_by)[/]")
    counts = ", ".join(f"[{_STYLE[k]}]{v} {k}[/]" for k, v in s["findings"].items() if v) or "[green]no findings[/]"
    extra = []
    if s["silenced"]:
        extra.append(f"{s['silenced']} silenced")
    if s["not_evaluated"]:
        extra.append(f"{s['not_evaluated']} not evaluated")
    con.print(f"Summary: {counts}" + (f" ({', '.join(extra)})" if extra else ""))
    if affected(report):
        _say(con, 0, f"Affected: {escape(affected(report))}")
    con.print()
    if report.get("service"):  # `scan --service`: the Service's `why` view first
        from kpdoctor.why.render import render_view

        con.print(escape(render_view(report["service"])))
    _causes(con, report)
    hidden = 0
    for check in ordered_checks(report):
        groups = layout.visible_groups(check, min_severity)
        hidden += len(check["groups"]) - len(groups)
        if not groups:
            continue
        con.rule(f"[bold]{escape(check['id'])}[/] {escape(check['title'])}", align="left")
        for g in groups:
            _group(con, report, g)
        if check["docs"]:
            _say(con, 0, f"[dim]docs {escape(check['docs'])}[/]")
            con.print()
    if hidden:
        con.print(f"[dim]{hidden} group{'s' if hidden != 1 else ''} below {min_severity} hidden (--min-severity; "
                  "-o json keeps every finding)[/]")
    passed = layout.passed_checks(report)
    if passed:
        con.print(f"[green]passed[/] ({len(passed)}): {escape(', '.join(passed))}")
    skipped = [c["id"] for c in report["checks"] if c["status"] == "not_evaluated" and not c["groups"]]
    if skipped:
        why = ("node checks need --transport ssh|kube-exec|local or a --bundle" if src["transport"] == "none"
               else "no reachable node")
        _say(con, 0, f"[yellow]not evaluated[/] ({why}): {escape(', '.join(skipped))}")
    fail_on = report["fail_on"]
    # "ok" only when every check saw what it needed: a check partly not evaluated, or an API kind that could not
    # be read, turns it into "nothing found in what was seen" (unknown is not broken, and not ok either)
    unseen = [c["id"] for c in report["checks"]
              if c["status"] == "not_evaluated" or any(g.get("not_evaluated") for g in c["groups"])]
    unread = [g["kind"] for g in report["gaps"]]
    missing = "; ".join(part for part in (f"not evaluated: {', '.join(unseen)}" if unseen else "",
                                          f"cannot read: {', '.join(unread)}" if unread else "") if part)
    ok = f"nothing found in what was seen; {escape(missing)}" if missing else "ok"
    verdict = {0: ok, 1: f"findings at or above {fail_on}", 3: "cluster or nodes unreachable"}.get(
        report["exit_code"], "error")
    con.print(f"exit {report['exit_code']}: {verdict}" + ("" if fail_on else " (--fail-on not set: never fails)"))
    return "\n".join(line.rstrip() for line in buf.getvalue().splitlines()) + "\n"


def _say(con: Console, indent: int, markup: str) -> None:
    """Print with a hanging indent so wrapped lines stay under their label."""
    con.print(Padding(Text.from_markup(markup), (0, 0, 0, indent), expand=False))


def _command(con: Console, command: str, indent: int = 11) -> None:
    """A command on one line, never wrapped: a wrapped command pasted into a shell is another command."""
    con.print(Text(" " * indent + "$ " + command), soft_wrap=True)


def _causes(con: Console, report: Mapping[str, Any]) -> None:
    """One headline per root cause with the commands of the cause and its consequences, once."""
    causes = report.get("causes") or []
    if not causes:
        return
    con.rule(f"[bold]Root causes[/] ({len(causes)})", align="left")
    for cause in causes[:_MAX_CAUSES]:
        sev = cause["severity"]
        _say(con, 0, f"[{_STYLE[sev]}]{sev.upper():<8}[/] [bold]{escape(cause['headline'])}[/]")
        for c in cause["consequences"][:_MAX_EVIDENCE]:
            _say(con, 9, f"[dim]-> {escape(c['check'])} {escape(c['subject'])}[/]")
        if len(cause["consequences"]) > _MAX_EVIDENCE:
            _say(con, 9, f"[dim]-> ... {len(cause['consequences']) - _MAX_EVIDENCE} more (listed below)[/]")
        for cmd in cause["commands"][:_MAX_COMMANDS]:
            _command(con, cmd, 9)
        if len(cause["commands"]) > _MAX_COMMANDS:
            _say(con, 11, f"[dim]... {len(cause['commands']) - _MAX_COMMANDS} more commands (-o json)[/]")
        con.print()
    if len(causes) > _MAX_CAUSES:
        _say(con, 0, f"[dim]... {len(causes) - _MAX_CAUSES} more root causes (-o json, -o html)[/]")
        con.print()


def _group(con: Console, report: Mapping[str, Any], g: Mapping[str, Any]) -> None:
    """One group as a two-column grid: the severity label, then a hanging-indented block."""
    sev = g["severity"]
    grid = Table.grid(padding=(0, 1))
    grid.add_column(width=8, no_wrap=True)
    grid.add_column(overflow="fold")

    def row(markup: str, label: str = "") -> None:
        grid.add_row(Text.from_markup(label), Text.from_markup(markup))

    row(f"[bold]{escape(g['subject'])}[/][dim]{escape(where(g))}[/]", f"[{_STYLE[sev]}]{sev.upper()}[/]")
    row(escape(g["message"]))
    view = layout.group_view(report, g)
    if view.cause:
        row(f"[magenta]cause:[/] {escape(view.cause)}")
    if g["silenced"]:
        row(f"[magenta]silenced:[/] {escape(g['silenced_reason'])}")
    evidence = view.evidence
    for scope, line in evidence[:_MAX_EVIDENCE]:
        prefix = f"{escape(scope)}: " if view.scopes > 1 else ""
        row(f"[dim]evidence[/] {prefix}{escape(line)}")
    if len(evidence) > _MAX_EVIDENCE:
        row(f"[dim]... {len(evidence) - _MAX_EVIDENCE} more evidence lines (-o json)[/]")
    commands: list[str] = []
    if view.remedy is not None and not g["silenced"]:  # a silenced group's fix is not repeated here
        commands, covered = view.commands, view.covered
        if view.remedy:
            row(f"[green]fix[/] {escape(view.fix)}")
        if covered:
            row(f"  [dim]{covered} command{'s' if covered != 1 else ''} listed under its root cause above[/]")
    con.print(grid)
    for cmd in commands[:_MAX_COMMANDS]:
        _command(con, cmd)
    if len(commands) > _MAX_COMMANDS:
        _say(con, 11, f"[dim]... {len(commands) - _MAX_COMMANDS} more commands (-o json)[/]")
    con.print()
