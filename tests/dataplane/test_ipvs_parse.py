"""IPVS parsers (and ipset ones in the fuzz and netfilter tests; ipset alone: test_ipset_parse.py) and the IPVS semantic view, on the samples of tests/fixtures/ipvs (ipset output is real ipset 7.17; the ipvsadm text is hand-built in ipvsadm 1.31's exact format because this kernel has no IPVS - see that README) and on bad input.

No IPVS kernel here: the `ipvsadm` samples under tests/fixtures/ipvs/ are written in ipvsadm 1.31's exact
shapes, not captured (see that folder's README); the `ipset` samples are real ipset 7.17 output captured
on this machine. Round trip: parse -> semantic view -> equals the expectation for the same cluster
(golden scenario V2, node kpnode1, in IPVS mode).
"""

from __future__ import annotations

import contextlib
import subprocess
import uuid
from pathlib import Path

import pytest
from conftest import BUNDLES, GOLDEN
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kpdoctor.dataplane.ipset import parse_ipset, parse_ipset_list, parse_ipset_save
from kpdoctor.dataplane.ipvs import (
    parse_ipvsadm,
    parse_ipvsadm_list,
    parse_ipvsadm_save,
)
from kpdoctor.dataplane.ipvs_document import parse_ipvs_document
from kpdoctor.dataplane.ipvs_facts import read_node_ipvs
from kpdoctor.dataplane.ipvs_format import format_ipvsadm_list
from kpdoctor.dataplane.ipvs_semantic import ipvs_semantic_view
from kpdoctor.dataplane.semantic import DNAT, DROP, NODE_PORT, REJECT, diff
from kpdoctor.errors import InputError
from kpdoctor.node.state import Fact, NodeState
from kpdoctor.proxier.ipvs import expected_ipvs_view, ipvs_state, reference_view, render_ipvs
from tests.support.errors import input_error_at
from tests.support.ipvs import DRIFT, SAMPLES, read, v2_input


# ------------------------------------------------ samples (real ipset output; ipvsadm text hand-built, no IPVS here)
def test_save_list_and_stats_forms_agree() -> None:
    """`--save -n`, `-Ln` and `-Ln --stats` of one node parse to the same services and real servers."""
    save = parse_ipvsadm_save(read(SAMPLES / "ipvsadm-save.txt"))
    listed = parse_ipvsadm_list(read(SAMPLES / "ipvsadm-Ln.txt"))
    stats = parse_ipvsadm(read(SAMPLES / "ipvsadm-Ln-stats.txt"))
    assert save.available and len(save.virtual_servers) == 16
    assert save.virtual_servers == listed.virtual_servers
    assert {vs.key: vs.real_servers for vs in stats.virtual_servers} == {
        vs.key: vs.real_servers for vs in save.virtual_servers
    }
    assert all(vs.persistent is None and vs.scheduler == "" for vs in stats.virtual_servers)  # not shown there
    assert parse_ipvsadm_list(format_ipvsadm_list(save.virtual_servers)).virtual_servers == save.virtual_servers


def test_round_trip_semantic_view_equals_expectation() -> None:
    """parse(sample) -> semantic view == the IPVS expectation for the cluster, and == the reference state's."""
    inp = v2_input()
    expected = expected_ipvs_view(inp)
    names = {fe: v.service for fe, v in expected.frontends.items()}
    table = parse_ipvsadm_save(read(SAMPLES / "ipvsadm-save.txt"))
    ipsets = parse_ipset_list(read(SAMPLES / "ipset-list.txt"))
    actual = ipvs_semantic_view(table.virtual_servers, ipsets, None, node_ips=inp.node_ips, names=names)
    assert not diff(expected, actual)
    assert actual == expected == reference_view(inp, names)
    by = {(fe.kind, fe.address, fe.port): v for fe, v in actual.frontends.items()}
    assert by[("load-balancer", "192.0.2.102", 443)].source_ranges == {"198.51.100.128/25", "203.0.113.0/24"}
    assert by[(NODE_PORT, "", 30104)].verdict == REJECT
    # eTP=Local without a local endpoint: IPVS forwards to the cluster endpoints (kubernetes#97081)
    assert by[(NODE_PORT, "", 30102)].verdict == DNAT
    assert by[(NODE_PORT, "", 30102)].endpoints == {"10.244.4.22:8443", "10.244.5.22:8443"}


def test_differences_from_iptables_expectation_are_the_documented_ones() -> None:
    """Against the mode-independent expectation only the IPVS-intended Local-policy fallback differs."""
    from kpdoctor.proxier.expected import expected_view

    inp = v2_input()
    generic = expected_view(inp)
    ipvs = expected_ipvs_view(inp)
    diffs = diff(generic, ipvs)
    assert diffs and all(d.kind == "verdict" and d.expected is not None and d.expected.verdict == DROP for d in diffs)


def test_drift_is_seen() -> None:
    """A stale real server and a missing one show; a weight-0 (draining) real server is not a target."""
    inp = v2_input()
    expected = expected_ipvs_view(inp)
    table = parse_ipvsadm_save(read(DRIFT / "ipvsadm-save.txt"))
    actual = ipvs_semantic_view(table.virtual_servers, parse_ipset_list(read(SAMPLES / "ipset-list.txt")),
                                node_ips=inp.node_ips, names={fe: v.service for fe, v in expected.frontends.items()})
    got = {(d.kind, d.frontend.address, d.frontend.port, tuple(sorted(d.stale)), tuple(sorted(d.missing)))
           for d in diff(expected, actual)}
    assert got == {
        ("stale-endpoints", "10.96.20.10", 80, ("10.244.9.99:8080",), ()),
        ("missing-endpoints", "10.96.20.12", 443, (), ("10.244.5.22:8443",)),
    }


def test_rendered_document_parses_back() -> None:
    """`render_ipvs` -> `parse_ipvs_document`: the node-output parsers read every section back."""
    inp = v2_input()
    state = ipvs_state(inp)
    doc = parse_ipvs_document(render_ipvs(inp))
    assert doc.table.virtual_servers == state.virtual_servers
    assert {n: s.members for n, s in doc.ipsets.sets.items()} == {s.name: s.members for s in state.ipsets}
    assert doc.addresses == state.addresses and doc.iptables == state.iptables


# ----------------------------------------------------------------- IPVS absent (real kube-proxy v1.36.2 facts)
def test_ipvs_unavailable_is_a_fact() -> None:
    """ipvsadm's real answer on this kernel (captured with kube-proxy's failed IPVS start) is not a parse error."""
    facts = read(GOLDEN / "ipvs-unavailable" / "kernel-facts.txt")
    ipvsadm_out = facts[facts.index("$ ipvsadm -Ln"):].split("\n", 1)[1]
    for parse in (parse_ipvsadm, parse_ipvsadm_list, parse_ipvsadm_save):
        table = parse(ipvsadm_out)
        assert not table.available and "Protocol not available" in table.reason


def _bundle_node(path: Path) -> NodeState:
    facts = {p.name: Fact(p.name, p.read_text(encoding="utf-8"), source=str(p)) for p in path.iterdir() if p.is_file()}
    return NodeState(name=path.name, transport="bundle", facts=facts)


def test_b4_bundle_edge1_has_no_ipvs_state() -> None:
    """B4-ipvs-unavailable: edge-1 has no ipvsadm-save.txt and an empty ipset-list.txt -> absent, no crash."""
    node = _bundle_node(BUNDLES / "B4-ipvs-unavailable" / "bundle" / "nodes" / "edge-1")
    table, ipsets = read_node_ipvs(node)
    assert not table.available and "ipvsadm-save.txt" in table.reason
    assert ipsets is not None and ipsets.sets == {}
    stderr = NodeState("n", "local", {"ipvsadm-save.txt": Fact(
        "ipvsadm-save.txt", "", exit_code=2, stderr="Can't initialize ipvs: Protocol not available\n")})
    assert "not available in the kernel" in read_node_ipvs(stderr)[0].reason


# ----------------------------------------------------------------- bad input
@pytest.mark.parametrize("text, line, words", [
    ("-A -t 10.96.0.1:443 -s rr\n-a -t 10.96.0.1:443 -r 10.244.", 2, "ADDRESS:PORT"),
    ("-A -t 10.96.0.1:443 -s rr\n-a -t 10.96.0.1:443 -r 10.244.1:80", 2, "not a numeric IP"),
    ("-A -t 10.96.0.1:443 -s rr\n-a -t 10.96.0.1:443 -r", 2, "truncated"),
    ("-A -t 10.96.0.1:443 -s", 1, "truncated"),
    ("-A -t 10.96.0.1:443 -s rr\n-a -t 10.96.0.9:443 -r 10.244.0.1:80 -m -w 1", 2, "not defined above"),
    ("-A -t kubernetes.default:https -s rr", 1, "-n"),
    ("-A -t 10.96.0.1:443 -s rr -p x", 1, "not a number"),
    ("garbage", 1, "expected an ipvsadm --save line"),
])
def test_bad_ipvsadm_save(text: str, line: int, words: str) -> None:
    input_error_at(parse_ipvsadm_save, text, "ipvsadm-save.txt", line, words)


def test_truncated_list_forms() -> None:
    """`-Ln` cut inside a real server line or a service line -> error naming the line."""
    lines = read(SAMPLES / "ipvsadm-Ln.txt").splitlines()
    assert lines[6].startswith("  -> ")
    cut = "\n".join(lines[:6] + [lines[6][:40]])
    with pytest.raises(InputError) as err:
        parse_ipvsadm_list(cut, "ipvsadm-Ln.txt")
    assert err.value.where == "ipvsadm-Ln.txt:7" and "truncated" in str(err.value)
    with pytest.raises(InputError, match="scheduler missing"):
        parse_ipvsadm_list("\n".join(lines[:3] + ["TCP  10.96.0.1:443"]))


# ----------------------------------------------------------------- fuzzing: only InputError may escape
_TOKENS = st.sampled_from([
    "-A", "-a", "-t", "-u", "--sctp-service", "-f", "-s", "rr", "-p", "-r", "-m", "-g", "-w", "1", "0",
    "10.96.0.1:443", "[fd00::1]:80", "10.244.1.2:8080", "TCP", "UDP", "FWM", "->", "Masq", "persistent",
    "IP Virtual Server version 1.2.1 (size=4096)", "Prot LocalAddress:Port Scheduler Flags",
    "Name:", "Type:", "hash:ip,port", "bitmap:port", "Header:", "Members:", "Number of entries:", "3",
    "create", "add", "KUBE-CLUSTER-IP", "10.96.0.1,tcp:443", "30080", "range", "0-65535", "family", "inet", "",
])
_LINES = st.lists(st.lists(_TOKENS, max_size=7).map(" ".join), max_size=12).map("\n".join)
_FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_PARSERS = (parse_ipvsadm, parse_ipvsadm_save, parse_ipvsadm_list, parse_ipset, parse_ipset_list, parse_ipset_save)


def _only_input_errors(text: str) -> None:
    for parse in _PARSERS:
        with contextlib.suppress(InputError):
            parse(text)


@_FUZZ
@given(st.one_of(_LINES, st.text(max_size=300)))
def test_fuzz_parsers(text: str) -> None:
    _only_input_errors(text)


@_FUZZ
@given(st.sampled_from(["ipvsadm-save.txt", "ipvsadm-Ln.txt", "ipvsadm-Ln-stats.txt", "ipset-list.txt",
                        "ipset-save.txt"]), st.integers(0, 20000), st.integers(0, 20000), st.text(max_size=5))
def test_fuzz_mutated_samples(name: str, cut: int, at: int, junk: str) -> None:
    """Samples truncated anywhere or with junk spliced in: parsed or InputError, nothing else."""
    text = read(SAMPLES / name)
    _only_input_errors(text[: cut % (len(text) + 1)])
    pos = at % (len(text) + 1)
    _only_input_errors(text[:pos] + junk + text[pos:])


# ----------------------------------------------------------------- real ipset + iptables in a namespace
@pytest.mark.root("ipset", "iptables-restore", "iptables-save")
def test_rendered_sets_and_rules_load_into_real_netfilter() -> None:
    """The rendered ipsets load with real `ipset restore`, the IPVS-mode iptables rules with real
    `iptables-restore` (they reference the sets), and `ipset list` reads back to the same members.
    Only the `-m ipvs` match (KUBE-IPVS-OUT-FILTER) needs the missing IPVS kernel module: V2's node is
    in none of admin-lb-ranges' source ranges, so it has exactly one such rule, left out and counted."""
    inp = v2_input()
    state = ipvs_state(inp)
    ns = f"kpd-{uuid.uuid4().hex[:8]}"
    rules = [ln for ln in state.iptables.splitlines(keepends=True) if " -m ipvs " not in ln]
    assert len(state.iptables.splitlines()) - len(rules) == 1
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        def run(*cmd: str, stdin: str | None = None) -> str:
            out = subprocess.run(["ip", "netns", "exec", ns, *cmd], input=stdin, text=True, capture_output=True,
                                 timeout=60)
            assert out.returncode == 0, f"{cmd}: {out.stderr}"
            return out.stdout

        from kpdoctor.dataplane.ipvs_format import format_ipset_save

        run("ipset", "restore", stdin=format_ipset_save(state.ipsets))
        run("iptables-restore", stdin="".join(rules))
        listed = parse_ipset_list(run("ipset", "list"), "ipset list")
        assert {n: s.members for n, s in listed.sets.items()} == {s.name: s.members for s in state.ipsets}
        saved = run("iptables-save")
        for chain in ("KUBE-SERVICES", "KUBE-IPVS-FILTER", "KUBE-SOURCE-RANGES-FIREWALL", "KUBE-NODE-PORT"):
            assert f":{chain} - [0:0]" in saved
        assert "-m set --match-set KUBE-LOOP-BACK dst,dst,src -j MASQUERADE" in saved
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
