"""Which printed commands destroy kube-proxy's state: one definition for the gate and the scan report.

A command is destructive when running it removes kube-proxy's objects (its
DaemonSet or ConfigMap) or the Service rules it wrote (flushing KUBE-* chains,
restoring a dump filtered of them, deleting the `kube-proxy` nft table, clearing
IPVS, deleting `kube-ipvs0` or the KUBE-* ipsets, `kube-proxy --cleanup`). On a
node where those rules are the only thing serving Services, running one takes
every Service down there, so such commands are printed only when something else
serves (see `kpdoctor.gate.safety` and `kpdoctor.withhold`) and otherwise only
commented out.
"""

from __future__ import annotations

import re

_PATTERNS = (
    re.compile(r"\bkubectl\b.*\bdelete\s+(daemonsets?|ds|configmaps?|cm)\b"),
    re.compile(r"\|\s*\S*ip6?tables(-legacy|-nft)?-restore\b"),  # save | grep -v KUBE | restore
    re.compile(r"\bip6?tables(-legacy|-nft)?\b.*\s(-F|-X|--flush|--delete-chain)\b"),
    re.compile(r"\bnft\s+(delete|flush|destroy)\s+(table|chain|ruleset|set|map)\b"),
    re.compile(r"\bipvsadm\s+(--clear|-C)\b"),
    re.compile(r"\bip\s+link\s+del(ete)?\s+kube-ipvs0\b"),
    re.compile(r"\bipset\b.*\b(destroy|flush|-X|-F)\b"),
    re.compile(r"\bkube-proxy\s+--cleanup\b"),
)
NOT_SAFE_HEADER = "NOT SAFE TO RUN: the gate did not pass"


def command_part(command: str) -> str:
    """The shell command without its trailing `# ...` comment (a line starting with `#` is all comment)."""
    return command.split("#", 1)[0]


def is_destructive(command: str) -> bool:
    """True when running `command` removes kube-proxy's objects or rules (a comment never is)."""
    text = command_part(command)
    return bool(text.strip()) and any(p.search(text) for p in _PATTERNS)


def comment_out(command: str) -> str:
    """`command` as a shell comment: pasting it into a shell runs nothing."""
    return command if command.lstrip().startswith("#") else "# " + command
