"""What every renderer shows in the same way: the order of checks, the summary line, a group's heading, and
what a group says (`GroupView`: its cause, evidence, fix and the commands not already under its cause).

Console, Markdown, HTML and JUnit all take the order of checks from
`ordered_checks` (severity first, then cause: a cause's check before the
checks of its consequences), so the five renderings list the same findings
in the same order (JSON keeps the run order; its `causes` list is in this
order too).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kpdoctor.report.model import SEVERITIES

PIPED_WIDTH = 160  # console reports written to a pipe or file (a terminal's own width otherwise)


def console_width(stream: Any) -> int | None:
    """The width every command renders its console report at: the terminal's, or None (PIPED_WIDTH) piped."""
    import shutil

    return shutil.get_terminal_size((110, 24)).columns if stream.isatty() else None


def _group_rank(g: Mapping[str, Any]) -> int:
    return SEVERITIES.index(g["severity"]) + (10 if g["silenced"] else 0)


def ordered_checks(report: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Checks that have groups: worst group first; among equals, the check of an earlier cause first."""
    causes = [c["id"] for c in report.get("causes", ())]
    cause_checks = [c["check"] for c in report.get("causes", ())]

    def cause_pos(check: Mapping[str, Any]) -> int:
        refs = [g.get("cause", "") for g in check["groups"]]
        pos = [causes.index(r) for r in refs if r in causes]
        if check["id"] in cause_checks:
            pos.append(cause_checks.index(check["id"]))
        return min(pos, default=len(causes))

    indexed = [(i, c) for i, c in enumerate(report["checks"]) if c["groups"]]
    indexed.sort(key=lambda ic: (min(_group_rank(g) for g in ic[1]["groups"]), cause_pos(ic[1]), ic[0]))
    return [c for _i, c in indexed]


def visible_groups(check: Mapping[str, Any], min_severity: str | None) -> list[Mapping[str, Any]]:
    if not min_severity:
        return list(check["groups"])
    limit = SEVERITIES.index(min_severity)
    return [g for g in check["groups"] if SEVERITIES.index(g["severity"]) <= limit]


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def affected(report: Mapping[str, Any]) -> str:
    """"3 Services affected on 2 nodes (edge-1, edge-2); 1 root cause" over unsilenced, evaluated groups at
    warning or worse; "" when there are none."""
    services: set[str] = set()
    nodes: set[str] = set()
    for check in report["checks"]:
        for g in check["groups"]:
            if g["silenced"] or g["not_evaluated"] or SEVERITIES.index(g["severity"]) > SEVERITIES.index("warning"):
                continue
            nodes.update(g["nodes"])
            for occ in g["occurrences"]:
                if occ["subject"].startswith("Service "):
                    services.add(occ["subject"].split(":", 1)[0])
    for cause in report.get("causes", ()):
        nodes.update(cause["nodes"])
        services.update(c["subject"].split(":", 1)[0] for c in cause["consequences"]
                        if c["subject"].startswith("Service "))
    if not services and not nodes:
        return ""
    shown = ", ".join(sorted(nodes)[:8]) + (f" +{len(nodes) - 8} more" if len(nodes) > 8 else "")
    if services:
        text = f"{_plural(len(services), 'Service')} affected" + (f" on {_plural(len(nodes), 'node')}" if nodes else "")
    else:
        text = f"{_plural(len(nodes), 'node')} affected"
    text += f" ({shown})" if nodes else ""
    n_causes = len(report.get("causes", ()))
    return text + (f"; {_plural(n_causes, 'root cause')}" if n_causes else "")


def where(group: Mapping[str, Any]) -> str:
    """" on edge-2" / " on 3 nodes: a, b, c"; "" when the subject already names its only node."""
    nodes = group["nodes"]
    if not nodes or (len(nodes) == 1 and nodes[0] in group["subject"]):
        return ""
    if len(nodes) == 1:
        return f" on {nodes[0]}"
    shown = ", ".join(nodes[:8]) + (f" +{len(nodes) - 8} more" if len(nodes) > 8 else "")
    return f" on {len(nodes)} nodes: {shown}"


def commands_to_show(report: Mapping[str, Any], group: Mapping[str, Any]) -> tuple[list[str], int]:
    """The group's commands not already printed under its cause, and how many were left out for that."""
    from kpdoctor.report.causes import covered_commands

    rem = group.get("remediation") or {}
    covered = covered_commands(report, group)
    shown = [c for c in rem.get("commands", ()) if c not in covered]
    return shown, len(rem.get("commands", ())) - len(shown)


def cause_of(report: Mapping[str, Any], group: Mapping[str, Any]) -> Mapping[str, Any] | None:
    return next((c for c in report.get("causes", ()) if c["id"] == group.get("cause")), None)


def cause_line(report: Mapping[str, Any], group: Mapping[str, Any]) -> tuple[str, bool]:
    """("<check> <subject> (see Root causes)[: what the cause makes of this finding]", whether the cause
    outranks the finding's own fix): e.g. an eTP=Local "drops by design" note whose Service no node can serve."""
    cause = cause_of(report, group)
    if cause is None:
        return "", False
    extra = next((c["message"] for c in cause["consequences"]
                  if c["group"] == group.get("id") and c["severity"] != group["severity"]), "")
    return f"{cause['check']} {cause['subject']} (see Root causes)" + (f": {extra}" if extra else ""), bool(extra)


AFTER_CAUSE = "Once the root cause is fixed: "


@dataclass(frozen=True)
class GroupView:
    """A finding group as the renderers show it; each renderer only formats (and escapes) these parts."""

    cause: str  # "<check> <subject> (see Root causes)[: ...]", "" without a cause
    outranks: bool  # the cause changes what this finding's own fix means (the fix then says so first)
    evidence: list[tuple[str, str]]  # (occurrence scope, line), in occurrence order
    scopes: int  # distinct occurrence scopes
    occurrences: int
    remedy: str | None  # the remediation text as written; None: the group has no remediation
    commands: list[str]  # its commands not already printed under its cause
    covered: int  # how many of its commands were left out for that

    @property
    def fix(self) -> str:
        """The remediation text, after "Once the root cause is fixed: " when the cause outranks it."""
        return (AFTER_CAUSE if self.outranks else "") + (self.remedy or "")

    def evidence_lines(self) -> list[str]:
        """Evidence as one list, each line after "<scope>: " when the group has several occurrences."""
        return [f"{scope}: {line}" if self.occurrences > 1 else line for scope, line in self.evidence]


def group_view(report: Mapping[str, Any], group: Mapping[str, Any]) -> GroupView:
    cause, outranks = cause_line(report, group)
    rem = group.get("remediation")
    commands, covered = commands_to_show(report, group) if rem else ([], 0)
    return GroupView(
        cause=cause, outranks=outranks,
        evidence=[(o["scope"], e) for o in group["occurrences"] for e in o["evidence"]],
        scopes=len({o["scope"] for o in group["occurrences"]}), occurrences=len(group["occurrences"]),
        remedy=rem["text"] if rem else None, commands=commands, covered=covered,
    )  # fmt: skip


def passed_checks(report: Mapping[str, Any]) -> list[str]:
    """Ids of the checks that ran and found nothing (the renderers' "passed" line)."""
    return [c["id"] for c in report["checks"] if c["status"] == "passed"]
