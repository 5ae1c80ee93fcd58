"""Real packets through the reference proxier's rules, in every mode this kernel can run.

For each of iptables mode on the nf_tables backend, iptables mode on the legacy
backend, and nftables mode: the lab's Services are rendered by kpdoctor's
reference proxier (the same code as `kpdoctor proxier render`), loaded into a
real "node" namespace with iptables-restore / nft -f, and real TCP connections
from pod and client namespaces must land where kube-proxy would send them.
Every connect is bounded (timeout per attempt, bounded attempt counts).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from kpdoctor.lab.apply import dump_ruleset
from kpdoctor.lab.cluster import LabService
from kpdoctor.lab.scenario import load_services
from kpdoctor.lab.servers import Attempt, connect, connect_once
from kpdoctor.lab.topology import NODE_IP, POD_GATEWAY, Lab

ROOT_TOOLS = ("ip", "iptables-restore", "iptables-legacy-restore", "nft", "nfacct")
pytestmark = pytest.mark.root(*ROOT_TOOLS)

POD_PORT = 8080
WEB = LabService("web", "10.96.0.10", 80, POD_PORT, node_port=30080)  # endpoints filled per lab
EMPTY = LabService("empty", "10.96.0.11", 80, POD_PORT, node_port=30081)
STICKY = LabService("sticky", "10.96.0.12", 80, POD_PORT, affinity_seconds=600)
SINGLE = LabService("single", "10.96.0.13", 8443, POD_PORT)  # only pod-1
MAX_CONNECTS = 60


@dataclass
class RenderedLab:
    lab: Lab
    mode: str
    backend: str
    rules: str

    @property
    def pod_client(self) -> str:
        return self.lab.pods[0].netns


VARIANTS = [("iptables", "nft"), ("iptables", "legacy"), ("nftables", "nft")]


@pytest.fixture(scope="module", params=VARIANTS, ids=["iptables-nft", "iptables-legacy", "nftables"])
def rendered(request: pytest.FixtureRequest) -> Iterator[RenderedLab]:
    from conftest import require_root

    require_root(*ROOT_TOOLS)
    mode, backend = request.param
    with Lab(pods=2) as lab:
        eps = [p.ip for p in lab.pods]
        services = [
            LabService(**{**WEB.__dict__, "endpoints": eps}),
            EMPTY,
            LabService(**{**STICKY.__dict__, "endpoints": eps}),
            LabService(**{**SINGLE.__dict__, "endpoints": [lab.pods[1].ip]}),
        ]
        _, rules = load_services(lab, services, mode=mode, backend=backend)
        for pod in lab.pods:
            lab.serve(pod, POD_PORT)
        yield RenderedLab(lab, mode, backend, rules)


def _pods_until_both(netns: str, ip: str, port: int) -> tuple[set[str], list[Attempt]]:
    """Connect repeatedly (at most MAX_CONNECTS) until two different pods answered."""
    seen: set[str] = set()
    attempts: list[Attempt] = []
    while len(attempts) < MAX_CONNECTS and len(seen) < 2:
        batch = connect(netns, ip, port, count=10, timeout=2.0)
        attempts += batch
        seen |= {a.pod for a in batch if a.outcome == "ok"}
    return seen, attempts


def test_the_rules_loaded_are_the_rendered_ones(rendered: RenderedLab) -> None:
    dump = dump_ruleset(rendered.lab.node_ns)
    if rendered.mode == "nftables":
        assert "table ip kube-proxy" in dump.get("nft list ruleset")
        assert "10.96.0.10 . tcp . 80" in dump.get("nft list ruleset")
    else:
        save = dump.get("iptables-nft-save" if rendered.backend == "nft" else "iptables-legacy-save")
        assert ":KUBE-SERVICES - " in save and "-d 10.96.0.10/32" in save
        assert "KUBE-SERVICES" in rendered.rules


def test_cluster_ip_reaches_a_pod(rendered: RenderedLab) -> None:
    attempt = connect_once(rendered.pod_client, SINGLE.cluster_ip, SINGLE.port)
    assert attempt.outcome == "ok", attempt
    # DNAT to the only endpoint; pod-to-pod traffic keeps its source (no masquerade)
    assert attempt.pod == "pod-1" and attempt.peer.split(":")[0] == rendered.lab.pods[0].ip


def test_cluster_ip_from_the_node_itself(rendered: RenderedLab) -> None:
    attempt = connect_once(rendered.lab.node_ns, SINGLE.cluster_ip, SINGLE.port)
    assert (attempt.outcome, attempt.pod) == ("ok", "pod-1"), attempt


def test_node_port_from_outside_the_node_reaches_a_pod(rendered: RenderedLab) -> None:
    attempt = connect_once(rendered.lab.client_ns, NODE_IP, WEB.node_port)
    assert attempt.outcome == "ok" and attempt.pod in {"pod-0", "pod-1"}, attempt
    # externalTrafficPolicy Cluster: kube-proxy masquerades, the pod sees the node, not the client
    assert attempt.peer.split(":")[0] == POD_GATEWAY


def test_service_without_endpoints_is_refused_not_timed_out(rendered: RenderedLab) -> None:
    for netns, ip, port in (
        (rendered.pod_client, EMPTY.cluster_ip, EMPTY.port),
        (rendered.lab.client_ns, NODE_IP, EMPTY.node_port),
    ):
        attempt = connect_once(netns, ip, port, timeout=3.0)
        assert attempt.outcome == "refused", (ip, port, attempt)
        assert attempt.seconds < 0.9, attempt  # answered at once: no SYN retransmit (1 s)


def test_two_endpoints_are_both_reached(rendered: RenderedLab) -> None:
    seen, attempts = _pods_until_both(rendered.pod_client, WEB.cluster_ip, WEB.port)
    assert all(a.outcome == "ok" for a in attempts), [a for a in attempts if a.outcome != "ok"][:3]
    assert seen == {"pod-0", "pod-1"}, f"after {len(attempts)} connects only {seen}"


def test_client_ip_affinity_keeps_one_pod(rendered: RenderedLab) -> None:
    # Two endpoints: without affinity 20 connects landing on one pod has probability 2 * 2^-20.
    attempts = connect(rendered.lab.client_ns, STICKY.cluster_ip, STICKY.port, count=20, timeout=2.0)
    assert all(a.outcome == "ok" for a in attempts), attempts
    assert len({a.pod for a in attempts}) == 1, [a.pod for a in attempts]
    # ...per client: the other sources are also pinned, each to one pod
    for netns in (rendered.pod_client, rendered.lab.pods[1].netns):
        pods = {a.pod for a in connect(netns, STICKY.cluster_ip, STICKY.port, count=10, timeout=2.0)}
        assert len(pods) == 1 and "" not in pods, pods


def test_faults_break_what_they_say(rendered: RenderedLab) -> None:
    """Run last in each lab (it changes the node): each fault is visible in real packets."""
    from kpdoctor.lab import faults
    from kpdoctor.lab.netns import read_sysctl

    lab, client = rendered.lab, rendered.pod_client
    if rendered.mode == "iptables":
        svc_chain = next(
            line.split(" -j ")[-1] for line in dump_ruleset(lab.node_ns).get(
                "iptables-nft-save" if rendered.backend == "nft" else "iptables-legacy-save").splitlines()
            if line.startswith("-A KUBE-SERVICES -d 10.96.0.13/32")
        )
        faults.delete_chain(lab.node_ns, svc_chain, backend=rendered.backend)
        # the ClusterIP now has no rule: it leaves via the default route and is lost
        assert connect_once(client, SINGLE.cluster_ip, SINGLE.port, timeout=0.5).outcome == "timeout"
        faults.add_stale_dnat(lab.node_ns, WEB.cluster_ip, WEB.port, "10.244.1.99:8080", backend=rendered.backend)
        assert connect_once(client, WEB.cluster_ip, WEB.port, timeout=0.5).outcome in ("timeout", "EHOSTUNREACH")
    else:
        faults.delete_nft_table(lab.node_ns)
        assert "kube-proxy" not in dump_ruleset(lab.node_ns).get("nft list ruleset")
        assert connect_once(client, SINGLE.cluster_ip, SINGLE.port, timeout=0.5).outcome == "timeout"
    faults.set_sysctl(lab.node_ns, "net.ipv4.ip_forward", "0")
    assert read_sysctl(lab.node_ns, "net.ipv4.ip_forward") == "0"
    assert connect_once(client, lab.pods[1].ip, POD_PORT, timeout=0.5).outcome != "ok"
