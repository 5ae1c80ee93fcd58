"""`kpdoctor gate mode-switch` against a real mode switch: the lab's real kube-apiserver and real kube-proxy
v1.36.3 in two node namespaces, switched iptables -> nftables -> iptables the way the gate's plan says (the
ConfigMap's mode edited, each node's kube-proxy restarted), with real bundles collected by `kpdoctor collect`
inside each node after every step. Root only (network namespaces, netfilter); skipped with the reason
otherwise, and CI runs it as root.

Measured, not assumed: the old mode's state real kube-proxy leaves (compared with what the gate lists), the
NodePort addresses the gate predicts stop answering in nftables mode (real TCP from the client namespace and
from the node's loopback), and post-switch passing only after every node switched.

`KPDOCTOR_SAVE_MODE_SWITCH_BUNDLES=DIR` copies the collected bundles to DIR (how
tests/fixtures/mode-switch/ was made).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from kpdoctor.gate.cleanup import kube_proxy_chains, kube_proxy_nft_tables
from kpdoctor.gate.mode_leftovers import LOCALNET_GUARD
from kpdoctor.lab import kcluster, procs, servers
from kpdoctor.lab.kcluster import ClusterState
from kpdoctor.node.parsed import parse_iptables_view
from tests.support.klab import apply_workload, kpdoctor, lab_cluster, wait_for_rules

pytestmark = pytest.mark.root("etcd", "nft", "curl")
VERSION = "1.36"
EXTRA_ADDRESS = "10.240.0.{}"  # a secondary address per node (200 + index) on eth0
NODE_PORT = 30080


def collect(state: ClusterState, dest: Path) -> Path:
    """One bundle of every node: `kpdoctor collect --transport local` inside each node, merged (cluster/ from
    the last one, nodes/<name>/ from each)."""
    parts = []
    for node in state.nodes:
        out = dest.parent / f"{dest.name}.{node.name}"
        proc = kpdoctor("collect", "--kubeconfig", state.kubeconfig, "--node", node.name, "--transport", "local",
                        "-f", str(out), netns=node.netns)
        assert proc.returncode == 0, proc.stdout[-1000:] + proc.stderr[-1000:]
        parts.append(out)
    shutil.copytree(parts[-1], dest)
    for part, node in zip(parts, state.nodes, strict=True):
        if not (dest / "nodes" / node.name).exists():
            shutil.copytree(part / "nodes" / node.name, dest / "nodes" / node.name)
        shutil.rmtree(part)
    saved = os.environ.get("KPDOCTOR_SAVE_MODE_SWITCH_BUNDLES")
    if saved:
        shutil.copytree(dest, Path(saved) / dest.name, dirs_exist_ok=True)
    return dest


def gate(*args: str) -> tuple[int, dict[str, Any], str]:
    proc = kpdoctor("gate", "mode-switch", *args, "-o", "json")
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    text = kpdoctor("gate", "mode-switch", *args).stdout
    return proc.returncode, json.loads(proc.stdout), text


def reasons(doc: dict[str, Any], cid: str, kind: str) -> list[dict[str, Any]]:
    cond = next(c for c in doc["conditions"] if c["id"] == cid)
    return [r for r in cond["reasons"] + [r for c in cond["cases"] for r in c["reasons"]] if r["kind"] == kind]


def switch(state: ClusterState, node: str, mode: str) -> None:
    """The plan's steps for one node: the ConfigMap's mode edited (kube-system/kube-proxy, config.conf), the
    node's kube-proxy restarted (the DaemonSet's rollout, one pod)."""
    kcluster.restart_kube_proxy(state, node, mode=mode, configmap=True)


def node_chains(bundle: Path, node: str) -> list[str]:
    text = (bundle / "nodes" / node / "iptables-nft-save.txt").read_text()
    return kube_proxy_chains(parse_iptables_view(text))


def node_tables(bundle: Path, node: str) -> list[str]:
    return kube_proxy_nft_tables((bundle / "nodes" / node / "nft-ruleset.json").read_text())


def reach(netns: str, ip: str) -> str:
    """"ok" when a connect to ip:NODE_PORT succeeds within 5 s of retries, else the last outcome."""
    return servers.wait_reachable(netns, ip, NODE_PORT, within=5.0).outcome


def never(netns: str, ip: str, tries: int = 6) -> bool:
    """No connect to ip:NODE_PORT succeeds (each try picks a random endpoint, so both are tried)."""
    return all(servers.connect_once(netns, ip, NODE_PORT, timeout=1.0).outcome != "ok" for _ in range(tries))


def test_iptables_to_nftables_and_back(tmp_path: Path) -> None:
    with lab_cluster(tmp_path, version=VERSION, nodes=2, mode="iptables") as state:
        for i, node in enumerate(state.nodes):
            subprocess.run(["ip", "netns", "exec", node.netns, "ip", "addr", "add",
                            f"{EXTRA_ADDRESS.format(200 + i)}/24", "dev", "eth0"], check=True, timeout=10)
        apply_workload(state, node_port=NODE_PORT)
        backends = [servers.Server(f"pod-{i}", n.pods[0].netns, 8080) for i, n in enumerate(state.nodes)]
        for srv in backends:
            srv.start()
        try:
            _scenario(state, tmp_path)
        finally:
            for srv in backends:
                srv.stop()


def _scenario(state: ClusterState, tmp: Path) -> None:
    n0, n1 = state.nodes
    client = f"{state.prefix}-client"
    extra0 = EXTRA_ADDRESS.format(200)
    # today (iptables): NodePorts answer on every local address, 127.0.0.1 included
    assert reach(client, n0.ip) == "ok" and reach(client, extra0) == "ok"
    assert reach(n0.netns, "127.0.0.1") == "ok"
    pod = n0.pods[1].netns  # a pod on n0, connecting to its node's gateway address
    assert reach(pod, _gateway(n0.pod_cidr)) == "ok"

    # -- pre-switch: the gate passes, predicts the lost NodePort addresses, prints the plan, writes the baseline
    pre = collect(state, tmp / "1-iptables")
    base = str(tmp / "baseline-to-nftables.json")
    code, doc, text = gate("--to", "nftables", "--bundle", str(pre), "--write-baseline", base)
    assert code == 0, text
    lost = {r["subject"]: r["message"] for r in reasons(doc, "nodeport-addresses", "warning")}
    # the secondary address and the pods' gateway address on the node (10.244.1.1, on its pod veths)
    gw0 = _gateway(n0.pod_cidr)
    assert f"stop answering on {extra0}, {gw0} (today: *; after: {n0.ip})" in lost[f"Node {n0.name}"], lost
    localhost = [r["message"] for r in reasons(doc, "semantic-diff", "warning") if "127.0.0.1 today" in r["message"]]
    assert len(localhost) == 2, localhost
    assert "$ kubectl -n kube-system patch configmap kube-proxy --type merge" in text
    assert "'Using nftables Proxier'" in text
    assert "leaves filter KUBE-FIREWALL" in text  # the leftovers the plan predicts; checked after the switch below
    # post-switch before anything switched: fails
    code, doc, _ = gate("--to", "nftables", "--bundle", str(pre), "--phase", "post-switch", "--baseline", base)
    assert code == 1

    # -- half way: the ConfigMap says nftables, only n0 restarted
    switch(state, n0.name, "nftables")
    wait_for_rules(_as_mode(state, "nftables"), "lab/web/tcp/http", nodes=[n0.name])
    half = collect(state, tmp / "2-half-nftables")
    code, doc, text = gate("--to", "nftables", "--bundle", str(half), "--phase", "post-switch", "--baseline", base)
    assert code == 1, text
    stuck = reasons(doc, "reports-target", "blocking")
    assert [r["subject"] for r in stuck] == [f"Node {n1.name}"] and "still runs iptables" in stuck[0]["message"]
    assert {r["subject"] for r in reasons(doc, "old-mode-gone", "blocking")} <= {f"Node {n1.name}"}

    # -- complete: n1 restarted too
    switch(state, n1.name, "nftables")
    wait_for_rules(_as_mode(state, "nftables"), "lab/web/tcp/http")
    done = collect(state, tmp / "3-nftables")
    code, doc, text = gate("--to", "nftables", "--bundle", str(done), "--phase", "post-switch", "--baseline", base)
    assert code == 0, text
    # leftovers real kube-proxy v1.36 leaves after iptables -> nftables, and what the gate lists: equal
    measured = {n.name: node_chains(done, n.name) for n in state.nodes}
    listed = reasons(doc, "old-mode-gone", "blocking")
    assert measured == {n0.name: [], n1.name: []}, measured  # kube-proxy cleaned its iptables chains itself
    assert listed == []
    # but it left its localnet guard (filter KUBE-FIREWALL) and route_localnet=1: measured, and listed as warnings
    guards = {n.name for n in state.nodes
              if LOCALNET_GUARD in (done / "nodes" / n.name / "iptables-nft-save.txt").read_text()
              and "net.ipv4.conf.all.route_localnet = 1" in (done / "nodes" / n.name / "sysctl.txt").read_text()}
    assert guards == {n0.name, n1.name}
    assert {r["subject"] for r in reasons(doc, "old-mode-gone", "warning") if "KUBE-FIREWALL" in r["message"]} == {
        f"Node {n0.name}", f"Node {n1.name}"}
    # the prediction, with real packets: the secondary address and 127.0.0.1 stopped answering, the primary did not
    assert reach(client, n0.ip) == "ok"
    assert never(client, extra0)
    assert never(n0.netns, "127.0.0.1")
    assert never(pod, gw0)

    # -- and back: nftables -> iptables
    base_back = str(tmp / "baseline-to-iptables.json")
    code, doc, text = gate("--to", "iptables", "--bundle", str(done), "--write-baseline", base_back)
    assert code == 0, text
    assert "removes the ip/ip6 kube-proxy nft tables itself" in text
    for node in state.nodes:
        switch(state, node.name, "iptables")
    wait_for_rules(_as_mode(state, "iptables"), "lab/web:http")
    back = collect(state, tmp / "4-iptables")
    code, doc, text = gate("--to", "iptables", "--bundle", str(back), "--phase", "post-switch", "--baseline",
                           base_back)
    measured_tables = {n.name: node_tables(back, n.name) for n in state.nodes}
    listed = reasons(doc, "old-mode-gone", "blocking")
    assert measured_tables == {n0.name: [], n1.name: []}, measured_tables  # nft table removed by kube-proxy
    assert listed == []
    assert code == 0, text
    assert reach(client, extra0) == "ok" and reach(n0.netns, "127.0.0.1") == "ok"

    # -- a node where kube-proxy fails in the new mode: IPVS on this kernel (no ip_vs) exits at start
    base_ipvs = str(tmp / "baseline-to-ipvs.json")
    code, _, _ = gate("--to", "ipvs", "--bundle", str(back), "--write-baseline", base_ipvs)
    assert code == 3  # no IPVS evidence on this kernel: the pre-switch gate cannot prove it, as it should
    proc = kcluster.restart_kube_proxy(state, n0.name, extra={"mode": "ipvs"}, configmap=True, wait=False)
    end = time.monotonic() + 30
    while procs.alive(proc) and time.monotonic() < end:
        time.sleep(0.2)
    assert not procs.alive(proc), "kube-proxy in IPVS mode did not exit on a kernel without ip_vs"
    crashed = collect(state, tmp / "5-ipvs-crashed")
    code, doc, text = gate("--to", "ipvs", "--bundle", str(crashed), "--phase", "post-switch", "--baseline", base_ipvs)
    assert code in (1, 3), text
    n0_reasons = [r for r in reasons(doc, "reports-target", "unknown") + reasons(doc, "reports-target", "blocking")
                  if r["subject"] == f"Node {n0.name}"]
    assert n0_reasons and "no /proxyMode" in n0_reasons[0]["message"], n0_reasons


def _gateway(pod_cidr: str) -> str:
    return pod_cidr.split("/")[0].rsplit(".", 1)[0] + ".1"


def _as_mode(state: ClusterState, mode: str) -> ClusterState:
    state.mode = mode  # wait_for_rules reads the rules of the state's mode
    return state


def test_forward_drop_policy_blocks_nodeports_after_the_switch(tmp_path: Path) -> None:
    """A node whose filter FORWARD policy is DROP (what Docker sets): in iptables mode kube-proxy's KUBE-FORWARD
    accepts the NodePort traffic it marks; the pre-switch gate says that nftables mode will not and blocks;
    switched anyway, the NodePort stops answering on that node (real TCP), and answers again once the host
    accepts forwarded traffic itself."""
    with lab_cluster(tmp_path, version=VERSION, nodes=2, mode="iptables") as state:
        apply_workload(state, node_port=NODE_PORT)
        n0, n1 = state.nodes
        client = f"{state.prefix}-client"
        subprocess.run(["ip", "netns", "exec", n0.netns, "iptables", "-P", "FORWARD", "DROP"], check=True, timeout=10)
        backends = [servers.Server(f"pod-{i}", n.pods[0].netns, 8080) for i, n in enumerate(state.nodes)]
        for srv in backends:
            srv.start()
        try:
            assert reach(client, n0.ip) == "ok"  # KUBE-FORWARD accepts it (mark 0x4000)
            pre = collect(state, tmp_path / "fwd-drop-iptables")
            code, doc, text = gate("--to", "nftables", "--bundle", str(pre))
            assert code == 1, text
            blocked = reasons(doc, "host-firewall", "blocking")
            assert [r["subject"] for r in blocked] == [f"Node {n0.name}"]
            assert f"NodePorts {NODE_PORT}/TCP stop answering" in blocked[0]["message"]
            switch(state, n0.name, "nftables")
            wait_for_rules(_as_mode(state, "nftables"), "lab/web/tcp/http", nodes=[n0.name])
            assert never(client, n0.ip)  # the prediction, with real packets
            subprocess.run(["ip", "netns", "exec", n0.netns, "iptables", "-P", "FORWARD", "ACCEPT"], check=True,
                           timeout=10)
            assert reach(client, n0.ip) == "ok"  # the host accepting forwarded traffic fixes it
        finally:
            for srv in backends:
                srv.stop()


def test_iptables_legacy_to_nftables_leftovers_equal_what_the_gate_lists(tmp_path: Path) -> None:
    """A node whose kube-proxy ran with the iptables-legacy backend, switched to nftables: what real kube-proxy
    v1.36.3 leaves in the legacy backend is measured and must be exactly what post-switch lists (and blocks on)."""
    with lab_cluster(tmp_path, version=VERSION, nodes=1, mode="iptables-legacy") as state:
        apply_workload(state, node_port=NODE_PORT)
        (n0,) = state.nodes
        pre = collect(state, tmp_path / "legacy-iptables")
        base = str(tmp_path / "baseline.json")
        code, _, text = gate("--to", "nftables", "--bundle", str(pre), "--write-baseline", base)
        assert code == 0, text
        switch(state, n0.name, "nftables")
        wait_for_rules(_as_mode(state, "nftables"), "lab/web/tcp/http")
        done = collect(state, tmp_path / "legacy-to-nftables")
        measured = kube_proxy_chains(parse_iptables_view((done / "nodes" / n0.name / "iptables-legacy-save.txt").read_text()))
        code, doc, text = gate("--to", "nftables", "--bundle", str(done), "--phase", "post-switch", "--baseline", base)
        listed = [r["message"] for r in reasons(doc, "old-mode-gone", "blocking")]
        legacy = [m for m in listed if "iptables-legacy: " in m]
        # measured: kube-proxy started in nftables mode cleans the iptables backend its `iptables` points to (nft
        # here) and leaves every legacy KUBE-* chain; the gate lists exactly those and blocks
        assert len(measured) >= 10, measured
        assert len(legacy) == 1 and f"iptables-legacy: {len(measured)} KUBE-* chains" in legacy[0], (measured, listed)
        assert code == 1
