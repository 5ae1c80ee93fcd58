"""The trace's lazy iptables reader (`kpdoctor.trace.ipt_lazy`) must read every chain exactly as the shared
parser does: same tables, chains, policies, counters, rule texts and line numbers, on every iptables-save
dump in the fixtures (real captures, real public dumps, bundles) and on a rendered kube-proxy dump whose
KUBE-SERVICES rules are interleaved with the Service chains; and any dump the shared parser rejects is
rejected with the same one-line error, naming the same file:line."""

from __future__ import annotations

from pathlib import Path

import pytest

from kpdoctor.dataplane.iptables_save import IptablesDump, parse_iptables_save
from kpdoctor.errors import InputError
from kpdoctor.trace.ipt_lazy import LazyDump, read_dump

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def _dumps() -> list[Path]:
    found = sorted(FIXTURES.glob("**/*tables*save*.txt")) + sorted(FIXTURES.glob("realworld/dumps/*/dump.txt"))
    out = []
    for path in found:
        try:
            parse_iptables_save(path.read_text(encoding="utf-8"), str(path))
        except (InputError, UnicodeDecodeError):
            continue  # not an iptables-save dump (nft listings, logs): the equivalence is over accepted ones
        out.append(path)
    return out


DUMPS = _dumps()


def assert_same(lazy: LazyDump | IptablesDump, full: IptablesDump) -> int:
    assert sorted(lazy.tables) == sorted(full.tables)
    rules = 0
    for name, table in full.tables.items():
        got = lazy.tables[name]
        assert got.line == table.line
        for chain in table.chains.values():
            read = got.chains.get(chain.name)
            assert read is not None, (name, chain.name)
            assert (read.policy, read.counters, read.line) == (chain.policy, chain.counters, chain.line)
            assert read.specs == chain.specs, (name, chain.name)
            assert list(read.lines) == chain.lines, (name, chain.name)
            rules += len(read.specs)
        assert got.chains.get("NOT-A-CHAIN-IN-THIS-DUMP") is None
    return rules


def test_the_fixture_corpus_is_not_empty() -> None:
    assert len(DUMPS) >= 30  # bundles, the trace capture, public dumps


@pytest.mark.parametrize("path", DUMPS, ids=[str(p.relative_to(FIXTURES)) for p in DUMPS])
def test_every_fixture_dump_reads_the_same(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert_same(read_dump(text, "x"), parse_iptables_save(text, "x"))


def test_most_fixture_dumps_are_read_lazily() -> None:
    """The lazy path is the one exercised (a layout check refusing everything would pass the test above)."""
    lazy = [p for p in DUMPS if isinstance(read_dump(p.read_text(encoding="utf-8"), "x"), LazyDump)]
    assert len(lazy) >= len(DUMPS) // 2, [str(p) for p in DUMPS if p not in lazy]


def test_rendered_kube_proxy_dump_with_interleaved_chains() -> None:
    """kube-proxy's restore input (rendered by the byte-exact reference proxier) writes each Service's
    KUBE-SERVICES rule between its KUBE-SVC/KUBE-SEP rules: a chain's rules are not one block."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
    from synth import SynthSpec, synth_cluster

    from kpdoctor.proxier.context import build_input
    from kpdoctor.proxier.render import render

    spec = SynthSpec(services=60, endpoints=3, nodes=2)
    text = render(build_input(synth_cluster(spec), spec.node_name(0)))
    lazy = read_dump(text, "n/iptables-save.txt")
    assert isinstance(lazy, LazyDump)
    assert assert_same(lazy, parse_iptables_save(text, "n/iptables-save.txt")) > 300


GOOD = "# Generated\n*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [3:180]\n:KUBE-X - [0:0]\n" \
       "-A INPUT -j KUBE-X\n-A KUBE-X -s 10.0.0.1/32 -m comment --comment \"a b\" -j DROP\n-A KUBE-X\nCOMMIT\n" \
       "# Completed\n*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n"

BAD = {
    "unterminated quote": GOOD.replace('"a b"', '"a b'),
    "undeclared chain": GOOD.replace("-A KUBE-X\n", "-A KUBE-Y -j DROP\n"),
    "declared twice": GOOD.replace(":KUBE-X - [0:0]\n", ":KUBE-X - [0:0]\n:KUBE-X - [0:0]\n"),
    "bad chain line": GOOD.replace(":FORWARD DROP [3:180]", ":FORWARD MAYBE [3:180]"),
    "no COMMIT": GOOD[: GOOD.rindex("COMMIT")],
    "table before COMMIT": GOOD.replace("COMMIT\n# Completed\n", ""),
    "unknown line": GOOD.replace("-A INPUT -j KUBE-X\n", "-I INPUT -j KUBE-X\n"),
    "garbage between tables": GOOD.replace("# Completed\n", "hello\n"),
}


def test_good_small_dump() -> None:
    lazy = read_dump(GOOD, "n/iptables-save.txt")
    assert isinstance(lazy, LazyDump)
    assert_same(lazy, parse_iptables_save(GOOD, "n/iptables-save.txt"))
    chain = lazy.tables["filter"].chains.get("KUBE-X")
    assert chain is not None and chain.specs[1] == "" and list(chain.lines) == [7, 8] and chain.lines[-1:] == [8]


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_dump_same_error_as_the_shared_parser(name: str) -> None:
    text = BAD[name]
    with pytest.raises(InputError) as expected:
        parse_iptables_save(text, "n/iptables-save.txt")
    with pytest.raises(InputError) as got:
        dump = read_dump(text, "n/iptables-save.txt")
        for table in ("filter", "nat"):
            for chain in ("INPUT", "FORWARD", "KUBE-X", "KUBE-Y", "PREROUTING"):
                dump.tables[table].chains.get(chain)
    assert str(got.value) == str(expected.value)


@pytest.mark.parametrize("variant", ["\r\n", "counters", "blank line in a table", "no final newline"])
def test_other_layouts_go_to_the_shared_parser_and_read_the_same(variant: str) -> None:
    text = {
        "\r\n": GOOD.replace("\n", "\r\n"),
        "counters": GOOD.replace("-A INPUT -j KUBE-X", "[5:300] -A INPUT -j KUBE-X"),
        "blank line in a table": GOOD.replace("-A INPUT", "\n-A INPUT"),
        "no final newline": GOOD.rstrip("\n"),
    }[variant]
    assert_same(read_dump(text, "x"), parse_iptables_save(text, "x"))
