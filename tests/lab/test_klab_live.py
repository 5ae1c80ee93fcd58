"""The live path end to end against the lab's real Kubernetes: a real etcd + kube-apiserver (TLS, RBAC)
and a real kube-proxy v1.37 in each node namespace. No recording clients: kpdoctor's own CLI reads the
real API server and the real rules kube-proxy wrote.

Healthy cluster: no finding at warning or above. Faults are made the way they happen (a sysctl turned
off, kube-proxy killed/stopped while the API changes, a host firewall rule, a restart with another mode),
and each gives its finding.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kpdoctor.lab import kcluster, procs
from kpdoctor.lab.kcluster import ClusterState
from tests.support.klab import (
    admin_api,
    apply_workload,
    endpointslice,
    findings,
    kpdoctor,
    lab_cluster,
    report,
    save,
    service,
    sshd_on_nodes,
    statuses,
    wait_for_rules,
)

pytestmark = pytest.mark.root("etcd", "nft", "curl")


@pytest.fixture(scope="module")
def healthy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterState]:
    with lab_cluster(tmp_path_factory.mktemp("klab"), nodes=2) as state:
        apply_workload(state, wait=("web", "api"))
        yield state


@pytest.fixture()
def one_node(tmp_path: Path) -> Iterator[ClusterState]:
    with lab_cluster(tmp_path, nodes=1) as state:
        apply_workload(state, wait=("web", "api"))
        yield state


def _local_scan(state: ClusterState, node: str, *extra: str) -> dict:  # type: ignore[type-arg]
    ns = next(n.netns for n in state.nodes if n.name == node)
    proc = kpdoctor("scan", "--kubeconfig", state.kubeconfig, "--transport", "local", "--nodes", node, "-o", "json",
                    *extra, netns=ns)  # fmt: skip
    assert proc.returncode in (0, 1), proc.stderr[-1500:]
    assert "Traceback" not in proc.stderr
    return report(proc)


# -- healthy ---------------------------------------------------------------------------------------

def test_live_cluster_scan_of_a_healthy_cluster(healthy: ClusterState) -> None:
    proc = kpdoctor("scan", "--kubeconfig", healthy.kubeconfig, "-o", "json")
    rep = report(proc)
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert findings(rep) == []
    st = statuses(rep)
    assert st["KP-CILIUM-KPR"] == "passed" and st["KP-PROXY-HEALTH"] == "passed"
    assert rep["gaps"] == []


@pytest.mark.parametrize("index", [0, 1])
def test_local_transport_inside_each_node_passes_every_check(healthy: ClusterState, index: int) -> None:
    node = healthy.nodes[index].name
    rep = _local_scan(healthy, node)
    assert findings(rep) == []
    assert set(statuses(rep).values()) == {"passed"}, statuses(rep)
    assert rep["summary"]["nodes_reachable"] == 1


def test_node_command_reads_the_live_api_from_kubeconfig_env(healthy: ClusterState) -> None:
    node = healthy.nodes[0]
    proc = kpdoctor("node", node.name, "--transport", "local", netns=node.netns,
                    env={"KUBECONFIG": healthy.kubeconfig})  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-1500:] + proc.stderr[-1500:]
    assert "node checks not run" not in proc.stdout
    assert "KP-STALE-ENDPOINTS" in proc.stdout  # the checks ran against the live cluster


def test_collect_bundle_scan_equals_live_scan(healthy: ClusterState, tmp_path: Path) -> None:
    node = healthy.nodes[1]
    bundle = tmp_path / "b.tar.gz"
    col = kpdoctor("collect", "--kubeconfig", healthy.kubeconfig, "--node", node.name, "--transport", "local",
                   "-f", str(bundle), netns=node.netns)  # fmt: skip
    assert col.returncode == 0, col.stdout[-1000:] + col.stderr[-1000:]
    live = _local_scan(healthy, node.name)
    off = kpdoctor("scan", "--bundle", str(bundle), "--nodes", node.name, "-o", "json")
    offline = report(off)
    assert off.returncode == live["exit_code"] == 0
    assert statuses(offline) == statuses(live)
    assert findings(offline, "info") == findings(live, "info")


def test_removal_gate_live_refuses_without_cilium(healthy: ClusterState) -> None:
    proc = kpdoctor("gate", "kube-proxy-removal", "--kubeconfig", healthy.kubeconfig, "--phase", "pre-removal",
                    "-o", "json")  # fmt: skip
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    rep = report(proc)
    assert "cilium" in proc.stdout.lower(), rep


# -- credentials and reachability --------------------------------------------------------------------

def test_invalid_credentials_one_line_exit_3(healthy: ClusterState, tmp_path: Path) -> None:
    from kpdoctor.lab import pki

    other = pki.CA(tmp_path / "other")  # a client certificate the API server's CA never signed
    creds = other.issue("intruder", "intruder", orgs=("system:masters",))
    kc = pki.write_kubeconfig(tmp_path / "bad.kubeconfig", healthy.apiserver, healthy.state_dir / "pki" / "ca.crt",
                              user="intruder", client=creds)  # fmt: skip
    proc = kpdoctor("scan", "--kubeconfig", str(kc))
    assert proc.returncode == 3, proc.stdout[-800:] + proc.stderr[-800:]
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_revoked_service_account_token_one_line_exit_3(healthy: ClusterState, tmp_path: Path) -> None:
    """A real token (TokenRequest, signed by the API server) whose ServiceAccount was deleted: the API server
    answers 401, as it does for an expired one (TokenRequest's minimum lifetime, 10 minutes, is too long to
    wait for in a test)."""
    from kpdoctor.lab import pki

    api = admin_api(healthy)
    api.apply({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "gone", "namespace": "default"}})
    token = api.token("gone", "default", seconds=600)
    api.delete("ServiceAccount", "gone", namespace="default")
    kc = pki.write_kubeconfig(tmp_path / "tok.kubeconfig", healthy.apiserver, healthy.state_dir / "pki" / "ca.crt",
                              user="gone", token=token)  # fmt: skip
    end = time.monotonic() + 30
    proc = kpdoctor("scan", "--kubeconfig", str(kc))
    while proc.returncode != 3 and time.monotonic() < end:  # the deletion reaches the token authenticator's cache
        time.sleep(1)
        proc = kpdoctor("scan", "--kubeconfig", str(kc))
    assert proc.returncode == 3, proc.stdout[-800:] + proc.stderr[-800:]
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert "401" in proc.stderr


def test_unreachable_api_server_one_line_exit_3(healthy: ClusterState, tmp_path: Path) -> None:
    from kpdoctor.lab import pki

    port = kcluster.free_port()  # nothing listens there
    kc = pki.write_kubeconfig(tmp_path / "gone.kubeconfig", f"https://127.0.0.1:{port}",
                              healthy.state_dir / "pki" / "ca.crt", user="u", token="x")  # fmt: skip
    started = time.monotonic()
    proc = kpdoctor("scan", "--kubeconfig", str(kc))
    assert proc.returncode == 3, proc.stdout[-800:] + proc.stderr[-800:]
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert time.monotonic() - started < 60


# -- faults, made in the real system ------------------------------------------------------------------

def test_ip_forward_off(one_node: ClusterState) -> None:
    node = one_node.nodes[0]
    subprocess.run(["ip", "netns", "exec", node.netns, "sysctl", "-qw", "net.ipv4.ip_forward=0"], check=True)
    rep = _local_scan(one_node, node.name)
    assert ("KP-SYSCTL-CONNTRACK", "critical") in findings(rep)


def test_kube_proxy_killed_then_endpoint_deleted_leaves_stale_rules(one_node: ClusterState) -> None:
    node = one_node.nodes[0]
    procs.stop(kcluster.kube_proxy_proc(one_node, node.name))
    # kube-proxy is gone; its rules stay. Now the API moves on without it.
    admin_api(one_node).delete("EndpointSlice", "api-lab", namespace="lab")
    time.sleep(1)
    assert "lab/api:http" in save(node.netns, one_node.mode)
    rep = _local_scan(one_node, node.name)
    ids = {cid for cid, _ in findings(rep)}
    assert "KP-STALE-ENDPOINTS" in ids, findings(rep)


def test_kube_proxy_stopped_while_the_api_changes(one_node: ClusterState) -> None:
    node = one_node.nodes[0]
    proxy = kcluster.kube_proxy_proc(one_node, node.name)
    os.kill(proxy.pid, signal.SIGSTOP)
    try:
        api = admin_api(one_node)
        api.apply(service("late", node_port=30090))
        api.apply(endpointslice("late", [(node.pods[1].ip, node.name)]))
        time.sleep(2)
        rep = _local_scan(one_node, node.name)
    finally:
        os.kill(proxy.pid, signal.SIGCONT)
    ids = {cid for cid, _ in findings(rep)}
    # the frozen process misses the new Service (its rules are absent) and stops answering /healthz
    assert {"KP-PROXY-NODE-HEALTH", "KP-STALE-ENDPOINTS"} <= ids, findings(rep)


def test_host_firewall_drop_before_nodeport_rules(one_node: ClusterState) -> None:
    node = one_node.nodes[0]
    # A host firewall inserted ahead of kube-proxy's jump in FORWARD: the NodePort's DNATed packets to pods die.
    subprocess.run(["ip", "netns", "exec", node.netns, "iptables", "-I", "FORWARD", "1", "-j", "DROP"],
                   check=True)  # fmt: skip
    rep = _local_scan(one_node, node.name)
    assert "KP-NODEPORT-FIREWALL" in {cid for cid, _ in findings(rep)}, findings(rep)


def test_restart_in_another_mode_cleans_up_and_mismatch_is_reported(one_node: ClusterState) -> None:
    """Seen with the real binary: kube-proxy 1.37 started in nftables mode removes the iptables mode's rules
    itself, so a mode switch leaves no leftovers; what is left is a node whose mode differs from the
    kube-system/kube-proxy ConfigMap (still iptables), which KP-PROXIER-MODE reports."""
    node = one_node.nodes[0]
    assert "KUBE-SVC-" in save(node.netns, "iptables")
    kcluster.restart_kube_proxy(one_node, node.name, mode="nftables")
    one_node.mode = "nftables"
    wait_for_rules(one_node, "lab/web", nodes=[node.name])
    assert "KUBE-SVC-" not in save(node.netns, "iptables")
    rep = _local_scan(one_node, node.name)
    ids = {cid for cid, _ in findings(rep)}
    assert "KP-PROXIER-MODE" in ids and "KP-LEFTOVER-RULES" not in ids, findings(rep)


def test_legacy_backend_written_beside_nft(one_node: ClusterState) -> None:
    node = one_node.nodes[0]
    subprocess.run(["ip", "netns", "exec", node.netns, "iptables-legacy", "-t", "nat", "-N", "KUBE-SERVICES"],
                   check=True)  # fmt: skip
    subprocess.run(["ip", "netns", "exec", node.netns, "iptables-legacy", "-t", "nat", "-A", "PREROUTING", "-j",
                    "KUBE-SERVICES"], check=True)  # fmt: skip
    rep = _local_scan(one_node, node.name)
    assert "KP-BACKEND-SPLIT" in {cid for cid, _ in findings(rep)}, findings(rep)


def test_min_sync_period_raised(one_node: ClusterState) -> None:
    node = one_node.nodes[0]
    kcluster.restart_kube_proxy(one_node, node.name, extra={"iptables": {"minSyncPeriod": "10m", "syncPeriod": "10m"}},
                                configmap=True)  # fmt: skip
    api = admin_api(one_node)
    # kube-proxy syncs once at start, then no more often than every 10 minutes: later changes wait.
    time.sleep(3)
    api.apply(service("slow"))
    api.apply(endpointslice("slow", [(node.pods[0].ip, node.name)]))
    time.sleep(2)
    rep = _local_scan(one_node, node.name)
    ids = {cid for cid, _ in findings(rep)}
    assert {"KP-SYNC-LAG", "KP-STALE-ENDPOINTS"} <= ids, findings(rep)


# -- every node over SSH ------------------------------------------------------------------------------

def test_scan_every_node_over_ssh(healthy: ClusterState) -> None:
    """Real sshd in each node namespace; kpdoctor runs in the lab's client namespace (on the nodes' segment,
    with the API server relayed to its loopback) and reaches each node at its InternalIP from the Node object."""
    with sshd_on_nodes(healthy, healthy.nodes) as ssh_flags:
        proc = kpdoctor("scan", "--kubeconfig", healthy.kubeconfig, "--transport", "ssh", *ssh_flags, "-o", "json",
                        netns=f"{healthy.prefix}-client")  # fmt: skip
    rep = report(proc)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-1000:]
    assert rep["summary"]["nodes_reachable"] == rep["summary"]["nodes_total"] == len(healthy.nodes)
    assert findings(rep) == []
    assert set(statuses(rep).values()) == {"passed"}, statuses(rep)


@pytest.mark.parametrize("mode", ["iptables-legacy", "nftables"])
def test_other_modes_are_healthy(tmp_path: Path, mode: str) -> None:
    """kube-proxy in iptables-legacy mode (legacy tools first on its PATH) and nftables mode: rules where they
    belong, /proxyMode says so, and the local scan finds nothing."""
    with lab_cluster(tmp_path, nodes=1, mode=mode) as state:
        apply_workload(state, wait=("web", "api"))
        node = state.nodes[0]
        assert kcluster.proxy_mode(node) == ("nftables" if mode == "nftables" else "iptables")
        if mode == "iptables-legacy":
            assert "KUBE-SVC-" in save(node.netns, "iptables-legacy")
            assert "KUBE-SVC-" not in save(node.netns, "iptables")
        rep = _local_scan(state, node.name)
        assert findings(rep) == [], findings(rep)


def test_real_packets_through_the_real_kube_proxy_rules(healthy: ClusterState) -> None:
    """Pods serve real TCP; a ClusterIP connect from a pod and a NodePort connect from outside the nodes both
    reach a backend through the rules the real kube-proxy wrote (cross-node included)."""
    from kpdoctor.lab import servers

    backends = [servers.Server(f"pod-{i}-0", n.pods[0].netns, 8080) for i, n in enumerate(healthy.nodes)]
    for srv in backends:
        srv.start()
    try:
        cluster_ip = admin_api(healthy).get("Service", "web", namespace="lab")["spec"]["clusterIP"]
        seen = set()
        for _ in range(20):
            hit = servers.connect_once(healthy.nodes[0].pods[1].netns, cluster_ip, 80)
            assert hit.outcome == "ok", hit
            seen.add(hit.pod)
        assert seen == {"pod-0-0", "pod-1-0"}  # both endpoints, one of them behind the other node
        via_nodeport = servers.connect_once(f"{healthy.prefix}-client", healthy.nodes[1].ip, 30080)
        assert via_nodeport.outcome == "ok" and via_nodeport.pod in seen, via_nodeport
    finally:
        for srv in backends:
            srv.stop()
