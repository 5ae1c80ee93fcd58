"""nft parsers (JSON and text) and the nftables semantic view, on real kube-proxy v1.36.2 dumps.

Inputs are recorded real data: the golden `nft-ruleset.json` / `.txt` that `nft` printed on the
node where real kube-proxy v1.36.2 ran in nftables mode, and the node bundles' dumps.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kpdoctor.dataplane.nft import (
    NftRuleset,
    parse_duration,
    parse_nft,
    parse_nft_json,
    parse_nft_text,
    parse_priority,
)
from kpdoctor.dataplane.nft_semantic import semantic_view, service_of_chain
from kpdoctor.dataplane.semantic import CLUSTER_IP, DNAT, DROP, LOAD_BALANCER, NODE_PORT, REJECT, diff
from kpdoctor.errors import InputError
from tests.support.nft import GOLDEN_SERVICE_CIDRS, nft_scenarios, scenario_inputs

SCENARIOS = nft_scenarios()
BUNDLE_DUMPS = sorted((Path(__file__).resolve().parents[1] / "fixtures" / "bundles").glob("*/bundle/nodes/*/nft-ruleset.json"))


def _model(rs: NftRuleset) -> dict[Any, Any]:
    """Everything both parsers must agree on (element order is kube-proxy's, so sorted).

    Table and chain comments are left out: nft 1.0.6's JSON output omits them (the text has them).
    """
    out: dict[Any, Any] = {}
    for key, t in rs.tables.items():
        out[key] = {
            "chains": {
                n: (c.type, c.hook, c.priority, c.policy, [(r.text, r.comment) for r in c.rules])
                for n, c in t.chains.items()
            },
            "sets": {
                n: (s.kind, s.key_type, s.data_type, s.timeout, s.size, s.comment, sorted(map(repr, s.elements)))
                for n, s in t.sets.items()
            },
        }
    return out


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda p: p.name)
def test_json_and_text_parse_to_the_same_model(scenario: Path) -> None:
    j = parse_nft_json((scenario / "nftables" / "nft-ruleset.json").read_text(), source="golden.json")
    t = parse_nft_text((scenario / "nftables" / "nft-ruleset.txt").read_text(), source="golden.txt")
    assert set(j.tables) == {("ip", "kube-proxy"), ("ip6", "kube-proxy")}
    assert _model(j) == _model(t)
    table = j.table("ip", "kube-proxy")
    text_table = t.table("ip", "kube-proxy")
    assert table is not None and text_table is not None and text_table.comment == "rules for kube-proxy"
    assert table.chains["nat-prerouting"].priority == -100 and table.chains["filter-prerouting-pre-dnat"].priority == -110
    assert table.chains["services"].rules[-2].text == "ip daddr . meta l4proto . th dport vmap @service-ips"


def test_affinity_sets_and_timeouts_parsed() -> None:
    scenario = next(p for p in SCENARIOS if p.name.startswith("V3"))
    for rs in (parse_nft((scenario / "nftables" / f"nft-ruleset.{ext}").read_text()) for ext in ("json", "txt")):
        table = rs.table("ip", "kube-proxy")
        assert table is not None
        timeouts = sorted(s.timeout for n, s in table.sets.items() if n.startswith("affinity-"))
        assert timeouts == [600, 600, 600, 10800, 10800]


@pytest.mark.parametrize("path", BUNDLE_DUMPS, ids=lambda p: f"{p.parts[-5]}/{p.parts[-2]}")
def test_bundle_dumps_parse(path: Path) -> None:
    rs = parse_nft_json(path.read_text(), source=str(path))
    kp = rs.table("ip", "kube-proxy")
    if kp is not None:  # nodes in nftables mode
        assert "services" in kp.chains and kp.sets["service-ips"].elements
        view = semantic_view(rs)
        assert view.frontends and all(v.verdict in (DNAT, REJECT, DROP) for v in view.frontends.values())
    else:  # iptables-nft nodes (xt-based tables) or an empty ruleset (IPVS node that exited) still parse
        assert all(name != "kube-proxy" for _, name in rs.tables)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda p: p.name)
def test_semantic_view_of_golden_equals_expectation(scenario: Path) -> None:
    """The nftables dataplane real kube-proxy built means exactly what the mode-independent expectation says."""
    import kpdoctor.proxier.expected as expected_mod
    for inp, nft_family in zip(scenario_inputs(scenario), ("ip", "ip6"), strict=True):
        expected = expected_mod.expected_view(inp)
        kinds = {fe.address: fe.kind for fe in expected.frontends}
        for ext in ("json", "txt"):
            rs = parse_nft((scenario / "nftables" / f"nft-ruleset.{ext}").read_text())
            actual = semantic_view(rs, inp.family, address_kinds=kinds)
            problems = diff(expected, actual)
            assert not problems, f"{scenario.name} {nft_family} {ext}: " + "\n".join(
                f"{d.kind} {d.frontend} want={d.expected} got={d.actual}" for d in problems
            )
        if nft_family == "ip":
            assert expected.frontends, "the scenario programs IPv4 services"


def test_semantic_view_details_v2() -> None:
    """Spot checks on the NodePort/LB scenario (no expectation module needed)."""
    scenario = next(p for p in SCENARIOS if p.name.startswith("V2"))
    view = semantic_view(parse_nft((scenario / "nftables" / "nft-ruleset.json").read_text()))
    by = {(fe.kind, fe.address, fe.port): v for fe, v in view.frontends.items()}
    lb = by[(LOAD_BALANCER, "192.0.2.102", 443)]
    assert lb.service == "web/admin-lb-ranges:https" and lb.verdict == DNAT
    assert lb.source_ranges == {"198.51.100.128/25", "203.0.113.0/24"}
    assert lb.endpoints == {"10.244.2.24:8443", "10.244.4.24:8443"}
    assert by[(NODE_PORT, "", 30102)].verdict == DROP  # eTP=Local, no local endpoint
    assert by[(NODE_PORT, "", 30104)].verdict == REJECT  # no endpoints at all
    assert by[(NODE_PORT, "", 30101)].endpoints == {"10.244.2.21:8080"}  # eTP=Local: the local endpoint
    assert by[(CLUSTER_IP, "10.96.20.11", 80)].endpoints == {"10.244.1.21:8080", "10.244.2.21:8080", "10.244.4.21:8080"}


def test_semantic_view_reads_old_layout_endpoint_chains() -> None:
    """The vmap-to-endpoint-chain layout (1.31-1.35) resolves to the same endpoints and affinity."""
    from kpdoctor.proxier.expected import expected_view
    from kpdoctor.proxier.nftables import render_nftables

    scenario = next(p for p in SCENARIOS if p.name.startswith("V3"))
    inp = scenario_inputs(scenario, version=(1, 33))[0]
    text = render_nftables(inp, service_cidrs=GOLDEN_SERVICE_CIDRS)
    rs = _parse_add_commands(text)
    assert not diff(expected_view(inp), semantic_view(rs))


def _parse_add_commands(text: str) -> NftRuleset:
    """Build a model straight from our `add ...` transaction (no kernel), to test the extractor alone."""
    from kpdoctor.dataplane.nft import NftChain, NftElement, NftRule, NftSet, NftTable

    rs = NftRuleset()
    table = rs.tables[("ip", "kube-proxy")] = NftTable("ip", "kube-proxy")
    for line in text.splitlines():
        parts = line.split(" ", 4)
        if parts[:1] != ["add"] or len(parts) < 5:
            if line.startswith("add chain") or line.startswith("add set") or line.startswith("add map"):
                parts = [*line.split(" ", 4), ""][:5]
            else:
                continue
        verb, rest = parts[1], parts[4]
        if verb == "chain":
            name = parts[4].split(" ", 1)[0]
            table.chains.setdefault(name, NftChain("ip", "kube-proxy", name))
        elif verb in ("set", "map"):
            name = rest.split(" ", 1)[0]
            m = re.search(r"timeout (\d+)s", rest)
            timeout = int(m.group(1)) if m else None
            table.sets.setdefault(name, NftSet("ip", "kube-proxy", name, verb, timeout=timeout))
        elif verb == "rule":
            chain, rule = rest.split(" ", 1)
            comment = None
            if ' comment "' in rule:
                rule, comment = rule.split(' comment "', 1)
                comment = comment.rstrip('"')
            table.chains[chain].rules.append(NftRule(rule, comment))
        elif verb == "element":
            name, body = rest.split(" ", 1)
            body = body.strip()[1:-1].strip()
            value = None
            if " : " in body:
                body, value = body.rsplit(" : ", 1)
            comment = None
            if ' comment "' in body:
                body, comment = body.split(' comment "', 1)
                comment = comment.rstrip('"')
            table.sets[name].elements.append(NftElement(tuple(body.split(" . ")), value, comment))
    return rs


def test_service_of_chain() -> None:
    assert service_of_chain("service-ULMVA6XW-ns1/svc1/tcp/p80") == "ns1/svc1:p80"
    assert service_of_chain("external-IJTWSMUZ-shop/cart/tcp/") == "shop/cart"
    assert service_of_chain("endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80") == "ns1/svc1:p80"


def test_durations_and_priorities() -> None:
    assert parse_duration("10m") == 600 and parse_duration("3h") == 10800 and parse_duration("1h30m") == 5400
    assert parse_priority("dstnat - 10") == -110 and parse_priority("srcnat") == 100 and parse_priority("-90") == -90
    with pytest.raises(ValueError):
        parse_duration("10x")


# ---------------------------------------------------------------------------------------------
# bad input


def test_malformed_json_names_line_and_column() -> None:
    good = (SCENARIOS[0] / "nftables" / "nft-ruleset.json").read_text()
    with pytest.raises(InputError) as err:
        parse_nft_json(good[:5000], source="dump.json")  # truncated dump
    assert err.value.where is not None and re.fullmatch(r"dump\.json:1:\d+", err.value.where)
    with pytest.raises(InputError) as err2:
        parse_nft_json('{"nftables": [\n  {"table": {"family": "ip",, "name": "x"}}]}', source="dump.json")
    assert err2.value.where == "dump.json:2:29"
    with pytest.raises(InputError, match="nftables"):
        parse_nft_json('{"foo": []}', source="dump.json")
    with pytest.raises(InputError, match=r"nftables\[1\]"):
        parse_nft_json('{"nftables": [{"metainfo": {}}, {"rule": {"family": "ip"}}]}', source="dump.json")


def test_truncated_text_names_the_line() -> None:
    text = (SCENARIOS[1] / "nftables" / "nft-ruleset.txt").read_text()
    lines = text.splitlines()
    cut = "\n".join(lines[:40])
    with pytest.raises(InputError) as err:
        parse_nft_text(cut, source="dump.txt")
    # names the innermost block left open (here the map opened on line 40 of the cut dump)
    assert "end of input" in str(err.value) and err.value.where == f"dump.txt:{_innermost_open(lines[:40])}"
    garbled = text.replace("\tchain services {", "\tchain services {{", 1)
    with pytest.raises(InputError) as err2:
        parse_nft_text(garbled, source="dump.txt")
    assert err2.value.where is not None and err2.value.where.startswith("dump.txt:")
    with pytest.raises(InputError, match="expected `table"):
        parse_nft_text("hello world\n", source="dump.txt")


def _innermost_open(lines: list[str]) -> int:
    stack: list[int] = []
    for no, line in enumerate(lines, 1):
        if line.rstrip().endswith("{") and "elements = {" not in line:
            stack.append(no)
        elif line.strip() == "}":
            stack.pop()
    return stack[-1]


_CLI = """
import sys, typer
from kpdoctor import cli
from kpdoctor.dataplane.nft import parse_nft

@cli.app.command("nft-parse-test")
def _parse(path: str) -> None:
    with open(path) as f:
        parse_nft(f.read(), source=path)

cli.main(sys.argv[1:])
"""


@pytest.mark.parametrize("content,where", [('{"nftables": [', ":1:15"), ("table ip kube-proxy {\n\tchain x {\n", ":2")])
def test_bad_dump_exits_2_through_the_cli_error_path(tmp_path: Path, content: str, where: str) -> None:
    """kpdoctor's CLI turns a parser InputError into one line and exit code 2 (temporary command; see report)."""
    dump = tmp_path / "nft-ruleset.dump"
    dump.write_text(content)
    proc = subprocess.run(
        [sys.executable, "-c", _CLI, "nft-parse-test", str(dump)], capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"kpdoctor: error: {dump}{where}"), proc.stderr


def test_json_with_unusual_but_valid_objects() -> None:
    doc = {"nftables": [
        {"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
        {"table": {"family": "inet", "name": "t", "handle": 1}},
        {"flowtable": {"family": "inet", "name": "f", "table": "t"}},
        {"chain": {"family": "inet", "table": "t", "name": "c", "handle": 2}},
        {"rule": {"family": "inet", "table": "t", "chain": "c", "handle": 3, "expr": [
            {"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "eth0"}},
            {"counter": {"packets": 1, "bytes": 2}}, {"accept": None}]}},
    ]}
    rs = parse_nft_json(json.dumps(doc))
    table = rs.table("inet", "t")
    assert table is not None
    assert table.chains["c"].rules[0].text == 'iifname "eth0" counter packets 1 bytes 2 accept'
