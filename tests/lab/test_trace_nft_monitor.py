"""`kpdoctor trace` against the kernel's own trace: `nft monitor trace` (nftables mode).

A "node" namespace holds kube-proxy's real `ip kube-proxy` table (edge-2's capture, tests/fixtures/trace/) and a
host firewall table on top (`inet kpd-hostfw`, the same as tests/lab/test_trace_kernel.py's) and a ufw-style
default-deny input chain (`inet kpd-ufw`: established, loopback and port 22 accepted). After the node's
ruleset is dumped (`nft -j list ruleset`: what the trace reads), a table of the test's own sets
`meta nftrace set 1` on the client's packets at prerouting priority -500 (before every other chain), and
`nft -a monitor trace` in the namespace prints every base chain the packet enters ("packet:" lines), every rule
that matched (`# handle N`, its verdict) and each base chain's policy. For each packet, the trace must name the
same base chains in the same order, the same matched rules (table, chain, handle) in the same order, and the
same final verdict: the kernel's sequence must be the sequence of one of the trace's branches (a numgen branch
point gives several branches with the same rules). A second node holds kube-proxy's table beside a real
firewalld table (`table inet firewalld` of a CentOS 8 host, tests/fixtures/realworld/firewalls/*/SOURCE) and is
checked the same way. Root only; namespaces with unique names, removed after.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import MappingProxyType

import pytest

from kpdoctor.lab import netns
from kpdoctor.node.state import Fact, NodeState
from kpdoctor.trace.addresses import Endpoint
from kpdoctor.trace.model import Branch
from kpdoctor.trace.run import TraceRequest, run_trace
from tests.support.line_monitor import TracedNode, await_subscribed, line_monitor
from tests.support.trace_kernel import (
    BLOCKED_CLIENT,
    CLIENT_NET,
    GOOD_CLIENT,
    NFT_FIREWALL,
    NFT_RULES,
    REAL_FIREWALLS,
    REJECTED_CLIENT,
    SENDER,
    kube_proxy_table_only,
    wire_trace_lab,
)

TOOLS = ("ip", "nft")
pytestmark = pytest.mark.root(*TOOLS)
NODE_IP = "10.82.0.2"  # edge-2's InternalIP in the capture
TRACER = f"""
table ip kpd-nftrace {{
    chain pre {{
        type filter hook prerouting priority -500
        ip saddr {CLIENT_NET}.0/24 meta nftrace set 1
    }}
}}
"""
# ufw's shape on top (hand-written, not ufw's own output: default-deny INPUT, established and loopback
# accepted, one allowed port), created last: at input priority 0 the kernel runs it first
UFW_STYLE = """
table inet kpd-ufw {
    chain ufw-input {
        type filter hook input priority 0; policy drop;
        ct state related,established accept
        iifname "lo" accept
        tcp dport 22 accept
    }
}
"""
# (source, destination, port, protocol): a ClusterIP with 2 and with 3 endpoints, UDP, ClientIP affinity, a
# NodePort, an eTP=Local NodePort, a port of no Service, an address of nothing, the host firewall's drop
# (forward) and reject (input), the ufw-style chain's allowed port and default deny
CASES = [
    (GOOD_CLIENT, "10.96.150.31", 443, "tcp"),
    (GOOD_CLIENT, "10.96.150.30", 80, "tcp"),
    (GOOD_CLIENT, "10.96.150.33", 53, "udp"),
    (GOOD_CLIENT, "10.96.150.35", 6379, "tcp"),
    (GOOD_CLIENT, NODE_IP, 31130, "tcp"),
    (GOOD_CLIENT, NODE_IP, 31131, "tcp"),
    (GOOD_CLIENT, "10.96.150.30", 81, "tcp"),
    (GOOD_CLIENT, "10.99.7.7", 80, "tcp"),
    (BLOCKED_CLIENT, "10.96.150.31", 443, "tcp"),
    (REJECTED_CLIENT, NODE_IP, 31130, "tcp"),
    (REJECTED_CLIENT, "10.96.150.31", 443, "tcp"),
    (GOOD_CLIENT, NODE_IP, 22, "tcp"),  # allowed by the ufw-style input chain
    (GOOD_CLIENT, NODE_IP, 8080, "tcp"),  # its default deny
    (GOOD_CLIENT, NODE_IP, 53, "udp"),
]
EVENT = re.compile(r"^trace id (?P<id>[0-9a-f]+) (?P<family>\w+) (?P<table>\S+) (?P<chain>\S+) (?P<rest>.*)$")
RULE = re.compile(r"^rule .* # handle (?P<handle>\d+) \(verdict (?P<verdict>[^)]*)\)")
POLICY = re.compile(r"^policy (?P<verdict>\w+)")


def _send(m: TracedNode, src: str, dst: str, dport: int, proto: str, sport: int) -> None:
    netns.run(["python3", "-c", SENDER, src, dst, str(dport), proto, str(sport), "1"], netns=m.client, timeout=30)


@contextmanager
def _monitor(tables: list[str]) -> Iterator[TracedNode]:
    """A node namespace with kube-proxy's table and `tables` (nft -f texts, in order), dumped, then traced."""
    prefix = netns.unique_prefix("kpd-nm")
    node, client, pods = f"{prefix}-node", f"{prefix}-cli", f"{prefix}-pods"
    try:
        wire_trace_lab(node, client, pods, NODE_IP)
        netns.run(["nft", "-j", "-f", "-"], netns=node, input=kube_proxy_table_only(NFT_RULES.read_text()))
        for text in tables:
            netns.run(["nft", "-f", "-"], netns=node, input=text)
        dump = netns.run(["nft", "-j", "list", "ruleset"], netns=node).stdout
        ip_addr = netns.run(["ip", "-j", "addr"], netns=node).stdout
        netns.run(["nft", "-f", "-"], netns=node, input=TRACER)  # after the dump: not part of what is traced
        with line_monitor(node, ["nft", "-a", "monitor", "trace"]) as lines:
            m = TracedNode(node, client, dump, ip_addr, lines)
            subscribed, seen = await_subscribed(
                lines, lambda attempt: _send(m, GOOD_CLIENT, "10.96.150.30", 81, "tcp", 40100 + attempt),
                lambda line: EVENT.match(line) is not None)
            if not subscribed:
                pytest.skip("`nft -a monitor trace` in a network namespace printed no trace event for 5 s "
                            f"(kernel/nft without nftrace in netns?); it printed: {seen[-5:]!r}")
            yield m
    finally:
        netns.delete(client)
        netns.delete(pods)
        netns.delete(node)


@pytest.fixture(scope="module")
def monitor() -> Iterator[TracedNode]:
    from conftest import require_root

    require_root(*TOOLS)
    with _monitor([NFT_FIREWALL, UFW_STYLE]) as m:
        yield m


@pytest.fixture(scope="module")
def firewalld_monitor() -> Iterator[TracedNode]:
    """kube-proxy's table beside a real firewalld table (tests/fixtures/realworld/firewalls/firewalld-centos8-nft)."""
    from conftest import require_root

    require_root(*TOOLS)
    with _monitor([(REAL_FIREWALLS / "firewalld-centos8-nft" / "dump.txt").read_text()]) as m:
        yield m


@dataclass(frozen=True)
class Path:
    """What a packet did, as (base chain order, matched rules in order, final verdict)."""

    chains: tuple[str, ...]  # "ip kube-proxy nat-prerouting"
    rules: tuple[tuple[str, int], ...]  # ("ip kube-proxy services", handle)
    verdict: str  # accept | drop


def kernel_path(lines: list[str], sport: int, proto: str) -> Path:
    """The kernel's path of the one traced packet from source port `sport` (tracer table left out)."""
    events = [m for m in map(EVENT.match, lines) if m is not None]
    ids = {m["id"] for m in events if m["rest"].startswith("packet:") and f"{proto} sport {sport} " in m["rest"]}
    assert len(ids) == 1, f"expected one traced packet from port {sport}, got trace ids {ids}: {lines[-20:]}"
    chains: list[str] = []
    rules: list[tuple[str, int]] = []
    verdict = "accept"
    for m in events:
        if m["id"] not in ids or m["table"] == "kpd-nftrace":
            continue
        where = f"{m['family']} {m['table']} {m['chain']}"
        rest = m["rest"]
        if rest.startswith("packet:"):
            chains.append(where)
        elif (rule := RULE.match(rest)) is not None:
            rules.append((where, int(rule["handle"])))
            if rule["verdict"] == "drop":
                verdict = "drop"
        elif (policy := POLICY.match(rest)) is not None and policy["verdict"] == "drop":
            verdict = "drop"
    return Path(tuple(chains), tuple(rules), verdict)


HANDLE = re.compile(r" handle (\d+)$")


def trace_path(leaf: Branch) -> Path:
    """The same view of one branch of the trace: its nft base chains, its matched nft rules (one rule can give
    several steps: a numgen branch, then its DNAT), its verdict (a reject is a drop in the kernel's trace)."""
    chains = tuple(s.where.removeprefix("nft ") for s in leaf.steps if s.kind == "hook" and s.where.startswith("nft "))
    rules: list[tuple[str, int]] = []
    for s in leaf.steps:
        found = HANDLE.search(s.source)
        if found is not None and (not rules or rules[-1] != (s.where, int(found[1]))):
            rules.append((s.where, int(found[1])))
    return Path(chains, tuple(rules), "accept" if leaf.verdict == "accept" else "drop")


def _trace(m: TracedNode, src: str, dst: str, dport: int, proto: str, sport: int) -> list[Branch]:
    facts = {
        "nft-ruleset.json": Fact("nft-ruleset.json", m.dump, "nft -j list ruleset", 0),
        "ip-addr.json": Fact("ip-addr.json", m.ip_addr, "ip -j addr", 0),
        "sysctl.txt": Fact("sysctl.txt", "net.ipv4.ip_forward = 1\n", "sysctl", 0),
    }
    state = NodeState("lab-node", "bundle", MappingProxyType(facts))
    req = TraceRequest("lab-node", Endpoint(src, None, None, "client"), Endpoint(dst, dport, proto, ""), proto,
                       sport=sport, iif="n0")
    result = run_trace(req, state, None)
    assert not result.error and result.complete
    return result.leaves


@pytest.mark.parametrize(("src", "dst", "dport", "proto"), CASES, ids=[f"{s}->{d}:{p}/{t}" for s, d, p, t in CASES])
def test_trace_equals_nft_monitor_trace(monitor: TracedNode, src: str, dst: str, dport: int, proto: str) -> None:
    sport = 42000 + CASES.index((src, dst, dport, proto))
    monitor.drain()
    _send(monitor, src, dst, dport, proto, sport)
    time.sleep(0.4)
    kernel = kernel_path(monitor.drain(), sport, proto)
    assert kernel.chains, "the kernel traced no base chain"
    predicted = [trace_path(leaf) for leaf in _trace(monitor, src, dst, dport, proto, sport)]
    assert kernel in predicted, (f"{src} -> {dst}:{dport}/{proto}\nkernel: {kernel}\ntrace branches:\n"
                                 + "\n".join(map(str, predicted)))


def test_equal_priority_runs_the_later_table_first(monitor: TracedNode) -> None:
    """hostfw-forward (priority 0, created after kube-proxy's table) runs before kube-proxy's filter-forward
    (priority 0): the kernel inserts a new hook before the same-priority ones; the trace walks them so."""
    sport = 42100
    monitor.drain()
    _send(monitor, GOOD_CLIENT, "10.96.150.31", 443, "tcp", sport)
    time.sleep(0.4)
    kernel = kernel_path(monitor.drain(), sport, "tcp")
    forward = [c for c in kernel.chains if "forward" in c]
    assert forward == ["inet kpd-hostfw hostfw-forward", "ip kube-proxy filter-forward"]
    leaves = _trace(monitor, GOOD_CLIENT, "10.96.150.31", 443, "tcp", sport)
    assert all([c for c in trace_path(leaf).chains if "forward" in c] == forward for leaf in leaves)


@pytest.mark.parametrize(("dport", "verdict"), [(22, "accept"), (8080, "drop")])
def test_ufw_style_default_deny_input(monitor: TracedNode, dport: int, verdict: str) -> None:
    """The ufw-style chain decides packets to the node itself, in the kernel and in the trace alike."""
    sport = 42200 + dport % 100
    monitor.drain()
    _send(monitor, GOOD_CLIENT, NODE_IP, dport, "tcp", sport)
    time.sleep(0.4)
    kernel = kernel_path(monitor.drain(), sport, "tcp")
    assert "inet kpd-ufw ufw-input" in kernel.chains and kernel.verdict == verdict
    leaves = _trace(monitor, GOOD_CLIENT, NODE_IP, dport, "tcp", sport)
    assert [trace_path(leaf) for leaf in leaves] == [kernel]


# the real firewalld table: ClusterIPs and NodePorts (forwarded: firewalld's filter_FORWARD rejects them), the
# node's ports firewalld's public zone allows (ssh, 9090) or not, UDP to the ssh port (`tcp dport ssh` is TCP only)
FIREWALLD_CASES = [
    (GOOD_CLIENT, "10.96.150.31", 443, "tcp"),
    (GOOD_CLIENT, "10.96.150.33", 53, "udp"),
    (GOOD_CLIENT, NODE_IP, 31130, "tcp"),
    (GOOD_CLIENT, NODE_IP, 31131, "tcp"),
    (GOOD_CLIENT, NODE_IP, 22, "tcp"),
    (GOOD_CLIENT, NODE_IP, 9090, "tcp"),
    (GOOD_CLIENT, NODE_IP, 8080, "tcp"),
    (GOOD_CLIENT, NODE_IP, 22, "udp"),
    (GOOD_CLIENT, "10.99.7.7", 80, "tcp"),
]


@pytest.mark.parametrize(("src", "dst", "dport", "proto"), FIREWALLD_CASES,
                         ids=[f"{d}:{p}/{t}" for _, d, p, t in FIREWALLD_CASES])
def test_real_firewalld_equals_nft_monitor_trace(firewalld_monitor: TracedNode, src: str, dst: str, dport: int,
                                                 proto: str) -> None:
    """The kernel's base chains, matched rules (jumps and gotos through firewalld's zone chains included) and
    verdict are those of one of the trace's branches (the trace forks on `oifname`: routing is not evaluated)."""
    sport = 43000 + FIREWALLD_CASES.index((src, dst, dport, proto))
    firewalld_monitor.drain()
    _send(firewalld_monitor, src, dst, dport, proto, sport)
    time.sleep(0.4)
    kernel = kernel_path(firewalld_monitor.drain(), sport, proto)
    assert any(c.startswith("inet firewalld ") for c in kernel.chains), kernel
    predicted = [trace_path(leaf) for leaf in _trace(firewalld_monitor, src, dst, dport, proto, sport)]
    assert kernel in predicted, (f"{src} -> {dst}:{dport}/{proto}\nkernel: {kernel}\ntrace branches:\n"
                                 + "\n".join(map(str, predicted)))
