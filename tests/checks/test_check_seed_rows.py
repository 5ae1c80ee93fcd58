"""The seed's five troubleshooting rows, each reproduced on real parts and diagnosed with the fix a
sig-network engineer would give - plus both-ways tests of the cluster/health/sync/mode/Cilium checks.

Real parts: the bundles (real kube-apiserver + kube-proxy v1.36.2 captures), real iptables-restore
failures in a namespace, real rules. Where a piece cannot run here (no Cilium, no kubelet) the
recorded objects are edited in the way the API would change them, and the test says so.
"""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

import kpdoctor.checks.cilium_kpr as cilium
import kpdoctor.checks.kube_proxy_health as health
import kpdoctor.checks.kube_proxy_node_health as node_health
import kpdoctor.checks.nodeport_firewall as firewall
import kpdoctor.checks.proxier_mode as proxier_mode
import kpdoctor.checks.stale_endpoints as stale
import kpdoctor.checks.sync_lag as sync_lag
from kpdoctor.cluster.model import ConfigMap, DaemonSet
from kpdoctor.findings import Severity
from kpdoctor.scan_options import ScanOptions
from tests.support.checks import (
    EDGE1_RULES,
    describe,
    lab_node,
    load_bundle,
    make_node,
    netns,
    not_answering,
    replace_fact,
    run_check,
    scan,
    sh,
    with_many_services,
    without_kube_proxy,
)

# ------------------------------------------------------------------------------------ seed rows


def test_seed_row_1_unreachable_clusterip_with_kube_proxy_down() -> None:
    """kube-proxy deleted 'because Cilium' without KPR: a cluster-wide outage, CRITICAL; a crash-looping
    kube-proxy (B2): the node's rules are frozen."""
    cluster, nodes = load_bundle("B1-healthy")
    removed = without_kube_proxy(cluster)
    found = run_check(cilium.CHECK, removed, not_answering(nodes))
    assert [(f.subject, f.severity) for f in found] == [("Cluster", Severity.CRITICAL)]
    assert "all 7 Services" in found[0].message and "remove kube-proxy when using Cilium" in found[0].message
    assert found[0].remediation is not None
    assert any("kubeadm init phase addon kube-proxy" in c for c in found[0].remediation.commands)
    assert run_check(cilium.CHECK, cluster, nodes) == []  # kube-proxy present, no Cilium: fine
    b2, b2_nodes = load_bundle("B2-stale-endpoint")
    pods = [f for f in run_check(health.CHECK, b2, b2_nodes) if f.subject.startswith("Pod ")]
    assert pods and pods[0].remediation is not None
    assert "kubectl -n kube-system describe pod kube-proxy-76gg5" in pods[0].remediation.commands


@pytest.mark.root("iptables-restore")
def test_seed_row_2_failed_iptables_sync() -> None:
    """A real iptables-restore failure: kube-proxy's rules need nfacct objects the namespace lacks. The error
    text is what iptables-restore really printed; it is put into a kube-proxy log line in kube-proxy's own
    klog format (kube-proxy itself does not run here), and the restore-failure counter into B1's real metrics."""
    cluster, nodes = load_bundle("B1-healthy")
    with netns("kpd-rf") as ns:
        proc = sh(["iptables-restore"], netns=ns, input=EDGE1_RULES, check=False)
    assert proc.returncode != 0, "restoring kube-proxy rules without nfacct objects should fail here"
    err = " ".join(proc.stderr.split())
    log = (cluster.logs["kube-system/kube-proxy-fn2sb"]
           + f'E1126 09:06:03.100000   22912 proxier.go:1561] "Failed to execute iptables-restore" '
           f'err="exit status {proc.returncode}: {err}" ipFamily="IPv4"\n'
           'I1126 09:06:03.100100   22912 proxier.go:825] "Sync failed" ipFamily="IPv4" retryingTime="30s"\n')
    broken = replace(cluster, logs={**cluster.logs, "kube-system/kube-proxy-fn2sb": log})
    found = run_check(health.CHECK, broken, nodes)
    assert [(f.subject, f.severity) for f in found] == [("Pod kube-system/kube-proxy-fn2sb", Severity.ERROR)]
    assert "iptables-restore failed" in found[0].message
    assert any("Failed to execute iptables-restore" in e and err[:30] in e for e in found[0].evidence)
    metrics = (nodes["edge-1"].text("kube-proxy/metrics.txt") or "") + (
        'kubeproxy_sync_proxy_rules_iptables_restore_failures_total{ip_family="IPv4"} 3\n')
    node = replace_fact(nodes["edge-1"], "kube-proxy/metrics.txt", metrics)
    lag = run_check(sync_lag.CHECK, broken, {**nodes, "edge-1": node}, node="edge-1")
    assert [(f.subject, f.severity) for f in lag] == [("Node edge-1", Severity.WARNING)]
    assert "3 failed iptables-restore runs" in lag[0].message
    assert run_check(health.CHECK, cluster, nodes) == []


def test_seed_row_3_ipvs_mode_not_activating() -> None:
    cluster, nodes = load_bundle("B4-ipvs-unavailable")
    found = [f for f in scan(cluster, nodes) if f.check_id == proxier_mode.CHECK.id]
    assert len(found) == 1 and found[0].severity == Severity.CRITICAL
    assert "exits (status 1) on every start" in found[0].message
    assert found[0].remediation is not None and "nftables" in found[0].remediation.text


def test_seed_row_4_stale_routing_after_pod_deletion() -> None:
    cluster, nodes = load_bundle("B2-stale-endpoint")
    found = run_check(stale.CHECK, cluster, nodes)
    assert [f.subject for f in found] == ["Service payments/ledger:http/TCP"]
    assert found[0].remediation is not None
    cmds = " | ".join(found[0].remediation.commands)
    assert "logs kube-proxy-76gg5 --previous" in cmds and "--dst-nat 10.244.53.12" in cmds
    # the myth: lowering syncPeriod is not the fix - the sync check says so when someone tried it
    cms = tuple(replace(c, data={**c.data, "config.conf": c.data["config.conf"].replace("syncPeriod: 30s",
                                                                                           "syncPeriod: 10s")})
                if c.name == "kube-proxy" else c for c in cluster.configmaps)
    myth = run_check(sync_lag.CHECK, replace(cluster, configmaps=cms), nodes, node="edge-1")
    assert [(f.severity, f.subject) for f in myth] == [(Severity.INFO, "ConfigMap kube-system/kube-proxy")]
    assert "does not make endpoint changes apply sooner" in myth[0].message


@pytest.mark.root("iptables-restore", "iptables", "nfacct")
def test_seed_row_5_nodeport_not_reachable() -> None:
    """A host firewall drops the NodePort range before kube-proxy's DNAT; the probe timed out."""
    cluster, nodes = load_bundle("B1-healthy")
    with netns("kpd-np") as ns:
        make_node(ns, "10.81.0.2")
        from tests.support.checks import prepare_nfacct

        prepare_nfacct(ns)
        sh(["iptables-restore"], netns=ns, input=EDGE1_RULES)
        sh(["iptables", "-t", "mangle", "-I", "PREROUTING", "-p", "tcp", "-m", "multiport", "--dports",
            "30000:32767", "-j", "DROP"], netns=ns)
        node = lab_node(ns, "edge-1")
    probe = [{"node": "edge-1", "address": "10.81.0.2", "port": 31110, "protocol": "TCP", "kind": "node-port",
              "result": "timeout", "elapsed": 3.0}]
    found = run_check(firewall.CHECK, cluster, {**nodes, "edge-1": node}, node="edge-1", options=ScanOptions(probe=probe))
    rule = [f for f in found if f.subject == "Node edge-1"]
    assert rule and "mangle PREROUTING" in rule[0].message and "31110/TCP" in rule[0].message
    assert rule[0].remediation is not None
    assert rule[0].remediation.commands[0].startswith("iptables -t mangle -D PREROUTING -p tcp -m multiport "
                                                      "--dports 30000:32767 -j DROP")
    timed_out = [f for f in found if f.subject == "Service storefront/checkout:https/TCP"]
    assert timed_out and timed_out[0].severity == Severity.ERROR and "timed out" in timed_out[0].message


# ------------------------------------------------------------------------------------ both ways


def test_node_health_503_and_never_synced() -> None:
    cluster, nodes = load_bundle("B1-healthy")
    assert run_check(node_health.CHECK, cluster, nodes) == []
    body = ('{"lastUpdated":"2026-11-26T09:05:07.656136233Z","currentTime":"2026-11-26T09:07:07.656102903Z",'
            '"nodeEligible":true,"healthy":false}')
    node = replace_fact(nodes["edge-1"], "kube-proxy/healthz.json", body)
    found = run_check(node_health.CHECK, cluster, {**nodes, "edge-1": node}, node="edge-1")
    assert [(f.subject, f.severity) for f in found] == [("Node edge-1", Severity.ERROR)]
    assert "120 s ago" in found[0].message
    metrics = re.sub(r"(?m)^(kubeproxy_sync_proxy_rules_last_timestamp_seconds\{[^}]*\}) .*$", r"\1 0",
                     nodes["edge-1"].text("kube-proxy/metrics.txt") or "")
    node = replace_fact(nodes["edge-1"], "kube-proxy/metrics.txt", metrics)
    found = run_check(node_health.CHECK, cluster, {**nodes, "edge-1": node}, node="edge-1")
    assert len(found) == 1 and "never completed a sync" in found[0].message
    assert "/healthz still says healthy" in found[0].message


def test_sync_lag_hung_proxier_and_scale_cost() -> None:
    cluster, nodes = load_bundle("B1-healthy")
    assert run_check(sync_lag.CHECK, cluster, nodes) == []
    text = nodes["edge-1"].text("kube-proxy/metrics.txt") or ""
    hung = re.sub(r'(?m)^(kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds\{ip_family="IPv4"\}) .*$',
                  r"\1 1.7956839100e+09", text)
    later = ('{"lastUpdated":"2026-11-26T09:05:07Z","currentTime":"2026-11-26T09:20:07Z","nodeEligible":true,'
             '"healthy":true}')
    node = replace_fact(replace_fact(nodes["edge-1"], "kube-proxy/metrics.txt", hung), "kube-proxy/healthz.json",
                        later)
    found = run_check(sync_lag.CHECK, cluster, {**nodes, "edge-1": node}, node="edge-1")
    assert [(f.severity, "hung" in f.message) for f in found] == [(Severity.ERROR, True)], describe(found)
    big = with_many_services(cluster, 5000)
    found = run_check(sync_lag.CHECK, big, nodes, node="edge-1")
    assert [(f.severity, f.subject) for f in found] == [(Severity.ERROR, "Node edge-1")]
    est = re.search(r"expected to take ~(\d+) s", found[0].message)
    assert est and 170 <= int(est.group(1)) <= 190 and "173 s at 5,000" in found[0].message
    assert run_check(sync_lag.CHECK, big, nodes, node="edge-2") == []  # nftables mode: cheap


def test_proxier_mode_mismatch_old_kernel_and_scale() -> None:
    cluster, nodes = load_bundle("B1-healthy")
    assert run_check(proxier_mode.CHECK, cluster, nodes) == []
    # ConfigMap edited to nftables, pod not restarted: /proxyMode still iptables
    cms = tuple(replace(c, data={**c.data, "config.conf": c.data["config.conf"].replace("mode: iptables",
                                                                                           "mode: nftables")})
                if c.name == "kube-proxy" else c for c in cluster.configmaps)
    edited = replace(cluster, configmaps=cms)
    found = run_check(proxier_mode.CHECK, edited, nodes, node="edge-1")
    assert [(f.severity, f.subject) for f in found] == [(Severity.WARNING, "Node edge-1")]
    assert "rollout restart daemonset kube-proxy" in " ".join(found[0].remediation.commands)  # type: ignore[union-attr]
    old = replace_fact(nodes["edge-2"], "uname-r.txt", "5.10.0-28-amd64\n")
    found = run_check(proxier_mode.CHECK, cluster, {**nodes, "edge-2": old}, node="edge-2")
    assert [(f.severity, "5.13" in f.message) for f in found] == [(Severity.ERROR, True)]
    found = run_check(proxier_mode.CHECK, with_many_services(cluster, 1200), nodes, node="edge-1")
    assert [f.severity for f in found] == [Severity.WARNING] and "1207 Services" in found[0].message


def _cilium(cluster, kpr: str | None, host: str = "10.81.0.1", ds: bool = True):  # type: ignore[no-untyped-def]
    """cilium-config as the Cilium Helm chart writes it (keys and values), and the agent DaemonSet."""
    data = {"cluster-name": "default", "enable-ipv4": "true", "routing-mode": "tunnel"}
    if kpr is not None:
        data["kube-proxy-replacement"] = kpr
    if host:
        data.update({"k8s-service-host": host, "k8s-service-port": "6444"})
    cms = cluster.configmaps + (ConfigMap("kube-system", "cilium-config", data),)
    dss = cluster.daemonsets + ((DaemonSet("kube-system", "cilium", labels={"k8s-app": "cilium"}, desired=2,
                                           ready=2),) if ds else ())
    return replace(cluster, configmaps=cms, daemonsets=dss)


def test_cilium_kpr_both_ways() -> None:
    cluster, nodes = load_bundle("B1-healthy")
    # KPR false, kube-proxy running: the normal non-replacement setup
    assert run_check(cilium.CHECK, _cilium(cluster, "false"), nodes) == []
    # KPR true, kube-proxy gone (DaemonSet and ConfigMap), API server set: a correct replacement
    assert run_check(cilium.CHECK, _cilium(without_kube_proxy(cluster), "true"), nodes) == []
    # KPR true next to kube-proxy: two dataplanes
    found = run_check(cilium.CHECK, _cilium(cluster, "true"), nodes)
    assert {f.subject for f in found} == {"DaemonSet kube-system/kube-proxy", "DaemonSet kube-system/kube-proxy-nftables"}
    assert all(f.severity == Severity.WARNING for f in found)
    # kube-proxy removed with KPR false: the seed's outage
    found = run_check(cilium.CHECK, _cilium(without_kube_proxy(cluster), "false"), not_answering(nodes))
    assert [(f.subject, f.severity) for f in found] == [("Cluster", Severity.CRITICAL)]
    # legacy strict, no API server address, ConfigMap left behind (kubeadm reinstall trap)
    no_ds = replace(cluster, daemonsets=(), pods=())
    found = run_check(cilium.CHECK, _cilium(no_ds, "strict", host=""), nodes)
    got = sorted((f.subject, f.severity) for f in found)
    assert got == [("ConfigMap kube-system/cilium-config", Severity.WARNING),
                   ("ConfigMap kube-system/cilium-config", Severity.ERROR),
                   ("ConfigMap kube-system/kube-proxy", Severity.WARNING)], describe(found)
