"""Unprivileged parts of the lab's Kubernetes: the seeded generator, the kubeadm-shaped objects, the kube-proxy
configuration, the state file `cluster down` trusts, the relay and the PKI. No root, no binaries needed."""

from __future__ import annotations

import asyncio
import socket
import threading
from pathlib import Path

import pytest
import yaml
from cryptography import x509

from kpdoctor.cluster.snapshot import load_objects
from kpdoctor.lab import kcluster, kgen, knet, kobjects, pki, procs, relay


def test_generator_is_seeded_and_valid_for_the_loader() -> None:
    a = kgen.generate(7, 80, ["n0", "n1"])
    assert a.objects == kgen.generate(7, 80, ["n0", "n1"]).objects
    assert a.objects != kgen.generate(8, 80, ["n0", "n1"]).objects
    state = load_objects(((o, "gen") for o in a.objects if o["kind"] != "Namespace"), source="gen")
    assert len(state.services) == 80
    kinds = {s["spec"]["type"] for s in a.objects if s["kind"] == "Service"}
    assert kinds == {"ClusterIP", "NodePort", "LoadBalancer"}
    ips = [s["spec"]["clusterIP"] for s in a.objects if s["kind"] == "Service"]
    ports = [p["nodePort"] for s in a.objects if s["kind"] == "Service" for p in s["spec"]["ports"] if "nodePort" in p]
    assert len(set(ips)) == len(ips) and len(set(ports)) == len(ports)
    assert "10.96.0.1" not in ips
    conditions = {(e["conditions"]["serving"], e["conditions"]["terminating"])
                  for o in a.objects if o["kind"] == "EndpointSlice" for e in o["endpoints"]}  # fmt: skip
    assert {(True, False), (True, True), (False, False)} <= conditions


def test_kube_proxy_config_leaves_host_conntrack_alone() -> None:
    cfg = kcluster.kube_proxy_config("iptables-legacy", "n0", "/k")
    assert cfg["mode"] == "iptables" and cfg["hostnameOverride"] == "n0"
    assert cfg["conntrack"]["maxPerCore"] == 0 and cfg["conntrack"]["min"] == 0
    assert kcluster.kube_proxy_config("nftables", "n0", "/k", {"iptables": {"minSyncPeriod": "5s"}})["iptables"] == {
        "minSyncPeriod": "5s"}


def test_configmap_and_workload_look_like_kubeadm() -> None:
    cm = kobjects.configmap(kcluster.kube_proxy_config("nftables", "n0", "/state/kp.kubeconfig"))
    conf = yaml.safe_load(cm["data"]["config.conf"])
    assert conf["mode"] == "nftables" and "hostnameOverride" not in conf
    assert conf["clientConnection"]["kubeconfig"] == "/var/lib/kube-proxy/kubeconfig.conf"
    objs = [(kobjects.node("n0", "10.244.1.0/24"), "t"), (cm, "t"), (kobjects.daemonset("v1.37.2"), "t"),
            ({**kobjects.pod("v1.37.2", "n0", "uid"), "status": kobjects.pod_status("10.240.0.10", "v1.37.2")}, "t")]
    state = load_objects(objs, source="t")
    assert [d.name for d in state.kube_proxy_daemonsets] == ["kube-proxy"]
    assert state.kube_proxy_pod_on("n0") is not None
    assert state.kube_proxy_version() == (1, 37)


def test_state_file_round_trip(tmp_path: Path) -> None:
    st = kcluster.ClusterState(tmp_path, "kpk-abc123", "v1.37.2", "nftables", "https://127.0.0.1:1", "/k",
                               ["kpk-abc123-net"], [procs.Proc("etcd", 1, 2, "/l")],
                               [knet.NodeNet("n0", "kpk-abc123-n0", "10.240.0.10", "10.244.1.0/24")])  # fmt: skip
    st.save()
    back = kcluster.ClusterState.load(tmp_path)
    assert back == st
    assert back.summary()["nodes"][0]["netns"] == "kpk-abc123-n0"


def test_down_refuses_a_directory_without_state(tmp_path: Path) -> None:
    with pytest.raises(kcluster.netns.LabError, match="no lab cluster recorded"):
        kcluster.down(tmp_path)


def test_bad_mode_is_refused(tmp_path: Path) -> None:
    with pytest.raises(kcluster.netns.LabError, match="--mode"):
        kcluster.Cluster(tmp_path, version="1.37", mode="ipvs")


def test_pki_issues_a_chain_the_ca_verifies(tmp_path: Path) -> None:
    ca = pki.CA(tmp_path)
    pair = ca.issue("srv", "kube-apiserver", server_ips=("127.0.0.1",), server_names=("localhost",))
    cert = x509.load_pem_x509_certificate(pair.cert.read_bytes())
    cert.verify_directly_issued_by(ca.cert)
    assert oct(pair.key.stat().st_mode & 0o777) == "0o600"
    kc = yaml.safe_load(pki.write_kubeconfig(tmp_path / "k", "https://127.0.0.1:1", ca.cert_path, user="u",
                                             token="t").read_text())  # fmt: skip
    assert kc["users"][0]["user"] == {"token": "t"}


def test_relay_forwards_bytes_both_ways() -> None:
    """The relay's forwarding loop on loopback (the netns listeners need root; covered by the live tests)."""
    upstream = socket.socket()
    upstream.bind(("127.0.0.1", 0))
    upstream.listen(1)

    def echo() -> None:
        conn, _ = upstream.accept()
        with conn:
            conn.sendall(conn.recv(100).upper())

    threading.Thread(target=echo, daemon=True).start()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.setblocking(False)
    port = listener.getsockname()[1]

    async def run() -> bytes:
        task = asyncio.create_task(relay._serve([listener], upstream.getsockname()))
        await asyncio.sleep(0.2)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"hello")
        await writer.drain()
        data = await asyncio.wait_for(reader.read(100), 5)
        writer.close()
        task.cancel()
        return data

    assert asyncio.run(run()) == b"HELLO"
