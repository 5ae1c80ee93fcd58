"""`--explain` names the host firewall, on real public rulesets (tests/fixtures/realworld/firewalls/*/SOURCE),
and the evaluators read what those rulesets use (nft payload keys imply their header, ICMP type matches).

The verdicts asserted here are the rulesets' own (ufw allows 22 and 443, firewalld allows ssh and 9090, neither
allows 8080); tests/lab/test_trace_hostfw_real.py shows the kernel agrees with the trace on the same rulesets
under kube-proxy's rules.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import MappingProxyType

import pytest

from kpdoctor.dataplane.iptables_lenient import parse_iptables_lenient
from kpdoctor.dataplane.paste import clean_paste
from kpdoctor.node.state import Fact, NodeState
from kpdoctor.trace.addresses import Endpoint
from kpdoctor.trace.firewall_cause import FirewallCause, firewall_cause, sentence
from kpdoctor.trace.ipt_match import compile_spec
from kpdoctor.trace.model import Fork, Packet
from kpdoctor.trace.nft_eval import header_absent
from kpdoctor.trace.render import explain
from kpdoctor.trace.run import TraceRequest, TraceResult, outcomes, run_trace

FIREWALLS = Path(__file__).resolve().parents[1] / "fixtures" / "realworld" / "firewalls"
NODE, CLIENT = "10.0.0.1", "203.0.113.10"
IP_ADDR = json.dumps([{"ifname": "eth0", "addr_info": [{"family": "inet", "local": NODE, "prefixlen": 24}]}])


def _state(firewall: str) -> NodeState:
    text = (FIREWALLS / firewall / "dump.txt").read_text(encoding="utf-8")
    if firewall.startswith("ufw"):
        paste = clean_paste(text)
        saved = parse_iptables_lenient(paste.text, firewall, table_hint="filter").dump.to_text()
        dump = {"iptables-save.txt": saved}
    else:
        dump = {"nft-ruleset.txt": text}
    facts = {k: Fact(k, v, k, 0) for k, v in dump.items()}
    facts["ip-addr.json"] = Fact("ip-addr.json", IP_ADDR, "ip -j addr", 0)
    facts["sysctl.txt"] = Fact("sysctl.txt", "net.ipv4.ip_forward = 1\n", "sysctl", 0)
    return NodeState("fw-node", "bundle", MappingProxyType(facts))


def _trace(firewall: str, dport: int, proto: str = "tcp", dst: str = NODE) -> TraceResult:
    req = TraceRequest("fw-node", Endpoint(CLIENT, None, None, "client"), Endpoint(dst, dport, proto, ""), proto,
                       iif="eth0")
    return run_trace(req, _state(firewall), None)


def _verdicts(result: TraceResult) -> set[str]:
    return {o["verdict"] for o in outcomes(result)}


@pytest.mark.parametrize(("port", "proto", "verdict"), [(22, "tcp", "accept"), (443, "tcp", "accept"),
                                                        (443, "udp", "accept"), (8080, "tcp", "drop"),
                                                        (9090, "tcp", "drop")])
def test_ufw_real_ruleset_input(port: int, proto: str, verdict: str) -> None:
    result = _trace("ufw-docker-iptables-S", port, proto)
    assert _verdicts(result) == {verdict}
    if verdict == "drop":
        (line,) = explain(result)
        assert "dropped by filter INPUT (policy DROP)" in line
        assert "host firewall ufw: its chains ufw-before-logging-input, ufw-before-input, ufw-not-local, " \
               "ufw-user-input" in line


def test_ufw_real_ruleset_forward_is_dropped_by_ufw_after_docker_chains() -> None:
    result = _trace("ufw-docker-iptables-S", 80, dst="10.244.1.5")
    assert _verdicts(result) == {"drop"}
    for line in explain(result):
        assert "filter FORWARD (policy DROP)" in line and "host firewall ufw" in line
        assert "DOCKER" not in line.split("host firewall", 1)[1]  # Docker's chains returned: not the cause


@pytest.mark.parametrize(("port", "proto", "verdict"), [(22, "tcp", "accept"), (9090, "tcp", "accept"),
                                                        (22, "udp", "reject"), (8080, "tcp", "reject"),
                                                        (443, "tcp", "reject")])
def test_firewalld_real_ruleset_input(port: int, proto: str, verdict: str) -> None:
    """`tcp dport ssh` must not accept UDP port 22; `icmpv6 type {...}` in raw_PREROUTING must not match (or
    fork on) a TCP/UDP packet."""
    result = _trace("firewalld-centos8-nft", port, proto)
    assert _verdicts(result) == {verdict}
    assert not any(o["assumptions"] for o in outcomes(result)), outcomes(result)
    if verdict == "reject":
        (line,) = explain(result)
        assert "rejected by inet firewalld filter_INPUT (reject with icmpx " in line
        assert "host firewall firewalld" in line


def test_firewalld_real_ruleset_rejects_every_forwarded_packet() -> None:
    """The outgoing interface is not known (routing is not evaluated): firewalld's `oifname "enp0s3" goto ...` rules
    fork, every branch ends in the same reject, and --explain says it once, naming what was assumed."""
    result = _trace("firewalld-centos8-nft", 8443, dst="10.244.1.5")
    assert _verdicts(result) == {"reject"}
    assert len(outcomes(result)) > 1
    (line,) = explain(result)
    assert line.startswith("100.0 % (in ") and "assumed cases, on: meta oifname" in line
    assert "rejected by inet firewalld filter_FORWARD (reject with icmpx " in line
    assert "host firewall firewalld (its chain filter_FORWARD)" in line


def test_header_absent() -> None:
    tcp4 = Packet("10.0.0.2", "10.0.0.1", 40000, 22, "tcp")
    udp6 = Packet("fd00::2", "fd00::1", 40000, 53, "udp", family=6)
    assert header_absent("udp dport", tcp4) and not header_absent("tcp dport", tcp4)
    assert not header_absent("th dport", tcp4) and not header_absent("th dport", udp6)
    assert header_absent("ip6 daddr", tcp4) and header_absent("ip saddr", udp6)
    assert header_absent("icmpv6 type", tcp4) and header_absent("icmp type", udp6)
    assert not header_absent("meta l4proto", tcp4) and not header_absent("ct state", udp6)


def test_icmp_type_never_matches_tcp_and_forks_on_icmp() -> None:
    (match, _), = compile_spec("-p icmp -m icmp --icmp-type 8 -j ACCEPT").matches[1:]
    assert match(Packet("1.1.1.1", "2.2.2.2", 1, 2, "tcp"), None) is False
    assert isinstance(match(Packet("1.1.1.1", "2.2.2.2", 0, 0, "icmp"), None), Fork)


def test_firewall_cause_names_owner_only_for_host_firewalls() -> None:
    kube_rule = {"kind": "rule", "where": "filter KUBE-FORWARD", "text": "-j DROP"}
    assert firewall_cause([], kube_rule) is None
    assert firewall_cause([], None) is None
    ufw_rule = {"kind": "rule", "where": "filter ufw-user-limit", "text": "-j REJECT"}
    assert firewall_cause([], ufw_rule) == FirewallCause("ufw", ("ufw-user-limit",))
    nft_rule = {"kind": "rule", "where": "inet filter input", "text": "drop"}
    assert firewall_cause([], nft_rule) == FirewallCause("nft table inet filter", ("input",))
    policy = {"kind": "policy", "where": "filter INPUT", "text": "policy DROP"}
    steps = [{"kind": "hook", "where": "filter INPUT", "text": "input hook"},
             {"kind": "jump", "where": "filter INPUT", "text": "-j KUBE-NODEPORTS", "detail": "jump KUBE-NODEPORTS"}]
    assert firewall_cause(steps, policy) is None  # a policy no firewall's chains led to: not named
    steps.append({"kind": "jump", "where": "filter INPUT", "text": "-j f2b-sshd", "detail": "jump f2b-sshd"})
    cause = firewall_cause(steps, policy)
    assert cause == FirewallCause("fail2ban", ("f2b-sshd",))
    assert sentence(cause, True) == "; host firewall fail2ban: its chains f2b-sshd did not accept it"


def test_nft_port_names_from_the_text_form() -> None:
    """The text form prints port names (`tcp dport ssh`): known IANA names compare as their numbers; any other
    name forks instead of being guessed. (A hand-made two-rule table: the real firewalld one has only `ssh`.)"""
    text = "table inet t {\n chain c {\n  type filter hook input priority 0; policy drop;\n" \
           "  tcp dport { ssh, https } accept\n  tcp dport kpd-made-up-name accept\n }\n}\n"
    facts = {"nft-ruleset.txt": Fact("nft-ruleset.txt", text, "nft", 0),
             "ip-addr.json": Fact("ip-addr.json", IP_ADDR, "ip -j addr", 0)}
    state = NodeState("fw-node", "bundle", MappingProxyType(facts))
    for port, want in ((443, {"accept"}), (22, {"accept"}), (8080, {"accept", "drop"})):
        req = TraceRequest("fw-node", Endpoint(CLIENT, None, None, "client"), Endpoint(NODE, port, "tcp", ""), "tcp",
                           iif="eth0")
        result = run_trace(req, state, None)
        assert _verdicts(result) == want, port
    assert any("port name kpd-made-up-name not known" in a for o in outcomes(result) for a in o["assumptions"])
