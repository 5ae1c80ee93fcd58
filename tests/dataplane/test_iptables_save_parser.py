"""The iptables-save parser and normalizer: errors name file:line, fuzzed, round-trips what it accepts."""

from __future__ import annotations

import random
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kpdoctor.dataplane.iptables_save import (
    load_iptables_save,
    normalize,
    normalize_text,
    parse_iptables_save,
    quote_arg,
    sorted_service_rules,
    tokenize,
)
from kpdoctor.errors import InputError
from tests.support.errors import input_error_at
from tests.support.iptables import GOLDEN, iptables_scenarios

V2_DUMP = GOLDEN / "V2-nodeport-lb" / "iptables" / "iptables-save.txt"
LEGACY_DUMP = GOLDEN / "V1-basic-clusterip" / "iptables-legacy" / "iptables-legacy-save.txt"


def test_parses_every_golden_dump() -> None:
    for scenario in iptables_scenarios():
        for path in sorted(scenario.glob("iptables*/*tables*save.txt")):
            dump = load_iptables_save(str(path))
            if path.name == "iptables-save.txt" and path.parent.name == "iptables-legacy":
                assert dump.tables == {}  # only the "legacy tables present" warning
                continue
            assert set(dump.tables) == {"mangle", "filter", "nat"}, path
            lines = [ln for ln in path.read_text().splitlines() if ln.startswith("-A ")]
            assert dump.rule_count() == len(lines)


def test_rules_keep_their_line_numbers_and_text() -> None:
    dump = load_iptables_save(str(V2_DUMP))
    text = V2_DUMP.read_text().splitlines()
    for table in dump.tables.values():
        for chain in table.chains.values():
            for rule in chain.rules(table.name):
                assert text[rule.line - 1] == rule.text
    rule = next(r for r in dump.rules("nat", "KUBE-SVC-PKHOLXG2D2IEPT4N") if r.option("--probability"))
    assert rule.comment == "web/shop-lb-local:http -> 10.244.1.21:8080"
    assert rule.target == "KUBE-SEP-GCEQIP6OJBKOCZI4"


def test_counters_variant_round_trips() -> None:
    text = "*filter\n:INPUT ACCEPT [5:300]\n:X - [0:0]\n[3:180] -A INPUT -j X\n-A X -j ACCEPT\nCOMMIT\n"
    dump = parse_iptables_save(text, "c.txt")
    assert [r.counters for r in dump.rules("filter", "INPUT")] == ["[3:180]"]
    assert dump.to_text() == text
    assert normalize(dump) == "*filter\n:INPUT ACCEPT [0:0]\n:X - [0:0]\n-A INPUT -j X\n-A X -j ACCEPT\nCOMMIT\n"


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("*nat\n:A - [0:0]\nthis is garbage\nCOMMIT\n", 3, "not an iptables-save line"),
        ("-A INPUT -j ACCEPT\n", 1, "rule outside a table"),
        ("*nat\n-A NOPE -j ACCEPT\nCOMMIT\n", 2, "not declared"),
        ("*nat\n:A - [0:0]\n-A A -m comment --comment \"open\nCOMMIT\n", 3, "unterminated quote"),
        ("*nat\n:A BOGUS [0:0]\nCOMMIT\n", 2, "bad chain line"),
        ("*nat\n:A - [x:0]\nCOMMIT\n", 2, "bad chain line"),
        ("*nat\n:A - [0:0]\n:A - [0:0]\nCOMMIT\n", 3, "declared twice"),
        ("*nat\n*filter\nCOMMIT\n", 2, "before COMMIT"),
        ("COMMIT\n", 1, "COMMIT without a table"),
        ("*nat\n:A - [0:0]\n-I A -j ACCEPT\nCOMMIT\n", 3, "unsupported command"),
        ("*nat\n:A - [0:0]\n-A A -j ACCEPT\n", 3, "truncated"),
        ("*nat\nCOMMIT\n*nat\nCOMMIT\n", 3, "appears twice"),
        ("*nat\n:A - [0:0]\n[1:2]-A A\nCOMMIT\n", 3, "bad counters"),
    ],
)
def test_errors_name_file_line_and_quote_the_line(text: str, line: int, fragment: str) -> None:
    error = input_error_at(parse_iptables_save, text, "node1/iptables-save.txt", line, fragment)
    if "truncated" not in fragment:
        bad = text.splitlines()[line - 1]
        assert repr(bad) in str(error)


def test_garbage_line_in_a_real_dump_is_located() -> None:
    lines = V2_DUMP.read_text().splitlines()
    lines.insert(40, "Segmentation fault (core dumped)")
    with pytest.raises(InputError) as info:
        parse_iptables_save("\n".join(lines), "dump.txt")
    assert info.value.where == "dump.txt:41"
    assert "'Segmentation fault (core dumped)'" in str(info.value)


def test_crlf_and_comments_are_tolerated() -> None:
    text = V2_DUMP.read_text()
    assert normalize_text(text.replace("\n", "\r\n")) == normalize_text(text)


def test_normalization_removes_only_service_order() -> None:
    dump = load_iptables_save(str(V2_DUMP))
    reference = normalize(dump)
    # Shuffling per-service rules of KUBE-SERVICES / KUBE-NODEPORTS (Go map order) changes nothing ...
    rng = random.Random(7)
    for table, chain in (("nat", "KUBE-SERVICES"), ("nat", "KUBE-NODEPORTS"), ("filter", "KUBE-EXTERNAL-SERVICES")):
        specs = dump.tables[table].chains[chain].specs
        blocks: dict[str, list[str]] = {}
        for spec in specs:
            blocks.setdefault(spec.split("--comment ")[1].strip('"').split()[0].strip('"'), []).append(spec)
        keys = list(blocks)
        rng.shuffle(keys)
        shuffled = [s for k in keys for s in blocks[k]]
        if chain == "KUBE-SERVICES" and table == "nat":
            shuffled = [s for s in shuffled if "must be the last" not in s] + [s for s in specs if "must be the last" in s]
        assert sorted_service_rules(shuffled) == sorted_service_rules(specs)
    # ... but reordering endpoints of a service (the probability ladder) is a real difference.
    text = V2_DUMP.read_text()
    a = "-A KUBE-SVC-YAJPJG7ZWPQMMX5F -m comment --comment \"web/site-np:http -> 10.244.1.20:8080\""
    b = "-A KUBE-SVC-YAJPJG7ZWPQMMX5F -m comment --comment \"web/site-np:http -> 10.244.2.20:8080\""
    swapped = text.replace(a, "@@A@@").replace(b, a).replace("@@A@@", b)
    assert normalize_text(swapped) != reference
    assert normalize_text(text.replace("0.33333333349", "0.33333333333")) != reference


def test_tokenize_and_quote() -> None:
    assert tokenize('-m comment --comment "a b" -j X') == ["-m", "comment", "--comment", "a b", "-j", "X"]
    assert tokenize('--comment "say \\"hi\\"" -j X') == ["--comment", 'say "hi"', "-j", "X"]
    assert tokenize("--nfacct-name  ct_state_invalid_dropped_pkts") == ["--nfacct-name", "ct_state_invalid_dropped_pkts"]
    with pytest.raises(ValueError):
        tokenize('--comment "open')


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r"), max_size=40))
def test_quote_then_tokenize_round_trips(arg: str) -> None:
    assert tokenize(quote_arg(arg)) == [arg]


_FRAGMENTS = [
    "*filter", "*nat", "*mangle", "COMMIT", ":INPUT ACCEPT [0:0]", ":KUBE-X - [0:0]", ":KUBE-Y - [1:2]",
    "-A INPUT -j KUBE-X", "-A KUBE-X -m comment --comment \"a b\" -j ACCEPT", "-A KUBE-Y -s 10.0.0.1/32",
    "[1:2] -A KUBE-X -j DROP", "# Generated by iptables-save", "", "-A KUBE-X", "garbage", ":BAD", "-A KUBE-X \"",
    "-A KUBE-Y -m comment --comment \"q \\\" x\" -j RETURN", "*", ":X - [0:0] extra", "-I INPUT 1",
]


@st.composite
def dump_like_text(draw: st.DrawFn) -> str:
    lines = draw(st.lists(st.one_of(st.sampled_from(_FRAGMENTS),
                                    st.text(alphabet=string.printable.replace("\n", "").replace("\r", ""),
                                            max_size=30)), max_size=30))
    return "\n".join(lines)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dump_like_text())
def test_fuzz_never_raises_anything_but_input_error_and_round_trips(text: str) -> None:
    try:
        dump = parse_iptables_save(text, "fuzz.txt")
    except InputError as exc:
        assert exc.where is not None and exc.where.startswith("fuzz.txt:")
        return
    again = parse_iptables_save(dump.to_text(), "again.txt")
    assert again.to_text() == dump.to_text()
    assert normalize(again) == normalize(dump)


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=0, max_value=10_000), st.sampled_from(["\x00", "\t", "-Q", "*x y", ":", "\"", "[]"]))
def test_fuzz_mutating_a_real_dump(position: int, junk: str) -> None:
    text = LEGACY_DUMP.read_text()
    pos = position % len(text)
    mutated = text[:pos] + junk + text[pos:]
    try:
        dump = parse_iptables_save(mutated, "legacy.txt")
    except InputError as exc:
        assert exc.where is not None and exc.where.startswith("legacy.txt:")
        return
    assert parse_iptables_save(dump.to_text(), "again").to_text() == dump.to_text()
