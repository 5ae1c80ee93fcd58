"""kpdoctor.dataplane.iptables_delta: a dump as a reference dump plus the chains that differ.

The reference is a real kube-proxy v1.36 dump (B2 bundle, kind cluster); the other dumps are it
with one rule edited, one chain added, or everything reordered. Each delta's chains must equal
what the full parser gives for the edited dump itself, with the edited dump's own line numbers."""

from __future__ import annotations

from pathlib import Path

from kpdoctor.dataplane.iptables_delta import DELTA_MIN_LINES, IptablesRefs, align, align_text
from kpdoctor.dataplane.iptables_save import parse_iptables_save

DUMP = (Path(__file__).resolve().parents[1] / "fixtures" / "bundles" / "B2-stale-endpoint" / "bundle" / "nodes" / "edge-1"
        / "iptables-save.txt").read_text(encoding="utf-8")


def _refs() -> IptablesRefs:
    refs = IptablesRefs(min_lines=50)
    refs.offer(DUMP, parse_iptables_save(DUMP, "ref"), "edge-1")
    assert len(refs.refs) == 1
    return refs


def _rules(chain: object) -> list[tuple[int, str]]:
    return [(i, chain.src[i]) for i in chain.idx]  # type: ignore[attr-defined]


def test_short_dumps_are_no_reference() -> None:
    refs = IptablesRefs()
    assert refs.min_lines == DELTA_MIN_LINES
    refs.offer(DUMP, parse_iptables_save(DUMP, "ref"), "edge-1")  # 155 lines: parsed in full, never a reference
    assert refs.refs == [] and refs.delta(DUMP, "x") is None


def test_identical_dump_is_an_empty_delta() -> None:
    delta = _refs().delta(DUMP, "edge-2/iptables-save.txt")
    assert delta is not None and delta.changed == {} and not delta.decl_changed


def test_one_edited_rule_changes_only_its_chain() -> None:
    old = '-A KUBE-SEP-7CYT23P3V2HPWEB5 -s 10.244.52.41/32 -m comment --comment "payments/pay-dns:dns" -j KUBE-MARK-MASQ'
    assert old in DUMP
    text = DUMP.replace(old, old.replace("10.244.52.41", "10.244.52.99"))
    delta = _refs().delta(text, "edge-2/iptables-save.txt")
    assert delta is not None
    assert set(delta.changed) == {("nat", "KUBE-SEP-7CYT23P3V2HPWEB5")}
    own = parse_iptables_save(text, "own")
    for table, t in own.tables.items():
        for name, chain in t.chains.items():
            got = delta.chain(table, name)
            assert got is not None and _rules(got) == _rules(chain), (table, name)
            assert got.line == chain.line


def test_a_new_chain_is_a_declaration_change() -> None:
    marker = ":KUBE-SERVICES - [0:0]"
    assert marker in DUMP
    text = DUMP.replace(marker, marker + "\n:KUBE-SEP-NEWCHAIN0000000 - [0:0]", 1)
    delta = _refs().delta(text, "edge-2/iptables-save.txt")
    assert delta is not None and delta.decl_changed
    own = parse_iptables_save(text, "own")
    tables = [t for t, tab in own.tables.items() if "KUBE-SEP-NEWCHAIN0000000" in tab.chains]
    assert len(tables) == 1  # the first table declaring KUBE-SERVICES (filter, in kube-proxy's dump)
    assert set(delta.changed) == {(tables[0], "KUBE-SEP-NEWCHAIN0000000")}
    assert delta.chain(tables[0], "KUBE-SEP-NEWCHAIN0000000") is not None


def test_a_very_different_dump_is_no_delta() -> None:
    lines = DUMP.split("\n")
    shuffled = "\n".join(lines[:3] + sorted(lines[3:-3]) + lines[-3:])
    assert _refs().delta(shuffled, "x") is None


def test_align_text_equals_align() -> None:
    ref = _refs().refs[0]
    pos, dups = ref.positions()
    text = DUMP.replace("KUBE-MARK-MASQ", "KUBE-MARK-MASQ2", 3)
    want = align(text.split("\n"), ref.lines, pos, dups, 10**6)
    got = align_text(text, ref, pos, dups, 10**6)
    assert want is not None and got is not None
    assert (got[0], got[1]) == want and list(got[2]) == text.split("\n")
