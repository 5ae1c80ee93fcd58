"""kpdoctor/shellcmd.py: every kind of part, with hostile values, renders as one inert line."""

from __future__ import annotations

import shlex

import pytest

from kpdoctor.shellcmd import Lit, Name, command, escape_text

HOSTILE = ["$(id)", "`id`", "a;id", "a'b", 'a"b', "a b", "-rf", "--all", "*", "~root", "a|b", "a&&b"]


@pytest.mark.parametrize("value", HOSTILE)
def test_a_value_is_one_literal_word(value: str) -> None:
    line = command("kubectl", "get", value, Lit("|"), "grep", value)
    assert shlex.split(line) == ["kubectl", "get", value, "|", "grep", value]


@pytest.mark.parametrize("value", HOSTILE + ["A", "a_b", "a" * 254, ""])
def test_a_name_that_is_not_a_kubernetes_name_makes_the_command_not_offered(value: str) -> None:
    line = command("kubectl", "delete", "pod", Name(value))
    assert line.startswith("# command not offered: ") and "\n" not in line


@pytest.mark.parametrize("node", ["n1\nid", "n1\rid", "n1\u2028id", "n1\u202eid", "n1\x1b[2Jid", "n1\x00id"])
def test_a_node_name_cannot_leave_the_trailing_comment(node: str) -> None:
    line = command("conntrack", "-S", on=node)
    assert line.startswith("conntrack -S   # on n1\\") and "\n" not in line and "\r" not in line
    assert all(c.isprintable() for c in line)


@pytest.mark.parametrize("value", ["a\nid", "a\u202e", "a\x07"])
def test_a_value_with_invisible_characters_is_not_offered(value: str) -> None:
    line = command("iptables", "-L", value)
    assert line.startswith("# command not offered") and all(c.isprintable() for c in line)


def test_escape_text_shows_bidi_and_controls() -> None:
    assert escape_text("a\u202eb\x1bc\U000e0001") == "a\\u202eb\\x1bc\\U000e0001"
