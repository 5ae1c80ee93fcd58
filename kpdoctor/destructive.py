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
from collections.abc import Sequence

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


def command_part(command: str | Sequence[str]) -> str:
    """The shell command without its trailing comment, quotes removed, so that `kubectl delete 'daemonset'`
    and `kubectl delete daemonset` read alike. A `#` starts a comment only at the start of a word outside
    quotes (as in the shell): a quoted value holding `#` (a rule's --comment) is not cut there; a quoted
    phrase (with spaces) is a value and reads as `_`. An argv
    (a list of words, e.g. from `kpdoctor.shellcmd`) is read word by word: nothing in it is a comment."""
    if not isinstance(command, str):
        return " ".join(command)
    out: list[str] = []
    quoted: list[str] = []
    quote = ""
    prev = " "
    for ch in command:
        if quote:
            if ch == quote:
                quote = ""
                word = "".join(quoted)
                # one quoted word reads as itself ('daemonset'); a quoted phrase is a value, never a command
                out.append(word if word and not any(c.isspace() for c in word) else "_")
                quoted = []
            else:
                quoted.append(ch)
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and prev.isspace():
            break
        else:
            out.append(ch)
        prev = ch
    return "".join(out)


def is_destructive(command: str | Sequence[str]) -> bool:
    """True when running `command` removes kube-proxy's objects or rules (a comment never is)."""
    text = command_part(command)
    return bool(text.strip()) and any(p.search(text) for p in _PATTERNS)


def comment_out(command: str) -> str:
    """`command` as a shell comment: pasting it into a shell runs nothing."""
    return command if command.lstrip().startswith("#") else "# " + command
