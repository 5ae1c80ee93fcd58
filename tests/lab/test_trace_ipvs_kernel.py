"""Proof of `kpdoctor trace` in IPVS mode against a real kernel's IPVS: a User-Mode-Linux guest (Linux 6.1, Debian's
user-mode-linux; the host kernel has no IPVS). See tests/support/ipvs_guest.py for the guest's lab.

The ruleset: the reference proxier's IPVS-mode state (`kpdoctor proxier render --mode ipvs`: virtual servers,
kube-ipvs0 addresses, ipsets, iptables) for node kpnode1 of two recorded clusters (objects from a real
kube-apiserver v1.36.2): V2-nodeport-lb (ClusterIPs, NodePorts, LoadBalancers with eTP=Local and
loadBalancerSourceRanges, an external IP, Services without endpoints) and V3-affinity-terminating
(sessionAffinity ClientIP: IPVS persistence; terminating endpoints). Not the real kube-proxy binary: kube-proxy
needs an API server, and the guest has no network to the lab's.

The trace runs on the dumps taken inside the guest (iptables-legacy-save, ipvsadm --save -n, ipset list,
ip -j addr). For every case (listed: every virtual server from four kinds of client, from the node itself and
from two real servers, hairpin included; plus seeded-random cases),
what the trace predicts must be what the guest's kernel did with real TCP connections:
- the verdict: accept = the connection opened, reject = refused (RST / ICMP unreachable), drop = no answer;
- the real server of each connection (IPVS's own `ipvsadm -Lnc`, and conntrack's reply source agrees): the set
  equals the trace's DNAT set, and since every virtual server uses `rr` with weight 1, the count per real server
  over n connections is within 1 of n x the trace's probability;
- masquerade: conntrack's reply destination is not the client iff the trace says MASQUERADE;
- on a persistent virtual server (the trace's branches carry the persistence assumption), one client's
  connections all go to one real server, one of the trace's.
One guest boot per cluster runs every case (bounded: the guest is killed at 90 s).
"""

from __future__ import annotations

import functools
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from kpdoctor.cluster.snapshot import load_snapshot
from kpdoctor.dataplane.ipset import parse_ipset_save
from kpdoctor.dataplane.ipvs import parse_ipvsadm_save
from kpdoctor.lab import uml
from kpdoctor.proxier.context import build_input
from kpdoctor.proxier.ipvs import SECTION_IPSET, SECTION_IPVSADM, render_ipvs
from kpdoctor.trace.addresses import Endpoint
from kpdoctor.trace.run import TraceRequest, TraceResult, run_trace
from tests.support.ipvs_guest import (
    CLIENT_MAIN,
    NODE_PORTS,
    Case,
    GuestLab,
    Seen,
    node_state,
    run_lab,
    sections,
)

pytestmark = pytest.mark.root("linux.uml", "ipvsadm", "ipset", "iptables-legacy-restore", "conntrack")

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "kube-proxy-v1.36"
# V2: ClusterIPs, NodePorts (eTP Cluster and Local), LoadBalancers with source ranges, an external IP, Services
# without endpoints; V3: sessionAffinity ClientIP (IPVS persistence, -p) and terminating endpoints; V1: a UDP
# virtual server (DNS) and one with 12 real servers
CLUSTERS = ("V2-nodeport-lb", "V3-affinity-terminating", "V1-basic-clusterip")
NODE = "kpnode1"
# four kinds of client: outside the cluster and inside one LoadBalancer's source range (203.0.113.0/24), inside
# the other range (198.51.100.128/25), outside both, and a pod-network address (ClusterIP traffic not masqueraded)
SOURCES = (CLIENT_MAIN, "198.51.100.200", "198.51.100.20", "10.244.3.7")
POD_SOURCE_COUNT = 2
SEED = 15
RANDOM_CASES = 30
FATE_VERDICT = {"open": "accept", "refused": "reject", "timeout": "drop"}
PERSISTENCE = "IPVS persistence"  # the trace's assumption on a persistent virtual server (kpdoctor.trace.ipvs_eval)


@functools.cache
def _render(cluster: str) -> tuple[str, tuple[str, ...]]:
    inp = build_input(load_snapshot(FIXTURES / cluster / "cluster"), NODE, mode="ipvs")
    return render_ipvs(inp), inp.node_ips


@functools.cache
def pod_sources(cluster: str) -> tuple[str, ...]:
    """Pods of kpnode1 that are real servers (KUBE-LOOP-BACK lists kpnode1's own endpoints): each gets a namespace
    of its own on veth podcN; a connection IPVS sends back to its sender is the hairpin case."""
    loop_back = parse_ipset_save(sections(_render(cluster)[0])[SECTION_IPSET]).members("KUBE-LOOP-BACK")
    return tuple(sorted({m.split(",")[0] for m in loop_back}))[:POD_SOURCE_COUNT]


@functools.cache
def _cases(cluster: str) -> tuple[Case, ...]:
    render, node_ips = _render(cluster)
    table = parse_ipvsadm_save(sections(render)[SECTION_IPVSADM])
    frontends = [(vs.address, vs.port, max(1, 2 * len(vs.real_servers)), vs.protocol.lower())
                 for vs in table.virtual_servers]
    taken = {(vs.address, vs.port) for vs in table.virtual_servers}
    vips = sorted({vs.address for vs in table.virtual_servers if vs.address not in node_ips})
    extra = [(node_ips[0], port, 1, "tcp") for port in NODE_PORTS] + [
        (vip, 81, 1, "tcp") for vip in vips[:2] if (vip, 81) not in taken]
    targets = frontends + extra
    listed = [(src, *t) for t in targets for src in SOURCES]
    rng = random.Random(SEED)
    # seeded-random sources from the same nets (wired into the client namespace) to random targets and ports
    nets = ["203.0.113.{}", "198.51.100.{}", "10.244.7.{}"]
    randoms = []
    for _ in range(RANDOM_CASES):
        src = rng.choice(nets).format(rng.randrange(11, 250))
        addr, port, count, proto = rng.choice(targets)
        if rng.random() < 0.3:
            port, count = rng.choice([*NODE_PORTS, 80, 443, 8080, 30100, 30102]), 1
        randoms.append((src, addr, port, count, proto))
    out, sport = [], 20000
    for i, (src, dst, dport, count, proto) in enumerate(listed + randoms):
        out.append(Case(i, src, dst, dport, count, sport, proto=proto))
        sport += count
    for dst, dport, count, proto in targets:  # from the node itself: IPVS schedules at LOCAL_OUT, not at input
        out.append(Case(len(out), node_ips[0], dst, dport, count, sport, "node", proto))
        sport += count
    for src in pod_sources(cluster):  # from a real server: hairpin when IPVS picks the sender
        for dst, dport, count, proto in frontends:
            out.append(Case(len(out), src, dst, dport, count, sport, "pods", proto))
            sport += count
    return tuple(out)


@dataclass
class Lab:
    cluster: str
    guest: GuestLab

    def __repr__(self) -> str:
        return f"Lab({self.cluster})"


@pytest.fixture(scope="module", params=CLUSTERS)
def lab(request: pytest.FixtureRequest) -> Lab:
    from conftest import REQUIRE_ROOT

    reason = uml.unavailable_reason()
    if reason is not None:
        if REQUIRE_ROOT:
            pytest.fail(f"KPDOCTOR_REQUIRE_ROOT_TESTS=1 but {reason}")
        pytest.skip(reason)
    render, node_ips = _render(request.param)
    return Lab(request.param, run_lab(render, node_ips, list(_cases(request.param))))


def _iif(lab: Lab, case: Case) -> str | None:
    """The interface the packet arrives on at the node (None: generated on the node)."""
    if case.origin == "pods":
        return f"podc{pod_sources(lab.cluster).index(case.src)}"
    return "n0" if case.origin == "client" else None


def _trace(lab: Lab, case: Case) -> TraceResult:
    req = TraceRequest(NODE, Endpoint(case.src, None, None, "client"),
                       Endpoint(case.dst, case.dport, case.proto, ""), case.proto, sport=case.sport, iif=_iif(lab, case))
    return run_trace(req, node_state(NODE, lab.guest.facts), None)


def _kernel_view(seen: Seen, sport: int) -> tuple[str, str, bool]:
    """(verdict, real server or "" when not translated, masqueraded) of one connection, as the kernel showed it."""
    verdict = FATE_VERDICT.get(seen.fates[sport], seen.fates[sport])
    if verdict != "accept":
        return verdict, "", False
    return verdict, seen.real_server.get(sport, ""), bool(seen.masqueraded.get(sport))


def _mismatch(lab: Lab, case: Case) -> str | None:
    """Why the trace and the kernel disagree on `case` (None: they agree)."""
    result = _trace(lab, case)
    what = f"{case.src} -> {case.dst}:{case.dport}/{case.proto} ({case.count} connections)"
    if result.error or not result.complete:
        return f"{what}: trace incomplete ({result.error or result.notes})"
    seen = lab.guest.seen[case.id]
    kernel = {sport: _kernel_view(seen, sport) for sport in seen.fates}
    for sport, (_, rs, _) in kernel.items():
        if rs and seen.conntrack_target.get(sport) != rs:
            return f"{what}: ipvsadm -Lnc says {rs}, conntrack {seen.conntrack_target.get(sport)} (sport {sport})"
    possible = {(leaf.verdict, leaf.dnat_to if leaf.verdict == "accept" else "",
                 leaf.masquerade and leaf.verdict == "accept") for leaf in result.leaves}
    if set(kernel.values()) - possible:
        return f"{what}: kernel did {sorted(set(kernel.values()) - possible)}, trace allows only {sorted(possible)}"
    assumed = {a for leaf in result.leaves for a in leaf.assumptions}
    if assumed and all(a.startswith(PERSISTENCE) for a in assumed):
        # persistence: a client keeps the server its first connection got, so one client's connections all go
        # to one of the trace's real servers (which one depends on the earlier connection, not in any dump)
        servers = {rs for _, rs, _ in kernel.values()}
        return None if len(servers) == 1 else f"{what}: persistent, but the kernel used {sorted(servers)}"
    if assumed:
        return None  # an unknown match (followed both ways): the kernel's outcome is one of the branches
    predicted = {leaf.verdict for leaf in result.leaves}
    if {v for v, _, _ in kernel.values()} != predicted:
        return f"{what}: trace {sorted(predicted)}, kernel {sorted(kernel.values())}"
    shares: dict[str, float] = {}
    for leaf in result.leaves:
        if leaf.verdict == "accept":
            shares[leaf.dnat_to] = shares.get(leaf.dnat_to, 0.0) + leaf.p
    counts = Counter(rs for v, rs, _ in kernel.values() if v == "accept")
    for target, p in shares.items():
        if abs(counts[target] - case.count * p) > 1:  # rr, weight 1: exact to one connection
            return f"{what}: {target} predicted {p:.3f} of {case.count}, kernel {counts[target]}"
    return None


def test_trace_matches_the_kernel_ipvs_on_every_case(lab: Lab) -> None:
    cases = _cases(lab.cluster)
    mismatches = [m for m in (_mismatch(lab, c) for c in cases) if m]
    assert not mismatches, f"{len(mismatches)} of {len(cases)} cases differ:\n" + "\n".join(mismatches)


def test_the_cases_cover_each_outcome(lab: Lab) -> None:
    """Not a vacuous pass: the kernel opened and refused (V2: and dropped), spread connections over several real
    servers, both masqueraded and kept the client's address, and sent a pod's connection back to itself
    (hairpin, masqueraded); the trace decided every case but IPVS persistence (V3: which server a returning
    client keeps is in no dump), so every other case is checked exactly, not only "one of the branches"."""
    seen = lab.guest.seen
    cases = _cases(lab.cluster)
    undecided = {a for c in cases for leaf in _trace(lab, c).leaves for a in leaf.assumptions}
    assert {a for a in undecided if not a.startswith(PERSISTENCE)} == set(), undecided
    fates = Counter(f for s in seen.values() for f in s.fates.values())
    assert {"open", "refused"} | ({"timeout"} if lab.cluster.startswith("V2") else set()) <= set(fates), fates
    spread = [len(set(s.real_server.values())) for s in seen.values()]
    assert max(spread) >= 2, spread
    masq = Counter(m for s in seen.values() for m in s.masqueraded.values())
    assert masq[True] > 0 and masq[False] > 0, masq
    by_id = {c.id: c for c in cases}
    hairpins = [p for i, s in seen.items() for p, rs in s.real_server.items()
                if by_id[i].origin == "pods" and rs.startswith(f"{by_id[i].src}:") and s.masqueraded.get(p)]
    assert hairpins, "no pod's connection came back to itself (KUBE-LOOP-BACK masquerade)"
    if lab.cluster.startswith("V3"):  # persistence was exercised: several connections, several possible servers
        persistent = []
        for c in cases:
            leaves = _trace(lab, c).leaves
            if c.count > 1 and len({leaf.dnat_to for leaf in leaves}) > 1 and any(
                    a.startswith(PERSISTENCE) for leaf in leaves for a in leaf.assumptions):
                persistent.append(c)
        assert persistent and all(len(set(seen[c.id].real_server.values())) == 1 for c in persistent)


def test_the_traced_dumps_are_the_guests_own(lab: Lab) -> None:
    """The trace reads what the guest's tools printed, not the render: the kernel's IPVS table lists every virtual
    server of the render, and iptables-legacy-save shows kube-proxy's ipset-matching rules."""
    render, _ = _render(lab.cluster)
    rendered = parse_ipvsadm_save(sections(render)[SECTION_IPVSADM])
    facts = lab.guest.facts
    dumped = parse_ipvsadm_save(facts["ipvsadm-save.txt"])
    assert {vs.service_arg for vs in dumped.virtual_servers} == {vs.service_arg for vs in rendered.virtual_servers}
    assert {vs.persistent for vs in dumped.virtual_servers} == {vs.persistent for vs in rendered.virtual_servers}
    assert "--match-set KUBE-CLUSTER-IP dst,dst" in facts["iptables-legacy-save.txt"]
    assert "Name: KUBE-CLUSTER-IP" in facts["ipset-list.txt"]
