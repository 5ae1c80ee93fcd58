"""Every real dump in the corpus (tests/fixtures/realworld/dumps/*: public issues, docs and blogs, each with its
SOURCE) can be traced without a crash.

Each dump goes through what `kpdoctor analyze` does with a paste (clean_paste, detect_format, the lenient
iptables parser), becomes the fact a collected bundle would hold (`iptables-save.txt` and `ip6tables-save.txt`
/ `nft-ruleset.json` / `nft-ruleset.txt` / `ipvsadm-save.txt`), and is traced for packets to the frontends the
dump itself names (from outside, from a pod address, from the node) plus one address no rule names; each
result is rendered as text (with --explain) and JSON. An iptables or nftables dump must give a trace (leaves,
or a bounded stop said in `error`); an IPVS or ipset dump alone has no rules to walk and must be refused
with kpdoctor's one-line InputError, never another exception; a text the corpus marks as not a dump
(`iptables -L`, nft chains without their table) is refused with the one-line error the corpus expects.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import MappingProxyType

import pytest

from kpdoctor.dataplane.analyze import analyze_text, detect_format
from kpdoctor.dataplane.iptables_lenient import parse_iptables_lenient
from kpdoctor.dataplane.paste import clean_paste
from kpdoctor.errors import InputError
from kpdoctor.node.state import Fact, NodeState
from kpdoctor.trace.addresses import Endpoint
from kpdoctor.trace.render import render_json, render_text
from kpdoctor.trace.run import TraceRequest, run_trace

REALWORLD = Path(__file__).resolve().parents[1] / "fixtures" / "realworld"
CORPUS = REALWORLD / "dumps"
# host firewalls as their users pasted them (ufw + Docker `iptables -S`, firewalld's `nft list table`): no expect.json,
# they are not kube-proxy dumps; each must trace like any other
FIREWALLS = REALWORLD / "firewalls"
DUMPS = sorted(p for corpus in (CORPUS, FIREWALLS) for p in corpus.iterdir() if (p / "dump.txt").is_file())
MAX_FRONTENDS = 6  # per dump: bounded
NODE = "10.0.0.1"
SOURCES = {4: ("203.0.113.10", "10.244.1.5", NODE), 6: ("2001:db8::10", "fd00:10:244::5", "fd00::1")}


def _facts(text: str, name: str) -> tuple[str, dict[str, str]]:
    paste = clean_paste(text)
    fmt = detect_format(paste.text)
    if fmt == "iptables":
        lenient = parse_iptables_lenient(paste.text, name, table_hint=paste.table_hint(), elided=paste.elided,
                                         filtered=paste.filtered)
        saved = lenient.dump.to_text()
        return fmt, {"iptables-save.txt": saved, "ip6tables-save.txt": saved}
    if fmt == "nftables":
        json_form = paste.text.lstrip().startswith(("{", "["))
        return fmt, {"nft-ruleset.json" if json_form else "nft-ruleset.txt": paste.text}
    if fmt == "ipvs":
        return fmt, {"ipvsadm-save.txt": paste.text}
    return fmt, {"ipset-list.txt": paste.text}


def _targets(text: str, name: str) -> list[tuple[str, int, str]]:
    try:
        view = analyze_text(text, name).view
    except InputError:
        view = None
    out: list[tuple[str, int, str]] = []
    for frontend in list(view.frontends) if view is not None else []:
        out.append((frontend.address or NODE, frontend.port, frontend.protocol.lower()))
    unique = sorted(set(out))[:MAX_FRONTENDS]
    return [*unique, ("10.99.7.7", 80, "tcp")]


def test_the_corpus_is_there() -> None:
    assert len(DUMPS) >= 32
    assert {p.name for p in FIREWALLS.iterdir()} >= {"ufw-docker-iptables-S", "firewalld-centos8-nft"}


@pytest.mark.parametrize("case", DUMPS, ids=[p.name for p in DUMPS])
def test_every_real_dump_traces_without_a_crash(case: Path) -> None:
    text = (case / "dump.txt").read_text(encoding="utf-8", errors="replace")
    found = case / "expect.json"
    expect = json.loads(found.read_text(encoding="utf-8")) if found.is_file() else {}
    if "error" in expect:  # the corpus says kpdoctor refuses it, in one line
        with pytest.raises(InputError, match=re.escape(expect["error"])):
            analyze_text(text, case.name)
    try:
        fmt, files = _facts(text, case.name)
    except InputError as exc:  # not a dump kpdoctor reads
        assert "error" in expect, f"{case.name}: refused: {exc}"
        return
    facts = {k: Fact(k, v, k, 0) for k, v in files.items()}
    facts["sysctl.txt"] = Fact("sysctl.txt", "net.ipv4.ip_forward = 1\nnet.ipv6.conf.all.forwarding = 1\n", "", 0)
    state = NodeState("real-node", "bundle", MappingProxyType(facts))
    traced = 0
    for dst, port, proto in _targets(text, case.name):
        family = 6 if ":" in dst else 4
        if family == 6 and dst == NODE:
            continue
        for src in SOURCES[family]:
            req = TraceRequest("real-node", Endpoint(src, None, None, "client"), Endpoint(dst, port, proto, ""),
                               proto)
            try:
                result = run_trace(req, state, None)
            except InputError as exc:
                assert fmt in ("ipvs", "ipset"), f"{case.name}: {fmt} dump refused: {exc}"
                assert "nothing to trace" in str(exc)
                return
            assert result.leaves or result.error, f"{case.name}: no outcome and no reason for {dst}:{port}"
            assert render_text(result, show_explain=True)
            assert json.loads(render_json(result))["packet"]
            traced += 1
    assert traced, f"{case.name}: nothing traced"
