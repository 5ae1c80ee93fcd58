"""A rule as iptables-save printed it (`-A CHAIN ARGS...`) turned into the command that deletes exactly it.

It lives beside the iptables-save tokenizer it splits the rule with (the one reader of that quoting);
`kpdoctor.shellcmd` quotes every argument again for the shell and knows nothing of iptables.
"""

from __future__ import annotations

from kpdoctor.dataplane.iptables_save import tokenize
from kpdoctor.shellcmd import command, escape_text

# iptables options that are commands of their own: a rule text holding one would make `-D` do something else.
_IPT_COMMANDS = frozenset({"-A", "--append", "-C", "--check", "-D", "--delete", "-I", "--insert", "-R", "--replace",
                           "-L", "--list", "-S", "--list-rules", "-F", "--flush", "-Z", "--zero", "-N", "--new-chain",
                           "-X", "--delete-chain", "-P", "--policy", "-E", "--rename-chain", "-t", "--table"})


def iptables_delete(tool: str, table: str, rule_line: str, *, on: str | None = None, note: str = "") -> str:
    """`TOOL -t TABLE -D CHAIN ARGS...` that deletes exactly the rule `-A CHAIN ARGS...` printed by iptables-save.

    The rule text is split the way iptables-save quotes it, and every argument is quoted again for the
    shell. A rule whose text holds another iptables command option is not offered.
    """
    try:
        args = tokenize(rule_line)
    except ValueError:
        return "# command not offered: the rule text has an unterminated quote"
    if len(args) < 2 or args[0] != "-A":
        return "# command not offered: the rule text does not start with -A CHAIN"
    extra = [a for a in args[2:] if a in _IPT_COMMANDS]
    if extra:
        return f"# command not offered: the rule text holds the iptables command option {escape_text(extra[0])}"
    return command(tool, "-t", table, "-D", *args[1:], on=on, note=note)
