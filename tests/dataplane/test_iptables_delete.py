"""kpdoctor/dataplane/iptables_delete.py: a saved `-A` rule becomes the `-D` command for exactly that rule.

Moved here with the function from tests/security/test_sec_shellcmd.py (kpdoctor.shellcmd no longer knows
iptables); the hostile rule texts are the same.
"""

from __future__ import annotations

import shlex

from kpdoctor.dataplane.iptables_delete import iptables_delete


def test_iptables_delete_keeps_rule_arguments_and_refuses_smuggled_commands() -> None:
    rule = '-A INPUT -m comment --comment "$(id); x" -j DROP'
    assert shlex.split(iptables_delete("iptables", "filter", rule)) == [
        "iptables", "-t", "filter", "-D", "INPUT", "-m", "comment", "--comment", "$(id); x", "-j", "DROP"]
    assert iptables_delete("iptables", "filter", "-A INPUT -F").startswith("# command not offered")
    assert iptables_delete("iptables", "filter", '-A INPUT -m comment --comment "x').startswith("# command not")
    assert iptables_delete("iptables", "filter", "-I INPUT -j DROP").startswith("# command not offered")


def test_iptables_delete_carries_the_node_and_note_into_the_trailing_comment() -> None:
    line = iptables_delete("ip6tables", "filter", "-A KUBE-FW -p tcp --dport 30080 -j DROP", on="n1", note=", or x")
    assert line == "ip6tables -t filter -D KUBE-FW -p tcp --dport 30080 -j DROP   # on n1, or x"
