"""A node check that saw none of the facts it reads has not evaluated anything: say so, never "passed".

Checks declare the node facts they read (`Check.reads`, bundle keys; a key ending in `/` is a folder). When a
node check produced no finding on a node where none of those facts is present, the engine adds one INFO
"not evaluated" finding naming what was missing and how to collect it, so the report's per-check status is
"not evaluated" rather than "passed" for a node nothing was collected from.
"""

from __future__ import annotations

from kpdoctor.checks_api import Check
from kpdoctor.findings import Finding, Remediation, Severity
from kpdoctor.node.state import NodeState


def saw_any(check: Check, node: NodeState) -> bool:
    """Whether any fact the check reads is present on the node (True when the check declares none)."""
    if not check.reads:
        return True
    for key in check.reads:
        if key.endswith("/"):
            if any(k.startswith(key) and f.present for k, f in node.facts.items()):
                return True
        elif node.fact(key).present:
            return True
    return False


def unseen_finding(check: Check, node: NodeState) -> Finding:
    shown = ", ".join(check.reads[:6]) + (", ..." if len(check.reads) > 6 else "")
    return Finding(
        check_id=check.id,
        severity=Severity.INFO,
        scope=node.name,
        subject=f"Node {node.name}",
        message=f"not evaluated on node {node.name}: none of the facts {check.id} reads was collected ({shown})",
        evidence=tuple(node.fact(k.rstrip("/") if not k.endswith("/") else k).evidence() for k in check.reads[:3]),
        remediation=Remediation(
            "Collect the node's facts (`kpdoctor collect`, or a node transport: --transport ssh|kube-exec|local) "
            "and scan again.",
            (f"kpdoctor node {node.name} --transport ssh",),
        ),
        docs=check.docs_url(),
        not_evaluated=True,
    )
