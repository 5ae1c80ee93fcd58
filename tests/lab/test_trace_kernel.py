"""Proof of `kpdoctor trace` against the kernel, not against ourselves.

A "node" namespace holds kube-proxy's own rules from a real capture (tests/fixtures/trace/README.md) — iptables
mode (edge-1's iptables-nft dump) or nftables mode (edge-2's `ip kube-proxy` table) — plus host-firewall rules
added on top (iptables-nft rules, or an nft table of their own); a "client" namespace sends real packets (TCP SYNs, UDP datagrams) to
hypothesis-chosen destinations from hypothesis-chosen sources. The kernel's answer is read from the node's
conntrack table: a confirmed entry means the packet got through every hook (its reply source is the DNAT
target); no entry means a rule dropped or rejected it before conntrack confirmed it. The trace runs on what
`iptables-nft-save` prints inside the namespace, with the namespace's own `ip -j addr` and sysctls.
Bounded: at most MAX_EXAMPLES rulesets x packets, SAMPLES connections per statistical case.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kpdoctor.cluster.state import ClusterState
from kpdoctor.lab import netns
from kpdoctor.lab.apply import apply_iptables
from kpdoctor.node.bundle import read_bundle
from kpdoctor.trace.inputs import trace_cluster_state
from tests.support.trace_kernel import (
    BLOCKED_CLIENT,
    FIREWALL,
    GOOD_CLIENT,
    KERNEL_TOOLS,
    NFT_FIREWALL,
    NFT_RULES,
    NODE_IPS,
    REJECTED_CLIENT,
    RULES,
    kernel_outcome,
    kube_proxy_table_only,
    trace_in_lab,
    wire_trace_lab,
)

pytestmark = pytest.mark.root(*KERNEL_TOOLS)
NODE_IP = "NODE_IP"  # placeholder in TARGETS: the node's own InternalIP (differs per mode)
# destinations from the captured rules (ClusterIPs, a NodePort, an unknown port) and one that no rule names
TARGETS = [
    ("10.96.150.30", 80, "tcp"),  # payments/ledger: 3 endpoints (one stale)
    ("10.96.150.31", 443, "tcp"),  # payments/billing
    ("10.96.150.33", 53, "udp"),  # payments/pay-dns
    ("10.96.150.34", 8125, "udp"),  # payments/audit-udp
    ("10.96.150.35", 6379, "tcp"),  # payments/tokens (ClientIP affinity)
    (NODE_IP, 31130, "tcp"),  # billing NodePort on the node
    (NODE_IP, 31131, "tcp"),  # pay-gateway NodePort, eTP=Local
    ("10.96.150.30", 81, "tcp"),  # a port of no Service
    ("10.99.7.7", 80, "tcp"),  # an address of nothing: routed to the pod-network dummy
]
SAMPLES = 120
# A share differs from its prediction by more than Z standard errors (binomial) with probability ~7e-6 per
# check when the prediction is right: up to 25 hypothesis cases x a few targets per run stay far from a false
# alarm; at 120 connections a share off by more than ~0.2 (0.19 at p=1/3, 0.21 at p=1/2) is caught.
Z = 4.5
MAX_EXAMPLES = 25
MAX_EXAMPLES_WITHOUT_IP_ADDR = 15
CAPTURED_NODE = {"iptables": "edge-1", "nftables": "edge-2"}  # the capture's node each ruleset comes from
DEMO = Path(__file__).resolve().parents[2] / "kpdoctor" / "demo" / "bundle"  # capture B2's cluster state


@functools.cache
def b2_cluster() -> ClusterState:
    cluster = trace_cluster_state(read_bundle(DEMO))
    assert cluster is not None
    return cluster


@dataclass
class KernelNode:
    mode: str
    node_ip: str
    node: str
    client: str
    dump: str
    ip_addr: str

    def __repr__(self) -> str:  # hypothesis prints failing examples: not the whole dump
        return f"KernelNode({self.mode}, {self.node!r})"


@pytest.fixture(scope="module", params=["iptables", "nftables"])
def kernel(request: pytest.FixtureRequest) -> Iterator[KernelNode]:
    from conftest import require_root

    require_root(*KERNEL_TOOLS)
    mode = request.param
    node_ip = NODE_IPS[mode]
    prefix = netns.unique_prefix("kpd-tr")
    node, client, pods = f"{prefix}-node", f"{prefix}-cli", f"{prefix}-pods"
    try:
        wire_trace_lab(node, client, pods, node_ip)
        if mode == "iptables":
            apply_iptables(node, RULES.read_text())
            for rule in FIREWALL:
                netns.run(["iptables-nft", *rule], netns=node)
            dump = netns.run(["iptables-nft-save"], netns=node).stdout
        else:
            netns.run(["nft", "-j", "-f", "-"], netns=node, input=kube_proxy_table_only(NFT_RULES.read_text()))
            netns.run(["nft", "-f", "-"], netns=node, input=NFT_FIREWALL)
            dump = netns.run(["nft", "-j", "list", "ruleset"], netns=node).stdout
        ip_addr = netns.run(["ip", "-j", "addr"], netns=node).stdout
        yield KernelNode(mode, node_ip, node, client, dump, ip_addr)
    finally:
        netns.delete(client)
        netns.delete(pods)
        netns.delete(node)


def _kernel_outcome(k: KernelNode, src: str, dst: str, dport: int, proto: str, count: int) -> list[str]:
    """Send `count` connections; the DNAT target ("ip:port", "" when not translated) of each confirmed one."""
    return kernel_outcome(k.node, k.client, src, dst, dport, proto, count)


def _trace(k: KernelNode, src: str, dst: str, dport: int, proto: str,
           without_ip_addr: bool = False) -> tuple[dict[str, float], set[str]]:
    """(endpoint -> probability over the branches that assumed nothing, every DNAT target any accepted branch
    reaches). They differ where the rules depend on state the dump cannot show (ClientIP affinity's
    `-m recent --rcheck`): then the kernel may pick any of the possible targets. `without_ip_addr`: the trace
    does not get the namespace's `ip -j addr`, only capture B2's cluster state (the Node's status.addresses,
    the Nodes' podCIDRs) as the node the dump was captured on."""
    predicted, possible, _ = _trace_drops(k, src, dst, dport, proto, without_ip_addr)
    return predicted, possible


def _trace_drops(k: KernelNode, src: str, dst: str, dport: int, proto: str,
                 without_ip_addr: bool) -> tuple[dict[str, float], set[str], bool]:
    """`_trace`, and whether a branch that rests on an assumption ends dropped or rejected (then the kernel,
    which knows the fact the trace assumed, may confirm nothing although some other branch is accepted)."""
    if without_ip_addr:
        result, predicted, possible = trace_in_lab(k.mode, k.dump, None, src, dst, dport, proto, "n0",
                                                   cluster=b2_cluster(), node=CAPTURED_NODE[k.mode])
    else:
        result, predicted, possible = trace_in_lab(k.mode, k.dump, k.ip_addr, src, dst, dport, proto, "n0")
    assert not result.error
    return predicted, possible, any(leaf.verdict != "accept" and leaf.assumptions for leaf in result.leaves)


def _check(kernel: KernelNode, target: tuple[str, int, str], src: str, without_ip_addr: bool = False) -> None:
    dst, dport, proto = target
    dst = kernel.node_ip if dst == NODE_IP else dst
    predicted, possible, may_drop = _trace_drops(kernel, src, dst, dport, proto, without_ip_addr)
    many = len(possible) > 1
    observed = _kernel_outcome(kernel, src, dst, dport, proto, SAMPLES if many else 3)
    if not possible:  # the trace says: dropped or rejected before conntrack confirms the connection
        assert observed == [], f"trace predicts no delivery for {src} -> {dst}:{dport}/{proto}, kernel: {observed}"
        return
    assert observed or may_drop, (f"trace predicts {possible} for {src} -> {dst}:{dport}/{proto}, the kernel "
                                  "confirmed nothing")
    assert set(observed) <= possible, f"kernel used {set(observed) - possible}, trace allows only {possible}"
    if many and set(predicted) == possible:  # pure chance (statistic): every target seen, in proportion
        assert set(observed) == set(predicted), f"{SAMPLES} connections reached only {set(observed)} of {predicted}"
        for target_ep, p in predicted.items():
            share = observed.count(target_ep) / len(observed)
            bound = Z * (p * (1 - p) / len(observed)) ** 0.5
            assert abs(share - p) < bound, (f"{target_ep}: predicted {p:.2f}, observed {share:.2f} of "
                                            f"{len(observed)} (bound {bound:.2f})")


@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(target=st.sampled_from(TARGETS), src=st.sampled_from([GOOD_CLIENT, BLOCKED_CLIENT, REJECTED_CLIENT]))
def test_trace_matches_kernel(kernel: KernelNode, target: tuple[str, int, str], src: str) -> None:
    _check(kernel, target, src)


@settings(max_examples=MAX_EXAMPLES_WITHOUT_IP_ADDR, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(target=st.sampled_from(TARGETS), src=st.sampled_from([GOOD_CLIENT, BLOCKED_CLIENT, REJECTED_CLIENT]))
def test_trace_without_ip_addr_matches_kernel(kernel: KernelNode, target: tuple[str, int, str], src: str) -> None:
    """Without ip-addr.json: "is it local?" is decided from the cluster's facts; the prediction is still the
    kernel's."""
    _check(kernel, target, src, without_ip_addr=True)


def test_without_ip_addr_the_pod_endpoints_are_decided_and_are_the_kernels(kernel: KernelNode) -> None:
    """Not a vacuous pass: without ip-addr.json the ledger ClusterIP's endpoints are predicted unconditionally
    (the podCIDRs decide they are not local), exactly as with it, and the kernel spreads connections over them."""
    target = ("10.96.150.30", 80, "tcp")
    with_addr, _ = _trace(kernel, GOOD_CLIENT, *target)
    predicted, possible = _trace(kernel, GOOD_CLIENT, *target, without_ip_addr=True)
    assert len(predicted) >= 2 and predicted == with_addr and set(predicted) == possible
    _check(kernel, target, GOOD_CLIENT, without_ip_addr=True)


def test_kernel_fixture_has_the_firewall(kernel: KernelNode) -> None:
    """The traced dump is the kernel's own view, with the host firewall on top of kube-proxy's rules."""
    if kernel.mode == "iptables":
        assert f"-A FORWARD -s {BLOCKED_CLIENT}/32 -j DROP" in kernel.dump
    else:
        tables = {(t["table"]["family"], t["table"]["name"]) for t in json.loads(kernel.dump)["nftables"] if "table" in t}
        assert tables == {("ip", "kube-proxy"), ("inet", "kpd-hostfw")}
    assert json.loads(kernel.ip_addr)
