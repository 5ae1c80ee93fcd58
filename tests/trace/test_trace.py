"""`kpdoctor trace` in iptables mode, on real dumps: the demo bundle (capture B2 plus the planted edge-2 faults),
the B1-B4 captures and the kube-proxy v1.36 fixtures. The kernel comparison is tests/lab/test_trace_kernel.py."""

from __future__ import annotations

import json
from pathlib import Path
from types import MappingProxyType

import pytest

from kpdoctor.cli import main
from kpdoctor.dataplane.iptables_save import parse_iptables_save
from kpdoctor.dataplane.nft import parse_nft
from kpdoctor.node.bundle import read_bundle
from kpdoctor.node.state import Fact, NodeState
from kpdoctor.trace.addresses import Endpoint, resolve
from kpdoctor.trace.context import TraceContext, local_addresses
from kpdoctor.trace.inputs import trace_cluster_state
from kpdoctor.trace.ipt_match import compile_spec, quick_dst
from kpdoctor.trace.model import Fork, Packet
from kpdoctor.trace.render import explain, render_text
from kpdoctor.trace.run import TraceRequest, endpoint_set, outcomes, run_trace

DEMO = Path(__file__).resolve().parents[2] / "kpdoctor" / "demo" / "bundle"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
PKT = Packet("203.0.113.10", "10.96.150.30", 40000, 80)


def _ctx(complete: bool = True) -> TraceContext:
    return TraceContext(local_addresses([("eth0", "10.81.0.2")] if complete else None, ["10.81.0.2"]))


def _match(spec: str, pkt: Packet = PKT, ctx: TraceContext | None = None) -> list[object]:
    return [fn(pkt, ctx or _ctx()) for fn, _ in compile_spec(spec).matches]


# ------------------------------------------------------------------------------ matcher


def test_base_options_after_a_module_still_match() -> None:
    """kube-proxy's restore input writes `-m tcp -p tcp -d X --dport P` (base options after -m)."""
    spec = '-m comment --comment "ns/a:http cluster IP" -m tcp -p tcp -d 10.96.150.30 --dport 80 -j KUBE-SVC-X'
    assert _match(spec) == [True, True, True]
    assert _match(spec, PKT.evolve(dport=81)) == [True, True, False]
    assert quick_dst(spec) == (4, 0x0A60961E, 0xFFFFFFFF)


def test_negation_statistic_and_unknown_match() -> None:
    assert _match("! -s 10.244.0.0/16 -j KUBE-MARK-MASQ") == [True]
    assert _match("! -s 203.0.113.0/24 -j X") == [False]
    fork = _match("-m statistic --mode random --probability 0.25 -j X")[0]
    assert isinstance(fork, Fork) and fork.p == 0.25
    unknown = _match("-m bpf --object-pinned /sys/fs/bpf/x -j DROP")[0]
    assert isinstance(unknown, Fork) and unknown.p is None and "unknown match -m bpf" in unknown.label


def test_quick_dst_ignores_a_dash_d_inside_a_quoted_comment_and_negations() -> None:
    assert quick_dst('-m comment --comment "x -d 1.2.3.4" -j X') is None
    assert quick_dst("! -d 10.0.0.1/32 -j X") is None
    assert quick_dst("-s 1.1.1.1/32 ! -d 10.0.0.1/32 -j X") is None


def test_addrtype_forks_only_when_the_node_addresses_are_unknown() -> None:
    spec = "-m addrtype --dst-type LOCAL -j KUBE-NODEPORTS"
    assert _match(spec, PKT.evolve(dst="10.81.0.2")) == [True]
    assert _match(spec, PKT.evolve(dst="10.81.0.9")) == [False]
    fork = _match(spec, PKT.evolve(dst="10.81.0.9"), _ctx(complete=False))[0]
    assert isinstance(fork, Fork) and fork.p is None


def test_marks_and_conntrack_state() -> None:
    assert _match("-m mark --mark 0x4000/0x4000 -j ACCEPT", PKT.evolve(mark=0x4001)) == [True]
    assert _match("-m mark ! --mark 0x4000/0x4000 -j RETURN", PKT.evolve(mark=0x4000)) == [False]
    assert _match("-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT") == [False]
    assert _match("-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT", PKT.evolve(ctstate="ESTABLISHED")) == [True]


def test_ctstate_dnat_and_snat_are_the_connections_translations() -> None:
    """Calico's `cali-OUTPUT ... -m conntrack ! --ctstate DNAT -j cali-to-host-endpoint`: after kube-proxy's DNAT the
    kernel's conntrack carries the DNAT status (tests/lab/test_trace_xtables_monitor.py saw it skip the rule)."""
    spec = "-m conntrack ! --ctstate DNAT -j cali-to-host-endpoint"
    assert _match(spec) == [True]
    assert _match(spec, PKT.evolve(dnat=True)) == [False]
    assert _match("-m conntrack --ctstate NEW,DNAT -j X") == [True]
    assert _match("-m conntrack --ctstate SNAT -j X") == [False]  # a new connection is source-NATed only later
    fork = _match("-m conntrack --ctstate SNAT -j X", PKT.evolve(ctstate="ESTABLISHED"))[0]
    assert isinstance(fork, Fork) and fork.p is None


# ------------------------------------------------------------------------------ whole traces (demo bundle)


@pytest.fixture(scope="module")
def demo() -> tuple[object, object]:
    b = read_bundle(DEMO)
    return b, trace_cluster_state(b)


def _demo_trace(demo: tuple[object, object], node: str, src: str, dst: str) -> object:
    b, cluster = demo
    source = resolve(src, cluster, "--from")  # type: ignore[arg-type]
    target = resolve(dst, cluster, "--to")  # type: ignore[arg-type]
    req = TraceRequest(node, source, target, target.proto or "tcp")
    return run_trace(req, b.node_state(node), cluster)  # type: ignore[attr-defined]


def test_ledger_from_outside_reaches_its_three_rule_endpoints_one_third_each(demo: tuple[object, object]) -> None:
    """edge-1's real rules still DNAT to the deleted pod 10.244.53.12 (the demo's stale-endpoint fault)."""
    result = _demo_trace(demo, "edge-1", "external", "svc/payments/ledger")
    eps = endpoint_set(result)  # type: ignore[arg-type]
    assert set(eps) == {"10.244.52.11:8080", "10.244.53.12:8080", "10.244.53.13:8080"}
    assert all(abs(p - 1 / 3) < 1e-6 for p in eps.values())
    outs = outcomes(result)  # type: ignore[arg-type]
    assert all(o["verdict"] == "accept" and o["masquerade"] for o in outs)
    dnat = [s for s in outs[0]["steps"] if s["kind"] == "nat" and s["detail"].startswith("DNAT")]
    assert dnat and dnat[0]["source"].startswith("edge-1/iptables-nft-save.txt:")
    line = int(dnat[0]["source"].rsplit(":", 1)[1])
    dump = (DEMO / "nodes" / "edge-1" / "iptables-nft-save.txt").read_text().splitlines()
    assert "-j DNAT --to-destination " + outs[0]["dnat_to"] in dump[line - 1]


def test_established_packets_skip_nat_and_say_so(demo: tuple[object, object]) -> None:
    b, cluster = demo
    req = TraceRequest("edge-1", resolve("10.244.52.99", cluster, "--from"),  # type: ignore[arg-type]
                       resolve("10.244.53.13:8080", cluster, "--to"), state="ESTABLISHED")  # type: ignore[arg-type]
    result = run_trace(req, b.node_state("edge-1"), cluster)  # type: ignore[attr-defined]
    outs = outcomes(result)
    assert [o["verdict"] for o in outs] == ["accept"] and not outs[0]["dnat_to"]
    assert any("RELATED,ESTABLISHED" in s["text"] for s in outs[0]["steps"])  # KUBE-FORWARD's conntrack accept
    assert not any("nat" in s["where"].split() for s in outs[0]["steps"])
    assert any("state established" in n for n in result.notes)


def test_pod_source_is_not_masqueraded(demo: tuple[object, object]) -> None:
    result = _demo_trace(demo, "edge-1", "10.244.52.99", "svc/payments/billing")
    outs = outcomes(result)  # type: ignore[arg-type]
    assert {o["dnat_to"] for o in outs} == {"10.244.52.21:8443", "10.244.53.22:8443"}
    assert not any(o["masquerade"] for o in outs)


def test_demo_edge2_forward_drop_is_found_behind_ip_forward_off(demo: tuple[object, object]) -> None:
    """edge-2's planted faults: ip_forward = 0 drops forwarded traffic first, and the Docker-style FORWARD
    policy DROP would drop it next; the explanation names both, with file:line."""
    result = _demo_trace(demo, "edge-2", "external", "10.244.52.21:8443")
    outs = outcomes(result)  # type: ignore[arg-type]
    assert [o["verdict"] for o in outs] == ["drop"]
    assert "ip_forward = 0" in outs[0]["decided_by"]["text"]
    also = outs[0]["also_blocked_by"]
    assert also and also[0]["text"] == "policy DROP" and also[0]["source"] == "edge-2/iptables-nft-save.txt:4"
    text = " ".join(explain(result))  # type: ignore[arg-type]
    assert "filter FORWARD (policy DROP) at edge-2/iptables-nft-save.txt:4" in text
    assert result.complete  # type: ignore[attr-defined]  # nftables mode: kube-proxy's nft table is walked too
    assert "nft ip kube-proxy" in result.backends  # type: ignore[attr-defined]


def test_nftables_mode_nodeport_translates_then_hits_the_forward_drop(demo: tuple[object, object]) -> None:
    """edge-2 (kube-proxy nftables mode): billing's NodePort goes through kube-proxy's verdict maps and
    `numgen` DNAT (one half per endpoint, handles cited), then meets ip_forward = 0 and FORWARD DROP."""
    result = _demo_trace(demo, "edge-2", "external", "node/edge-2:31130")
    outs = outcomes(result)  # type: ignore[arg-type]
    assert {o["dnat_to"]: round(o["p"], 6) for o in outs} == {"10.244.52.21:8443": 0.5, "10.244.53.22:8443": 0.5}
    assert all(o["verdict"] == "drop" and o["also_blocked_by"] for o in outs)
    sources = [s["source"] for s in outs[0]["steps"] if s["kind"] == "nat"]
    assert sources == ["edge-2/nft-ruleset.json handle 78"]


def test_nftables_affinity_sets_filled_at_run_time_fork(demo: tuple[object, object]) -> None:
    result = _demo_trace(demo, "edge-2", "10.244.52.99", "svc/payments/tokens")
    targets = {o["dnat_to"] for o in outcomes(result)}  # type: ignore[arg-type]
    assert targets == {"10.244.52.61:6379", "10.244.53.62:6379"}
    assert any("ClientIP affinity" in a for o in outcomes(result) for a in o["assumptions"])  # type: ignore[arg-type]


def test_hostile_comment_is_escaped_in_text_output() -> None:
    dump = ("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
            '-A FORWARD -m comment --comment "\x1b[2Jevil" -j DROP\nCOMMIT\n')
    parse_iptables_save(dump, "x")  # the project's parser accepts it
    facts = {"iptables-save.txt": Fact("iptables-save.txt", dump, "iptables-save", 0),
             "sysctl.txt": Fact("sysctl.txt", "net.ipv4.ip_forward = 1\n", "sysctl", 0),
             "ip-addr.json": Fact("ip-addr.json", (DEMO / "nodes" / "edge-1" / "ip-addr.json").read_text(), "ip", 0)}
    state = NodeState("n1", "bundle", MappingProxyType(facts))
    req = TraceRequest("n1", Endpoint("203.0.113.10", None, None, ""), Endpoint("10.244.1.1", 80, None, ""))
    result = run_trace(req, state, None)
    out = render_text(result, show_explain=True)
    assert "\x1b" not in out and "\\x1b[2Jevil" in out
    assert [o["verdict"] for o in outcomes(result)] == ["drop"]


# ------------------------------------------------------------------------------ every real dump traces


def _real_dumps() -> list[Path]:
    found = sorted(FIXTURES.glob("bundles/*/bundle/nodes/*/iptables*-save.txt"))
    found += sorted(FIXTURES.glob("kube-proxy-v1.36/*/*/iptables*save*.txt"))
    found += sorted(FIXTURES.glob("kube-proxy-v1.36/*/nftables/nft-ruleset.*"))
    found += sorted(FIXTURES.glob("bundles/*/bundle/nodes/*/nft-ruleset.json"))
    return [p for p in found if p.stat().st_size > 0]


@pytest.mark.parametrize("path", _real_dumps(), ids=lambda p: str(p.relative_to(FIXTURES)))
def test_every_real_dump_traces_without_a_crash(path: Path) -> None:
    text = path.read_text()
    targets = []
    if path.name.startswith("nft-ruleset"):
        ruleset = parse_nft(text, source=str(path))
        for table in ruleset.tables.values():
            for nft_set in table.sets.values():
                if nft_set.name == "service-ips":
                    targets += [(e.key[0], int(e.key[2])) for e in nft_set.elements if e.key[2].isdecimal()]
        facts = {"nft-ruleset.json": Fact("nft-ruleset.json", text, "nft", 0)}
    else:
        dump = parse_iptables_save(text, str(path))
        for table in dump.tables.values():
            for chain in table.chains.values():
                for spec in chain.specs:
                    found = quick_dst(spec)
                    if found is not None and found[0] == 4 and found[2] == 0xFFFFFFFF and "--dport" in spec:
                        port = spec.split("--dport ", 1)[1].split()[0]
                        ip = ".".join(str((found[1] >> s) & 255) for s in (24, 16, 8, 0))
                        targets.append((ip, int(port) if port.isdecimal() else 80))
        facts = {"iptables-save.txt": Fact("iptables-save.txt", text, "iptables-save", 0)}
    targets = [t for t in targets if ":" not in t[0]][:5] or [("10.96.0.1", 443)]
    state = NodeState("n1", "bundle", MappingProxyType(facts))
    for src in ("203.0.113.10", "10.244.0.5"):
        for ip, port in targets:
            req = TraceRequest("n1", Endpoint(src, None, None, ""), Endpoint(ip, port, None, ""))
            result = run_trace(req, state, None)
            if result.error:  # bounded: e.g. iptables-nft's xt rules read from nft JSON are all "unknown"
                assert "forks" in result.error and not result.complete
                continue
            assert result.leaves
            assert all(leaf.verdict for leaf in result.leaves)
            assert abs(sum(leaf.p for leaf in result.leaves if not leaf.assumptions) - 1.0) < 1e-6 or any(
                leaf.assumptions for leaf in result.leaves)


# ------------------------------------------------------------------------------ command line


def test_cli_json(capsys: pytest.CaptureFixture[str]) -> None:
    main(["trace", "--demo", "--node", "edge-1", "--from", "external", "--to", "svc/payments/ledger", "-o", "json"])
    doc = json.loads(capsys.readouterr().out)
    assert doc["node"] == "edge-1" and doc["packet"]["dst"] == "10.96.150.30" and doc["packet"]["dport"] == 80
    assert sorted(e["target"] for e in doc["endpoints"]) == ["10.244.52.11:8080", "10.244.53.12:8080",
                                                              "10.244.53.13:8080"]


@pytest.mark.parametrize(("args", "message"), [
    (["--to", "svc/payments/nope"], "no Service payments/nope"),
    (["--to", "10.96.150.30"], "give a port"),
    (["--to", "svc/payments/ledger", "--proto", "icmp"], "--proto 'icmp'"),
    (["--to", "svc/payments/ledger", "--node", "ghost"], "node 'ghost' is not in this bundle"),
])
def test_cli_bad_input_is_one_line_exit_2(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["trace", "--demo", "--node", "edge-1", "--from", "external", *args]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
