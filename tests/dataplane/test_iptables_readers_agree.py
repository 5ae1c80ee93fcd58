"""One reader per format: every iptables-save reader gives the same tables, chains, rule counts and error lines.

The readers: the strict parser (`parse_iptables_save`), its lenient mode, the structure view the checks read
outside a scan (`kpdoctor.node.parsed.parse_iptables_view`) and inside one (`NodeDumps.light`, derived from the
scan's one full parse), the gate's leftover count (`kpdoctor.gate.cleanup.kube_proxy_chains`) and the node
summary's declared chains (`kpdoctor.node.summary.chains_by_table`: the parser, declarations only). The inputs are
hand-made odd and hostile shapes (this is the last resort the test says so: each is one thing a real dump or a
hostile node can hold - quoting, negation, CRLF, a cut dump, NUL, a 4 MiB line); the expected values are counted
by hand from each text, not taken from a parser.
"""

from __future__ import annotations

from types import MappingProxyType

import pytest

from kpdoctor.dataplane.iptables_save import line_chain, line_kind, parse_iptables_save
from kpdoctor.errors import InputError
from kpdoctor.gate.cleanup import kube_proxy_chains
from kpdoctor.node.dumps import NodeDumps
from kpdoctor.node.parsed import IptablesView, parse_iptables_view
from kpdoctor.node.state import Fact, NodeState
from kpdoctor.node.summary import chains_by_table

HEAD = "*nat\n:PREROUTING ACCEPT [0:0]\n:KUBE-SERVICES - [0:0]\n:KUBE-SVC-X - [0:0]\n"
BIG = "x" * (4 * 1024 * 1024)

# name -> (text, {table: [chains]}, rules, line of the strict parser's error or None)
CASES: dict[str, tuple[str, dict[str, list[str]], int, int | None]] = {
    "quoted comment with spaces and quotes": (
        HEAD + '-A KUBE-SERVICES -d 10.0.0.1/32 -m comment --comment "ns/a b:\\"p\\" c" -j KUBE-SVC-X\n'
        "-A KUBE-SVC-X -j RETURN\nCOMMIT\n",
        {"nat": ["PREROUTING", "KUBE-SERVICES", "KUBE-SVC-X"]}, 2, None),
    "comment a b and negations": (
        HEAD + '-A PREROUTING -m comment --comment "a b" -j KUBE-SERVICES\n'
        "-A KUBE-SERVICES ! -s 10.0.0.0/8 ! -i lo -j KUBE-SVC-X\nCOMMIT\n",
        {"nat": ["PREROUTING", "KUBE-SERVICES", "KUBE-SVC-X"]}, 2, None),
    "CRLF line ends": (
        (HEAD + "-A PREROUTING -j KUBE-SERVICES\nCOMMIT\n*filter\n:INPUT DROP [1:2]\n-A INPUT -j ACCEPT\nCOMMIT\n")
        .replace("\n", "\r\n"),
        {"nat": ["PREROUTING", "KUBE-SERVICES", "KUBE-SVC-X"], "filter": ["INPUT"]}, 2, None),
    "missing COMMIT (a cut dump)": (
        HEAD + "-A PREROUTING -j KUBE-SERVICES\n-A KUBE-SERVICES -j KUBE-SVC-X\n",
        {"nat": ["PREROUTING", "KUBE-SERVICES", "KUBE-SVC-X"]}, 2, 6),
    "NUL in a rule": (
        HEAD + '-A KUBE-SERVICES -m comment --comment "a\x00b" -j KUBE-SVC-X\nCOMMIT\n',
        {"nat": ["PREROUTING", "KUBE-SERVICES", "KUBE-SVC-X"]}, 1, None),
    "4 MiB line": (
        HEAD + f'-A KUBE-SERVICES -m comment --comment "{BIG}" -j KUBE-SVC-X\n-A KUBE-SVC-X -j RETURN\nCOMMIT\n',
        {"nat": ["PREROUTING", "KUBE-SERVICES", "KUBE-SVC-X"]}, 2, None),
    "unterminated quote": (
        HEAD + '-A KUBE-SERVICES -m comment --comment "a b -j KUBE-SVC-X\n-A KUBE-SVC-X -j RETURN\nCOMMIT\n',
        {"nat": ["PREROUTING", "KUBE-SERVICES", "KUBE-SVC-X"]}, 1, 5),
    "a line that is no iptables-save": (
        HEAD + "-A KUBE-SVC-X -j RETURN\nhello\n-I KUBE-SVC-X -j DROP\nCOMMIT\n",
        {"nat": ["PREROUTING", "KUBE-SERVICES", "KUBE-SVC-X"]}, 1, 6),
    "a rule for an undeclared chain (kept, declared '-')": (
        HEAD + "-A KUBE-SEP-Y -j DNAT --to-destination 10.1.0.1:80\nCOMMIT\n",
        {"nat": ["PREROUTING", "KUBE-SERVICES", "KUBE-SVC-X", "KUBE-SEP-Y"]}, 1, 5),
    "a line break only splitlines() knows (form feed)": (
        HEAD + '-A KUBE-SERVICES -m comment --comment "a\x0cb" -j KUBE-SVC-X\nCOMMIT\n',
        {"nat": ["PREROUTING", "KUBE-SERVICES", "KUBE-SVC-X"]}, 1, None),
    "lone carriage return inside a line": (
        HEAD + '-A KUBE-SERVICES -m comment --comment "a\rb" -j KUBE-SVC-X\nCOMMIT\n',
        {"nat": ["PREROUTING", "KUBE-SERVICES", "KUBE-SVC-X"]}, 1, None),
    "counters (iptables-save -c)": (
        HEAD + "[5:300] -A PREROUTING -j KUBE-SERVICES\n[0:0] -A KUBE-SERVICES -j KUBE-SVC-X\nCOMMIT\n",
        {"nat": ["PREROUTING", "KUBE-SERVICES", "KUBE-SVC-X"]}, 2, None),
    "a table declared twice": (
        HEAD + "COMMIT\n*nat\n:POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -j MASQUERADE\nCOMMIT\n",
        {"nat": ["PREROUTING", "KUBE-SERVICES", "KUBE-SVC-X", "POSTROUTING"]}, 1, 6),
}


def _structure(view: IptablesView) -> tuple[dict[str, list[str]], int]:
    return {t: list(chains) for t, chains in view.policies.items()}, view.rule_count


def _node(text: str) -> NodeState:
    return NodeState("n1", "bundle", MappingProxyType({"iptables-save.txt": Fact("iptables-save.txt", text)}))


@pytest.mark.parametrize("name", list(CASES))
def test_every_reader_agrees(name: str) -> None:
    text, chains, rules, error_line = CASES[name]
    # the strict parser: the structure, or one error naming the line
    if error_line is None:
        strict = parse_iptables_save(text, "dump")
        assert {t: list(tb.chains) for t, tb in strict.tables.items()} == chains
        assert strict.rule_count() == rules
    else:
        with pytest.raises(InputError) as exc:
            parse_iptables_save(text, "dump")
        assert exc.value.where == f"dump:{error_line}"
    # its lenient mode: the same structure (what it skipped left out), the same first error line
    lenient = parse_iptables_save(text, "dump", lenient=True)
    assert {t: list(tb.chains) for t, tb in lenient.tables.items()} == chains
    assert lenient.rule_count() == rules
    assert [p.where for p in lenient.problems][:1] == ([] if error_line is None else [f"dump:{error_line}"])
    # the structure views: outside a scan, inside one (from the scan's parse), and what the gate counts
    view = parse_iptables_view(text)
    in_scan = NodeDumps(_node(text)).light("iptables-save.txt")
    assert in_scan is not None
    assert _structure(view) == _structure(in_scan) == (chains, rules)
    assert kube_proxy_chains(view) == kube_proxy_chains(in_scan) == [
        c for t in chains for c in chains[t] if c.startswith("KUBE-")]
    # the node summary's reader (the same parser, lenient and declarations only: `rules=False`): the same declared
    # chains; it passes over the `-A` lines, so the chain of a rule without a declaration is not among them
    declared = {t: [c for c in names if c != "KUBE-SEP-Y"] for t, names in chains.items()}
    assert chains_by_table(text) == declared
    # rule line numbers agree too (the view numbers lines as the parser does: on "\n" only)
    for table in chains:
        for chain in chains[table]:
            got = [(r.lineno, r.target) for r in view.chain_rules(table, chain)]
            assert got == [(r.lineno, r.target) for r in in_scan.chain_rules(table, chain)]
            assert [n for n, _ in got] == [r.line for r in lenient.rules(table, chain)]


def test_the_4mib_rule_is_read_whole() -> None:
    view = parse_iptables_view(CASES["4 MiB line"][0])
    (rule,) = view.chain_rules("nat", "KUBE-SERVICES")
    assert rule.target == "KUBE-SVC-X" and len(rule.line) > 4 * 1024 * 1024


@pytest.mark.parametrize("name", list(CASES))
def test_the_line_classifier_is_the_parsers(name: str) -> None:
    """`line_kind`/`line_chain` (the delta engine's per-line view) say of each line what the parser did with it."""
    text = CASES[name][0]
    dump = parse_iptables_save(text, "dump", lenient=True)
    rules = {i: (c.name, t) for t, tb in dump.tables.items() for c in tb.chains.values() for i in c.idx}
    decls = {c.line - 1: c.name for tb in dump.tables.values() for c in tb.chains.values()}
    problems = {int(p.where.rsplit(":", 1)[1]) - 1 for p in dump.problems}
    lines = text.replace("\r\n", "\n").split("\n")
    for i, line in enumerate(lines):
        kind = line_kind(line)
        if kind == "rule":  # in the chain it names, or rejected with its line number
            assert rules[i][0] == line_chain(line, kind) if i in rules else i in problems, (i, line[:80])
        elif kind == "decl":
            assert decls[i] == line_chain(line, kind) if i in decls else i in problems, (i, line[:80])
        elif kind == "skip":
            assert i not in rules and i not in decls and i not in problems
        else:  # table lines, COMMIT, rules with counters, garbage: the parser's own business, never a declaration
            assert i not in decls
