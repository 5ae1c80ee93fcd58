"""The lab's own parts, on real namespaces, veths and netfilter (no reference proxier involved).

These pin what the packet tests and `kpdoctor lab bench` rely on: unique
namespaces that always go away, servers killed by PID, kube-proxy's nfacct
counters created before restoring rules that match them, and a ruleset dump
that changes exactly when the rules change.
"""

from __future__ import annotations

import os

import pytest

from kpdoctor.lab import netns
from kpdoctor.lab.apply import (
    NFACCT_COUNTERS,
    apply_iptables,
    apply_nft,
    dump_ruleset,
    ensure_nfacct,
    nfacct_names,
)
from kpdoctor.lab.netns import LabError, run
from kpdoctor.lab.servers import connect, connect_once
from kpdoctor.lab.topology import CLIENT_IP, MARKER_DIR, NODE_IP, Lab

pytestmark = pytest.mark.root("ip", "iptables-nft-restore", "iptables-legacy-restore", "nft", "nfacct")

# Hand-written, kube-proxy-shaped: a DNAT Service with two endpoints, a REJECT for an empty one, and the
# nfacct match kube-proxy's KUBE-FORWARD carries (which the kernel refuses if the counter is missing).
HAND_RULES = """*nat
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-SVC-HAND - [0:0]
-A PREROUTING -j KUBE-SERVICES
-A OUTPUT -j KUBE-SERVICES
-A KUBE-SERVICES -d 10.96.0.10/32 -p tcp -m tcp --dport 80 -j KUBE-SVC-HAND
-A KUBE-SVC-HAND -m statistic --mode random --probability 0.5000000000 -p tcp -j DNAT --to-destination 10.244.1.10:8080
-A KUBE-SVC-HAND -p tcp -j DNAT --to-destination 10.244.1.11:8080
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:KUBE-FORWARD - [0:0]
-A FORWARD -j KUBE-FORWARD
-A FORWARD -d 10.96.0.11/32 -p tcp -m tcp --dport 80 -j REJECT --reject-with icmp-port-unreachable
-A KUBE-FORWARD -m conntrack --ctstate INVALID -m nfacct --nfacct-name  ct_state_invalid_dropped_pkts -j DROP
COMMIT
"""

HAND_NFT = """table ip handlab {
  chain pre {
    type nat hook prerouting priority dstnat; policy accept;
    ip daddr 10.96.0.10 tcp dport 80 dnat to 10.244.1.11:8080
  }
}
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_lab_builds_routes_and_tears_down() -> None:
    with Lab(pods=2) as lab:
        names = lab.namespaces
        assert len(set(names)) == len(names) == 5 and all(netns.exists(n) for n in names)
        assert all(n.startswith(lab.prefix) for n in names)
        assert netns.read_sysctl(lab.node_ns, "net.ipv4.ip_forward") == "1"
        servers = [lab.serve(p, 8080) for p in lab.pods]
        pids = [s.pid for s in servers]
        # pod -> pod and client -> pod are routed through the node, no rules needed
        a = connect_once(lab.pods[0].netns, lab.pods[1].ip, 8080)
        assert (a.outcome, a.pod, a.peer.split(":")[0]) == ("ok", "pod-1", lab.pods[0].ip)
        b = connect_once(lab.client_ns, lab.pods[0].ip, 8080)
        assert (b.outcome, b.pod, b.peer.split(":")[0]) == ("ok", "pod-0", CLIENT_IP)
        # the node address answers from the client (nothing listens: refused, not a timeout)
        assert connect_once(lab.client_ns, NODE_IP, 9, timeout=1.0).outcome == "refused"
    assert not any(netns.exists(n) for n in names)
    assert not any(pid is not None and _alive(pid) for pid in pids)
    assert not (MARKER_DIR / f"{lab.prefix}.json").exists()


def test_teardown_on_failure_inside_the_block() -> None:
    with pytest.raises(RuntimeError, match="boom"), Lab(pods=1) as lab:
        names = lab.namespaces
        server = lab.serve(lab.pods[0], 8080)
        pid = server.pid
        raise RuntimeError("boom")
    assert not any(netns.exists(n) for n in names)
    assert pid is not None and not _alive(pid)


def test_two_labs_do_not_collide() -> None:
    with Lab(pods=1) as one, Lab(pods=1) as two:
        assert one.prefix != two.prefix
        assert not set(one.namespaces) & set(two.namespaces)


def test_nfacct_counters_are_needed_and_created_per_namespace() -> None:
    with Lab(pods=0) as lab:
        # Without the counters the kernel refuses kube-proxy's KUBE-FORWARD rule (both backends).
        for binary in ("iptables-nft-restore", "iptables-legacy-restore"):
            failed = run([binary], netns=lab.node_ns, input=HAND_RULES, check=False)
            assert failed.returncode != 0, binary
        ensure_nfacct(lab.node_ns)
        ensure_nfacct(lab.node_ns)  # idempotent
        assert set(NFACCT_COUNTERS) <= nfacct_names(lab.node_ns)
        # ...and they exist only inside the lab namespace
        assert not set(NFACCT_COUNTERS) & nfacct_names(lab.client_ns)
        apply_iptables(lab.node_ns, HAND_RULES, backend="legacy")


@pytest.mark.parametrize("backend", ["nft", "legacy"])
def test_hand_written_iptables_rules_carry_real_packets(backend: str) -> None:
    with Lab(pods=2) as lab:
        for pod in lab.pods:
            lab.serve(pod, 8080)
        apply_iptables(lab.node_ns, HAND_RULES, backend=backend)
        reached = set()
        for attempt in connect(lab.client_ns, "10.96.0.10", 80, count=60, timeout=2.0):
            assert attempt.outcome == "ok", attempt
            reached.add(attempt.pod)
            if len(reached) == 2:
                break
        assert reached == {"pod-0", "pod-1"}
        refused = connect_once(lab.client_ns, "10.96.0.11", 80, timeout=2.0)
        assert refused.outcome == "refused" and refused.seconds < 0.9, refused  # the first SYN retransmit would come at 1 s
        # a Service IP with no rule at all leaves via the node's default route and is lost: a timeout
        assert connect_once(lab.client_ns, "10.96.0.12", 80, timeout=0.3).outcome == "timeout"
        save = "iptables-nft-save" if backend == "nft" else "iptables-legacy-save"
        assert "-A KUBE-SERVICES -d 10.96.0.10/32" in dump_ruleset(lab.node_ns).get(save)


def test_nft_apply_and_ruleset_dump_sees_every_change() -> None:
    with Lab(pods=2) as lab:
        lab.serve(lab.pods[1], 8080)
        empty = dump_ruleset(lab.node_ns).normalized()
        assert dump_ruleset(lab.node_ns).normalized() == empty
        apply_nft(lab.node_ns, HAND_NFT)
        assert connect_once(lab.pods[0].netns, "10.96.0.10", 80).pod == "pod-1"
        with_nft = dump_ruleset(lab.node_ns).normalized()
        assert with_nft != empty and "table ip handlab" in with_nft.get("nft list ruleset")
        # traffic moves counters, which normalization ignores; a rule change is not ignored
        apply_iptables(lab.node_ns, HAND_RULES, backend="legacy")
        connect(lab.client_ns, "10.96.0.10", 80, count=3)
        after = dump_ruleset(lab.node_ns)
        connect(lab.client_ns, "10.96.0.10", 80, count=3)
        assert dump_ruleset(lab.node_ns).normalized() == after.normalized()
        assert "KUBE-SVC-HAND" in after.get("iptables-legacy-save")
        assert after.normalized() != with_nft


def test_lab_errors_are_one_line() -> None:
    with pytest.raises(LabError, match="already exists"), Lab(pods=0) as lab:
        netns.create(lab.node_ns)
    with pytest.raises(LabError, match="unknown iptables backend"):
        apply_iptables("kpd-never-created", "", backend="xtables")


def test_a_lab_whose_process_was_killed_is_cleaned_up_later() -> None:
    """SIGKILL the process holding a lab: its server dies with it (PDEATHSIG), and `kpdoctor lab cleanup`
    removes its namespaces -- while a live lab's namespaces are left alone."""
    import subprocess
    import sys
    import time

    from kpdoctor.lab.topology import cleanup_stale

    code = (
        "import sys, time\n"
        "from kpdoctor.lab.topology import Lab\n"
        "lab = Lab(pods=1).__enter__()\n"
        "server = lab.serve(lab.pods[0], 8080)\n"
        "print(lab.prefix, server.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    with Lab(pods=0) as live:
        child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        try:
            assert child.stdout is not None
            prefix, server_pid = child.stdout.readline().split()
            assert netns.exists(f"{prefix}-p0")
        finally:
            child.kill()
            child.wait(timeout=10)
        deadline = time.monotonic() + 5
        while _alive(int(server_pid)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(int(server_pid))
        assert netns.exists(f"{prefix}-node")  # killed outright: nothing ran its teardown
        out = subprocess.run([sys.executable, "-m", "kpdoctor", "lab", "cleanup"], capture_output=True, text=True,
                             timeout=60)
        assert out.returncode == 0, out.stderr
        assert f"{prefix}-node" in out.stdout
        assert not [n for n in netns.list_namespaces() if n.startswith(prefix + "-")]
        cleanup_stale()
        assert all(netns.exists(n) for n in live.namespaces)  # a live lab is never touched
