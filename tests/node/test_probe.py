"""The opt-in NodePort probe (`kpdoctor scan --probe`, `kpdoctor.node.probe`) and how KP-NODEPORT-FIREWALL reads it.

The lab test is real end to end: a lab node namespace running the reference proxier's iptables rules
(iptables-nft) for three NodePort Services, with real TCP servers in pod namespaces; one Service has no
endpoints (kube-proxy's REJECT answers), one is dropped by a host-firewall rule planted in raw PREROUTING.
The node is collected with `kpdoctor collect --transport local` run inside the node namespace, and the
scan runs with `--probe` inside the lab's client namespace, so the probe's packets cross a real veth into
the node's real netfilter. Every address lives in namespaces the test creates; the Lab removes them.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kpdoctor.cluster.snapshot import load_objects
from kpdoctor.errors import InputError
from kpdoctor.lab import netns
from kpdoctor.lab.cluster import (
    LabService,
    endpointslice_object,
    kube_proxy_configmap,
    node_object,
    service_object,
)
from kpdoctor.lab.scenario import load_services
from kpdoctor.lab.servers import wait_reachable
from kpdoctor.lab.topology import NODE_IP, Lab
from kpdoctor.node.probe import (
    ProbeOptions,
    ProbeTarget,
    plan,
    probe_node_ports,
    run_targets,
)

REPO = Path(__file__).resolve().parents[2]
NODE = "lab-node"
WEB = LabService("web", "10.96.0.10", 80, 8080, node_port=30080)  # endpoints filled in with the lab's pods
EMPTY = LabService("empty", "10.96.0.11", 80, 8080, node_port=30081)  # no endpoints: kube-proxy REJECTs
BLOCKED = LabService("blocked", "10.96.0.12", 80, 8080, node_port=30082)  # host firewall DROPs its NodePort


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _udp_service() -> dict[str, Any]:
    svc = service_object(LabService("dns", "10.96.0.53", 53, 5353, node_port=30053))
    svc["spec"]["ports"][0]["protocol"] = "UDP"
    return svc


def _cluster(nodes: list[dict[str, Any]], services: list[dict[str, Any]]) -> Any:
    objects = [(o, f"test:{i}") for i, o in enumerate([*nodes, kube_proxy_configmap("iptables"), *services])]
    return load_objects(objects, source="test")


def _node(name: str, ip: str | None) -> dict[str, Any]:
    obj = node_object(name)
    obj["status"]["addresses"] = [a for a in obj["status"]["addresses"] if a["type"] != "InternalIP"]
    if ip:
        obj["status"]["addresses"].insert(0, {"type": "InternalIP", "address": ip})
    return obj


# ------------------------------------------------------------------------------------ planning (no traffic)


def test_plan_covers_every_node_port_tcp_only_and_caps_evenly() -> None:
    cluster = _cluster([_node("a", "10.0.0.1"), _node("b", "10.0.0.2"), _node("c", None)],
                       [service_object(WEB), service_object(EMPTY), _udp_service(),
                        service_object(LabService("plain", "10.96.0.13", 80, 8080))])
    targets, run = plan(cluster, ["a", "b", "c"], ProbeOptions())
    assert [(t.node, t.address, t.port, t.service) for t in targets] == [
        ("a", "10.0.0.1", 30080, "lab/web:tcp"), ("b", "10.0.0.2", 30080, "lab/web:tcp"),
        ("a", "10.0.0.1", 30081, "lab/empty:tcp"), ("b", "10.0.0.2", 30081, "lab/empty:tcp"),
    ]  # ClusterIP-only "plain" has no NodePort; node c has no InternalIP
    assert run.no_address == ["c"]
    assert [(r["node"], r["port"], r["protocol"], r["result"]) for r in run.results] == [
        ("a", 30053, "UDP", "skipped"), ("b", 30053, "UDP", "skipped")]
    assert "cannot tell open from filtered" in run.results[0]["detail"]
    capped, run = plan(cluster, ["a", "b"], ProbeOptions(limit=3))
    assert [(t.node, t.port) for t in capped] == [("a", 30080), ("b", 30080), ("a", 30081)]
    assert run.over_limit == 1


@pytest.mark.parametrize(("options", "flag"), [
    (ProbeOptions(timeout=0), "--probe-timeout"), (ProbeOptions(timeout=31), "--probe-timeout"),
    (ProbeOptions(concurrency=0), "--probe-concurrency"), (ProbeOptions(limit=-1), "--probe-limit"),
])
def test_bad_probe_options_are_input_errors(options: ProbeOptions, flag: str) -> None:
    with pytest.raises(InputError, match=flag):
        options.validated()


def test_cli_probe_flags_and_probe_without_nodes_exit_2(tmp_path: Path) -> None:
    bundle = REPO / "tests" / "fixtures" / "bundles" / "B1-healthy" / "bundle"
    bad = subprocess.run([sys.executable, "-m", "kpdoctor", "scan", "--bundle", str(bundle), "--probe",
                          "--probe-timeout", "0"], capture_output=True, text=True, timeout=60, env=_env())
    assert bad.returncode == 2 and bad.stderr.startswith("kpdoctor: error: --probe-timeout 0"), bad.stderr
    no_nodes = subprocess.run([sys.executable, "-m", "kpdoctor", "scan", "--snapshot", str(bundle / "cluster"),
                               "--probe"], capture_output=True, text=True, timeout=60, env=_env())
    assert no_nodes.returncode == 2 and "--probe: no node is scanned" in no_nodes.stderr, no_nodes.stderr
    demo = subprocess.run([sys.executable, "-m", "kpdoctor", "scan", "--demo", "--probe"], capture_output=True,
                          text=True, timeout=60, env=_env())
    assert demo.returncode == 2 and "not real machines" in demo.stderr, demo.stderr


# ------------------------------------------------------------------------------------ loopback (no root)


def test_open_and_refused_on_loopback() -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    closed = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        closed.bind(("127.0.0.1", 0))  # bound, not listening: the kernel answers RST
        open_port, closed_port = listener.getsockname()[1], closed.getsockname()[1]
        targets = [ProbeTarget("n", "127.0.0.1", open_port, "TCP", "ns/open"),
                   ProbeTarget("n", "127.0.0.1", closed_port, "TCP", "ns/closed")]
        results = run_targets(targets, ProbeOptions(timeout=1.0, concurrency=2))
    finally:
        listener.close()
        closed.close()
    assert [(r["port"], r["result"], r["service"], r["kind"]) for r in results] == [
        (open_port, "open", "ns/open", "node-port"), (closed_port, "refused", "ns/closed", "node-port")]
    assert all(0 <= r["elapsed"] < 1.0 for r in results)
    assert set(results[0]) == {"node", "address", "port", "protocol", "kind", "service", "result", "detail",
                               "elapsed"}


def test_probe_with_no_node_ports_does_nothing() -> None:
    cluster = _cluster([_node("a", "127.0.0.1")], [service_object(LabService("plain", "10.96.0.13", 80, 8080))])
    run = probe_node_ports(cluster, ["a"])
    assert run.results == [] and run.over_limit == 0
    assert run.summary().startswith("probed 0 NodePort(s) on 0 node(s)")


# ------------------------------------------------------------------------------------ the lab, for real


def _write_snapshot(directory: Path, services: list[LabService]) -> None:
    directory.mkdir()
    lists = {
        "nodes.json": [node_object(NODE)],
        "configmaps.json": [kube_proxy_configmap("iptables")],
        "services.json": [service_object(s) for s in services],
        "endpointslices.json": [endpointslice_object(s, NODE) for s in services if s.endpoints],
    }
    for name, items in lists.items():
        (directory / name).write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))


def _findings(report_json: str) -> list[dict[str, Any]]:
    """Every finding of a JSON report (occurrences of each check's groups), with its group's severity."""
    report = json.loads(report_json)
    return [{**occ, "severity": g["severity"], "check": c["id"]}
            for c in report["checks"] for g in c.get("groups", ()) for occ in g["occurrences"]]


def _in_ns(ns: str, args: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", ns, *args], capture_output=True, text=True, timeout=timeout,
                          env=_env())


@pytest.mark.root("iptables-nft-restore", "iptables", "nfacct", "iptables-save", "nft")
def test_probe_tells_open_refused_and_filtered_on_a_lab_node(tmp_path: Path) -> None:
    with Lab(pods=2, node_name=NODE) as lab:
        web = LabService(**{**WEB.__dict__, "endpoints": (lab.pods[0].ip,)})
        blocked = LabService(**{**BLOCKED.__dict__, "endpoints": (lab.pods[1].ip,)})
        services = [web, EMPTY, blocked]
        load_services(lab, services, mode="iptables", backend="nft")
        lab.serve(lab.pods[0], 8080)
        lab.serve(lab.pods[1], 8080)
        assert wait_reachable(lab.client_ns, NODE_IP, 30082).outcome == "ok"  # served before the firewall
        # the host firewall: drop the NodePort before kube-proxy's DNAT (raw PREROUTING), in the node only
        netns.run(["iptables", "-t", "raw", "-A", "PREROUTING", "-p", "tcp", "--dport", "30082", "-j", "DROP"],
                  netns=lab.node_ns)
        assert wait_reachable(lab.client_ns, NODE_IP, 30080).outcome == "ok"

        # the prober itself, from the client namespace: one connect per port, classified
        code = ("import json; from kpdoctor.node.probe import connect; "
                f"print(json.dumps([connect({NODE_IP!r}, p, 1.0) for p in (30080, 30081, 30082)]))")
        direct = _in_ns(lab.client_ns, [sys.executable, "-c", code], timeout=30)
        assert direct.returncode == 0, direct.stderr
        outcomes = [(r, d) for r, d, _ in json.loads(direct.stdout)]
        assert [r for r, _ in outcomes] == ["open", "refused", "timeout"], outcomes

        # a bundle of the node, collected inside it (read-only), then the scan with --probe from the client
        snapshot = tmp_path / "snapshot"
        _write_snapshot(snapshot, services)
        bundle = tmp_path / "bundle"
        collected = _in_ns(lab.node_ns, [sys.executable, "-m", "kpdoctor", "collect", "-f", str(bundle),
                                         "--transport", "local", "--snapshot", str(snapshot), "--node", NODE])
        assert collected.returncode == 0, collected.stderr
        scanned = _in_ns(lab.client_ns, [sys.executable, "-m", "kpdoctor", "scan", "--bundle", str(bundle),
                                          "--probe", "--checks", "KP-NODEPORT-FIREWALL", "-o", "json"])
        node_run = _in_ns(lab.client_ns, [sys.executable, "-m", "kpdoctor", "node", NODE, "--bundle", str(bundle),
                                           "--probe", "--checks", "KP-NODEPORT-FIREWALL", "-o", "json"])
        # without --probe the same scan has only the static finding (the planted rule)
        static = _in_ns(lab.client_ns, [sys.executable, "-m", "kpdoctor", "scan", "--bundle", str(bundle),
                                         "--checks", "KP-NODEPORT-FIREWALL", "-o", "json"])
    assert scanned.returncode == 1, scanned.stderr
    assert "probe: probed 3 NodePort(s) on 1 node(s)" in scanned.stderr
    assert "1 open, 1 refused, 1 timeout, 0 error" in scanned.stderr, scanned.stderr
    findings = _findings(scanned.stdout)
    by_subject = {f["subject"]: f for f in findings}
    text = json.dumps(findings)
    # filtered: the right Service and port, as an error, with the probe as evidence
    filtered = by_subject["Service lab/blocked:tcp/TCP"]
    assert filtered["severity"] == "error" and f"{NODE_IP}:30082/TCP timed out" in filtered["message"], filtered
    assert any(f"probe from kpdoctor: {NODE_IP}:30082/TCP -> timeout" in e for e in filtered["evidence"])
    # refused without endpoints: kube-proxy's REJECT, explained as a warning
    refused = by_subject["Service lab/empty:tcp/TCP"]
    assert refused["severity"] == "warning" and "no ready endpoints" in refused["message"], refused
    # the static side saw the planted rule itself
    assert any("raw PREROUTING" in f["message"] and "30082/TCP" in f["message"] for f in findings), text
    # silent on the open one
    assert "lab/web" not in text and "30080" not in text
    assert node_run.returncode == 1, node_run.stderr
    assert {f["subject"] for f in _findings(node_run.stdout)} == set(by_subject)
    assert static.returncode == 1, static.stderr
    assert {f["subject"] for f in _findings(static.stdout)} == {f"Node {NODE}"}
