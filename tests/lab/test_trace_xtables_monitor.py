"""`kpdoctor trace` against the kernel's own trace of iptables-nft rules (`xtables-monitor --trace`).

iptables-nft rules are nf_tables rules: with `-j TRACE` (iptables-nft makes it `meta nftrace set 1`) the kernel
emits a trace event for every base chain the packet enters, every rule that matched and each base chain's policy,
and `xtables-monitor --trace` prints them with the rule in iptables-save form:

    PACKET: 2 375dff72 IN=n0 ... SRC=203.0.113.10 DST=10.96.150.30 ... SPORT=42000 DPORT=80 SYN
     TRACE: 2 375dff72 nat:KUBE-SERVICES:rule:0x55:JUMP:KUBE-SVC-BF5PCIFEFLII3SZU  -4 -t nat -A KUBE-SERVICES ...
     TRACE: 2 375dff72 filter:FORWARD:policy:DROP

Two "nodes" (root; namespaces with unique names, removed after): kube-proxy's own iptables-nft rules (edge-1's
capture, tests/fixtures/trace/) with the host firewall of tests/lab/test_trace_kernel.py on top (a FORWARD drop
for one client, an INPUT tcp-reset for another), and the same rules under the real ufw + Docker rulesets of
tests/lab/test_trace_hostfw_real.py (tests/fixtures/realworld/firewalls/*/SOURCE). The node's ruleset is dumped
(`iptables-nft-save`: what the trace reads), then the test adds its own `-j TRACE` rules in the raw table (which
the dump does not have) for source ports 42000-42999. For each packet (from outside, from a pod address, from
the node itself) the kernel's path must be the path of one of the trace's branches:
- the base chains in order ("nat PREROUTING", "filter FORWARD", ...), leaving out a visit where no rule matched
  and the policy is ACCEPT (the trace does not step through empty chains), and the test's raw table;
- every matched rule in order, as (table, rule text): the kernel's rule text is xtables-monitor's `-A ...` line,
  the trace's is the dump line it cites (file:line), both printed by iptables-nft from the same kernel rule, so
  equal text maps each kernel event back to its dump line;
- the final verdict (a REJECT is a drop in the kernel's trace).
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kpdoctor.lab import netns
from kpdoctor.lab.apply import apply_iptables
from kpdoctor.trace.model import Branch
from tests.support.line_monitor import LineMonitor, TracedNode, await_subscribed, line_monitor
from tests.support.trace_kernel import (
    BLOCKED_CLIENT,
    CALICO_POD_IF,
    FIREWALL,
    GOOD_CLIENT,
    NODE_IPS,
    POD_SRC,
    REJECTED_CLIENT,
    RULES,
    SENDER,
    load_calico_aks,
    load_ufw_docker,
    trace_in_lab,
    wire_pod_source,
    wire_trace_lab,
)

TOOLS = ("ip", "iptables-nft", "iptables-nft-restore", "iptables-nft-save", "xtables-monitor", "ipset")
pytestmark = pytest.mark.root(*TOOLS)
NODE_IP = NODE_IPS["iptables"]
NODE = "NODE"  # placeholder: the node's own address
SPORTS = "42000:42999"  # the packets the test's TRACE rules mark
# (source kind, destination, port, protocol); kinds: external (good client, arrives on n0), blocked / rejected
# (the clients the host firewall drops / rejects), pod (arrives on pods0), node (locally generated)
PACKETS = [
    ("external", "10.96.150.30", 80, "tcp"),  # ClusterIP, 3 endpoints, from outside (masqueraded)
    ("external", "10.96.150.31", 443, "tcp"),  # ClusterIP, 2 endpoints
    ("external", "10.96.150.33", 53, "udp"),
    ("external", "10.96.150.35", 6379, "tcp"),  # ClientIP affinity
    ("external", NODE, 31130, "tcp"),  # NodePort, eTP Cluster
    ("external", NODE, 31131, "tcp"),  # NodePort, eTP Local
    ("external", "10.96.150.30", 81, "tcp"),  # a port of no Service
    ("external", "10.99.7.7", 80, "tcp"),  # an address no rule names
    ("external", NODE, 22, "tcp"),
    ("external", NODE, 8080, "tcp"),
    ("external", NODE, 80, "tcp"),  # Docker's published port (ufw node)
    ("blocked", "10.96.150.31", 443, "tcp"),
    ("rejected", NODE, 31130, "tcp"),
    ("pod", "10.96.150.31", 443, "tcp"),
    ("pod", "10.96.150.34", 8125, "udp"),
    ("pod", NODE, 8080, "tcp"),
    ("node", "10.96.150.30", 80, "tcp"),
    ("node", NODE, 31130, "tcp"),
    ("node", NODE, 80, "tcp"),
    ("pod", "10.244.52.11", 4789, "udp"),  # VXLAN from a workload (Calico's workload chain drops it)
    ("pod", "10.244.52.11", 8080, "tcp"),  # pod to pod
    ("pod", NODE, 22, "tcp"),  # workload to host (Calico: cali-wl-to-host)
    ("stray", "10.96.150.31", 443, "tcp"),  # a pod on a cali* interface Calico does not know ("Unknown interface")
    ("stray", "10.244.52.11", 8080, "tcp"),
    ("pod", "198.51.100.7", 443, "tcp"),  # a pod to the outside world (Calico's nat-outgoing: ipsets, MASQUERADE)
]
MAX_EXAMPLES = 4
# a second pod, on a workload-style interface the Calico dump does not name
STRAY_IF, STRAY_SRC, STRAY_GW = "cali0f0f0f0f0f0", "10.244.251.5", "10.244.251.1"
_sports = itertools.count(42500)


@dataclass
class XtNode(TracedNode):
    name: str  # which firewall beside kube-proxy (the fixture's param)
    pods: str
    stray: str
    ipset_list: str

    def __repr__(self) -> str:
        return f"XtNode({self.name})"


@pytest.fixture(scope="module", params=["kube-proxy", "ufw-docker", "calico-aks"])
def xt(request: pytest.FixtureRequest) -> Iterator[XtNode]:
    from conftest import require_root

    require_root(*TOOLS)
    prefix = netns.unique_prefix("kpd-xm")
    node, client, pods, stray = f"{prefix}-node", f"{prefix}-cli", f"{prefix}-pods", f"{prefix}-stray"
    try:
        wire_trace_lab(node, client, pods, NODE_IP)
        wire_pod_source(node, pods)
        _wire_stray_pod(node, stray)
        apply_iptables(node, RULES.read_text())
        if request.param == "ufw-docker":
            load_ufw_docker(node, pods)
        if request.param == "calico-aks":
            load_calico_aks(node)
        for rule in FIREWALL:  # inserted first in INPUT and FORWARD
            netns.run(["iptables-nft", *rule], netns=node)
        dump = netns.run(["iptables-nft-save"], netns=node).stdout
        assert "*raw" not in dump  # the raw table below is the test's alone
        ip_addr = netns.run(["ip", "-j", "addr"], netns=node).stdout
        ipset_list = netns.run(["ipset", "list"], netns=node).stdout
        for chain in ("PREROUTING", "OUTPUT"):
            for proto in ("tcp", "udp"):
                netns.run(["iptables-nft", "-t", "raw", "-A", chain, "-p", proto, "--sport", SPORTS, "-j", "TRACE"],
                          netns=node)
        with line_monitor(node, ["xtables-monitor", "--trace"]) as mon:
            xt = XtNode(node, client, dump, ip_addr, mon, name=request.param, pods=pods, stray=stray,
                        ipset_list=ipset_list)  # fmt: skip
            subscribed, seen = await_subscribed(
                mon, lambda attempt: _send(xt, "node", NODE_IP, 9, "udp", 42900 + attempt),
                lambda line: line.startswith("PACKET:"))
            if not subscribed:
                pytest.fail(f"`xtables-monitor --trace` printed no trace event for 5 s; it printed: {seen[-5:]!r}")
            yield xt
    finally:
        netns.delete(client)
        netns.delete(stray)
        netns.delete(pods)
        netns.delete(node)


def _wire_stray_pod(node: str, stray: str) -> None:
    netns.create(stray)
    netns.veth(node, STRAY_IF, stray, "p0")
    netns.add_address(node, STRAY_IF, f"{STRAY_GW}/32")
    netns.add_route(node, f"{STRAY_SRC}/32", dev=STRAY_IF)
    netns.add_address(stray, "p0", f"{STRAY_SRC}/32")
    netns.add_route(stray, "default", via=STRAY_GW, dev="p0", onlink=True)


@dataclass(frozen=True)
class Path:
    """What a packet did: base chains entered (no-op visits left out), matched rules in order, final verdict."""

    chains: tuple[str, ...]  # "nat PREROUTING"
    rules: tuple[tuple[str, str], ...]  # ("nat", "-A KUBE-SERVICES -d 10.96.150.30/32 ... -j KUBE-SVC-...")
    verdict: str  # accept | drop


TRACE_LINE = re.compile(r"^ ?TRACE: \d+ (?P<id>[0-9a-f]+) (?P<table>[^:\s]+):(?P<chain>[^:\s]+):(?P<kind>rule|policy|"
                        r"return):(?P<rest>.*)$")


RATE_LIMITED_LOG = re.compile(r" -m (?:hash)?limit .* -j N?F?LOG\b")


def _visits_to_path(visits: list[tuple[str, list[tuple[str, str]], str]]) -> Path:
    """(base chain, matched rules, its policy verdict or "") per visit -> Path. A rate-limited LOG rule (ufw's
    `-m limit --limit 3/min --limit-burst 10 -j LOG`) is left out on both sides: whether it matches depends on the
    kernel's token bucket, i.e. on the packets before (the trace assumes a packet within the burst; the kernel
    stops matching it after 10 logged packets), and it decides nothing (LOG does not end the chain)."""
    chains: list[str] = []
    rules: list[tuple[str, str]] = []
    verdict = "accept"
    for chain, matched, policy in visits:
        matched = [rule for rule in matched if not RATE_LIMITED_LOG.search(rule[1])]
        if matched or policy not in ("", "accept"):
            chains.append(chain)
        rules.extend(matched)
        if policy == "drop":
            verdict = "drop"
    return Path(tuple(chains), tuple(rules), verdict)


def kernel_path(lines: list[str], sport: int) -> Path:
    """The kernel's path of the one traced packet from source port `sport` (the test's raw table left out)."""
    ids = {line.split()[2] for line in lines if line.startswith("PACKET:") and f" SPORT={sport} " in line}
    # one id per packet; a locally generated packet to the node's own address comes back on `lo` as a new one
    assert 1 <= len(ids) <= 2, f"expected one traced packet from port {sport}, got trace ids {ids}: {lines[-20:]}"
    visits: list[tuple[str, list[tuple[str, str]], str]] = []
    for line in lines:
        words = line.split()
        if len(words) < 3 or words[2] not in ids:
            continue
        if line.startswith("PACKET:"):
            visits.append(("", [], ""))
            continue
        m = TRACE_LINE.match(line)
        assert m is not None and visits, f"unexpected xtables-monitor line: {line!r}"
        chain, matched, policy = visits[-1]
        chain = chain or f"{m['table']} {m['chain']}"
        if m["kind"] == "policy":
            policy = m["rest"].strip().lower()
        elif m["kind"] == "rule":
            verdict, _, text = m["rest"].partition("  ")
            text = text.removeprefix(f"-4 -t {m['table']} ")
            matched = [*matched, (m["table"], text)]
            if verdict.endswith(":DROP"):
                policy = "drop"
        visits[-1] = (chain, matched, policy)
    return _visits_to_path([v for v in visits if v[0] and not v[0].startswith("raw ")])


def trace_path(leaf: Branch) -> Path:
    """The same view of one branch of the trace: its iptables base chains, the dump lines of its matched rules
    (a rule giving several steps, e.g. MARK then its chain's next rule, counts once), its verdict."""
    visits: list[tuple[str, list[tuple[str, str]], str]] = []
    for s in leaf.steps:
        if s.kind == "hook" and s.where.startswith("iptables-nft "):
            visits.append((s.where.removeprefix("iptables-nft "), [], ""))
        elif not visits:
            continue
        elif s.kind == "policy":
            chain, matched, _ = visits[-1]
            visits[-1] = (chain, matched, s.detail)
        elif s.source and s.kind not in ("hook", "verdict"):
            chain, matched, policy = visits[-1]
            rule = (s.where.split()[0], s.text)
            if not matched or matched[-1] != rule:
                visits[-1] = (chain, [*matched, rule], policy)
    path = _visits_to_path(visits)
    return Path(path.chains, path.rules, "accept" if leaf.verdict == "accept" else "drop")


def _where(xt: XtNode, kind: str) -> tuple[str, str, str]:
    """(source address, the namespace that sends, the interface the packet arrives on at the node)."""
    if kind == "pod":
        return POD_SRC, xt.pods, CALICO_POD_IF if xt.name == "calico-aks" else "pods0"
    if kind == "stray":
        return STRAY_SRC, xt.stray, STRAY_IF
    if kind == "node":
        return NODE_IP, xt.node, ""
    return {"external": GOOD_CLIENT, "blocked": BLOCKED_CLIENT, "rejected": REJECTED_CLIENT}[kind], xt.client, "n0"


def _send(xt: XtNode, kind: str, dst: str, dport: int, proto: str, sport: int) -> None:
    src, sender, _ = _where(xt, kind)
    netns.run(["python3", "-c", SENDER, src, dst, str(dport), proto, str(sport), "1"], netns=sender, timeout=30)


def _settled_lines(mon: LineMonitor, sport: int) -> list[str]:
    """The monitor's lines once the packet's events have stopped coming (0.3 s without a new line after its first
    event; at most 6 s): on a busy machine the events of one packet can arrive spread out."""
    lines: list[str] = []
    quiet_since = time.monotonic()
    deadline = quiet_since + 6.0
    while time.monotonic() < deadline:
        time.sleep(0.1)
        new = mon.drain()
        if new:
            lines.extend(new)
            quiet_since = time.monotonic()
        elif any(f" SPORT={sport} " in line for line in lines) and time.monotonic() - quiet_since >= 0.3:
            break
    return lines


def _check(xt: XtNode, kind: str, dst: str, dport: int, proto: str, sport: int) -> Path:
    dst = NODE_IP if dst == NODE else dst
    src, _, iif = _where(xt, kind)
    xt.monitor.drain()
    _send(xt, kind, dst, dport, proto, sport)
    kernel = kernel_path(_settled_lines(xt.monitor, sport), sport)
    assert kernel.chains, "the kernel traced no base chain"
    dumped = set(xt.dump.splitlines())
    assert all(text in dumped for _, text in kernel.rules), "a rule the kernel matched is not a line of the dump"
    result, _, _ = trace_in_lab("iptables", xt.dump, xt.ip_addr, src, dst, dport, proto, iif, sport=sport,
                                ipset_list=xt.ipset_list)
    assert not result.error, result.error
    predicted = [trace_path(leaf) for leaf in result.leaves]
    assert kernel in predicted, (f"{xt.name}: {kind} {src}:{sport} -> {dst}:{dport}/{proto}\nkernel: {kernel}\n"
                                 "trace branches:\n" + "\n".join(map(str, predicted)))
    return kernel


@pytest.mark.parametrize("packet", PACKETS, ids=[f"{k}-{d}:{p}/{t}" for k, d, p, t in PACKETS])
def test_trace_equals_xtables_monitor_trace(xt: XtNode, packet: tuple[str, str, int, str]) -> None:
    _check(xt, *packet, sport=42000 + PACKETS.index(packet))


@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(["external", "pod", "node", "blocked", "rejected"]),
       dst=st.sampled_from([NODE, "10.96.150.30", "10.96.150.31", "10.96.150.35", "10.99.7.7"]),
       dport=st.sampled_from([22, 80, 443, 6379, 8080, 31130, 31131, 31999]),
       proto=st.sampled_from(["tcp", "udp"]))
def test_hypothesis_packets_equal_xtables_monitor_trace(xt: XtNode, kind: str, dst: str, dport: int,
                                                        proto: str) -> None:
    _check(xt, kind, dst, dport, proto, next(_sports))


def test_kernel_paths_are_not_trivial(xt: XtNode) -> None:
    """The comparison has teeth: the kernel's path through a ClusterIP names kube-proxy's DNAT rule, the host
    firewall's FORWARD drop (and, on the ufw node, ufw's FORWARD policy DROP for the eTP=Local NodePort; on the
    Calico node, the "Unknown interface" and workload VXLAN drops) ends in a drop, and each of those paths is one of
    the trace's branches."""
    path = _check(xt, "external", "10.96.150.31", 443, "tcp", 42950)
    assert any("-j DNAT --to-destination 10.244.5" in text for _, text in path.rules), path
    assert path.verdict == "accept" and "filter FORWARD" in path.chains
    blocked = _check(xt, "blocked", "10.96.150.31", 443, "tcp", 42951)
    assert blocked.verdict == "drop" and blocked.rules[-1] == ("filter", f"-A FORWARD -s {BLOCKED_CLIENT}/32 -j DROP")
    local = _check(xt, "external", NODE, 31131, "tcp", 42952)
    if xt.name == "ufw-docker":
        assert local.verdict == "drop" and local.chains[-1] == "filter FORWARD", local
    else:
        assert local.verdict == "accept", local
    if xt.name == "calico-aks":
        stray = _check(xt, "stray", "10.96.150.31", 443, "tcp", 42953)
        assert stray.verdict == "drop" and "Unknown interface" in stray.rules[-1][1], stray
        vxlan = _check(xt, "pod", "10.244.52.11", 4789, "udp", 42954)
        assert vxlan.verdict == "drop" and "Drop VXLAN encapped packets" in vxlan.rules[-1][1], vxlan
        out = _check(xt, "pod", "198.51.100.7", 443, "tcp", 42955)  # ipset members: tests/support CALICO_IPSETS
        assert out.rules[-1][1].startswith("-A cali-nat-outgoing") and "--match-set cali40masq-ipam-pools" in \
            out.rules[-1][1], out
        result, _, _ = trace_in_lab("iptables", xt.dump, xt.ip_addr, POD_SRC, "198.51.100.7", 443, "tcp",
                                    CALICO_POD_IF, ipset_list=xt.ipset_list)
        assert not [a for leaf in result.leaves for a in leaf.assumptions if "ipset" in a]  # decided, not forked
        inside = _check(xt, "pod", "10.244.52.11", 8080, "tcp", 42956)
        assert not any(text.startswith("-A cali-nat-outgoing") for _, text in inside.rules), inside
