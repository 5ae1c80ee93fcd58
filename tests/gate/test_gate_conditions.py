"""Every gate condition both ways, on the real kube-proxy captures (tests/fixtures/bundles) plus Cilium agents.

Cilium cannot run on this machine: cilium-config, the agent pods and each node's `cilium/status.json` /
`cilium/service-list.json` are the hand-built 1.14 / 1.18 shapes of tests/fixtures/cilium (from Cilium's API
models), added to a copy of a real bundle. The kube-proxy side — Services, EndpointSlices, kube-proxy pods, the
iptables / nft dumps the cleanup plan reads — is the real capture.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from kpdoctor.cluster.model import LoadBalancerIngress, NodeAddress, ServicePort
from kpdoctor.findings import Severity
from kpdoctor.gate import run_gate, to_findings
from kpdoctor.gate.model import GateResult
from tests.support.checks import not_answering
from tests.support.gate import (
    NODES,
    STATUS,
    TABLE,
    build_bundle,
    drop_configmap,
    edit_cilium_config,
    edit_json_fact,
    edit_pods,
    load,
    set_fact,
    without_kube_proxy,
)


@pytest.fixture(scope="module", params=["1.14", "1.18"])
def passing(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    root = build_bundle(tmp_path_factory.mktemp("gate"), version=request.param)
    return load(root)


def reasons_of(result: GateResult, cid: str) -> str:
    return "\n".join(f"{r.kind} {r.subject}: {r.message}" for r in result.condition(cid).all_reasons)


def test_passing_cluster_passes_every_condition(passing) -> None:  # type: ignore[no-untyped-def]
    result = run_gate(*passing)
    assert result.verdict == "pass", [(c.id, c.status, reasons_of(result, c.id)) for c in result.conditions]
    assert result.exit_code == 0
    assert {c.id for c in result.conditions} == {
        "replacement-configured", "agents-ready", "agents-kpr-mode", "apiserver-direct", "service-coverage",
        "services-served-now", "nodes-ready"}
    coverage = result.condition("service-coverage")
    assert {c.name for c in coverage.cases} == {
        "Service default/kubernetes", *(f"Service storefront/{n}" for n in
                                        ("catalog", "checkout", "gateway", "resolver", "sessions", "statsd"))}


# ---- replacement-configured ----------------------------------------------------------------------
@pytest.mark.parametrize("value", ["false", "partial", "probe", "disabled", None, "maybe"])
def test_replacement_not_true_fails(passing, value) -> None:  # type: ignore[no-untyped-def]
    cluster, nodes = passing
    result = run_gate(edit_cilium_config(cluster, **{"kube-proxy-replacement": value}), nodes)
    cond = result.condition("replacement-configured")
    assert cond.status == "fail" and result.exit_code == 1
    assert "kube-proxy-replacement" in reasons_of(result, "replacement-configured")


def test_legacy_strict_is_accepted_with_a_warning_but_agents_must_still_say_true(passing) -> None:  # type: ignore[no-untyped-def]
    cluster, nodes = passing
    result = run_gate(edit_cilium_config(cluster, **{"kube-proxy-replacement": "strict"}), nodes)
    cond = result.condition("replacement-configured")
    assert cond.status == "pass" and [r.kind for r in cond.reasons] == ["warning"]
    assert "strict" in cond.reasons[0].message
    # an agent really running with strict on 1.15+ reports no mode: that blocks
    for node in NODES:
        nodes = edit_json_fact(nodes, node, STATUS, lambda d: (d["kube-proxy-replacement"].pop("mode"), d)[1])
    result = run_gate(edit_cilium_config(cluster, **{"kube-proxy-replacement": "strict"}), nodes)
    assert result.condition("agents-kpr-mode").status == "fail"
    assert "strict" in reasons_of(result, "agents-kpr-mode")


def test_missing_cilium_configmap_cannot_prove(passing) -> None:  # type: ignore[no-untyped-def]
    cluster, nodes = passing
    result = run_gate(drop_configmap(cluster, "cilium-config"), nodes)
    assert result.condition("replacement-configured").status == "unknown"
    assert "cilium-config" in reasons_of(result, "replacement-configured")
    assert result.verdict == "cannot-prove" and result.exit_code == 3


def test_no_cilium_at_all_is_a_definite_fail(tmp_path: Path) -> None:
    cluster, nodes = load(build_bundle(tmp_path, with_config=False, with_agents=False, with_status=False,
                                       with_service_list=False))
    result = run_gate(cluster, nodes)
    assert result.condition("replacement-configured").status == "fail"
    assert result.condition("agents-ready").status == "fail"
    assert result.exit_code == 1


# ---- agents-ready ----------------------------------------------------------------------------------
def test_agent_missing_or_not_ready_fails_naming_the_node(passing) -> None:  # type: ignore[no-untyped-def]
    cluster, nodes = passing
    gone = edit_pods(cluster, lambda p: None if p.name == "cilium-tw6fp" else p)
    result = run_gate(gone, nodes)
    assert result.condition("agents-ready").status == "fail"
    assert "no Cilium agent pod on edge-2" in reasons_of(result, "agents-ready")
    crash = edit_pods(cluster, lambda p: replace(p, ready=False, phase="Running") if p.name == "cilium-8xq2m" else p)
    result = run_gate(crash, nodes)
    assert "Cilium agent on edge-1 is not Running and Ready" in reasons_of(result, "agents-ready")
    assert result.condition("nodes-ready").status == "fail"  # kube-proxy alone serves edge-1
    assert "kube-proxy's rules are the only thing serving Services on edge-1" in reasons_of(result, "nodes-ready")


# ---- agents-kpr-mode ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("edit", "expected"), [
    (lambda d: (d["kube-proxy-replacement"].__setitem__("mode", "False"), d)[1], "reports KubeProxyReplacement False"),
    (lambda d: (d["cilium"].__setitem__("state", "Warning"), d)[1], "is not healthy"),
    (lambda d: (d["kubernetes"].__setitem__("state", "Failure"), d)[1], "no working connection to the API server"),
])
def test_agent_status_fails(passing, edit, expected) -> None:  # type: ignore[no-untyped-def]
    cluster, nodes = passing
    result = run_gate(cluster, edit_json_fact(nodes, "edge-2", STATUS, edit))
    assert result.condition("agents-kpr-mode").status == "fail"
    assert expected in reasons_of(result, "agents-kpr-mode") and "edge-2" in reasons_of(result, "agents-kpr-mode")


def test_unknown_agent_version_cannot_prove(passing) -> None:  # type: ignore[no-untyped-def]
    cluster, nodes = passing
    from tests.support.gate import CILIUM

    nodes = set_fact(nodes, "edge-1", STATUS, (CILIUM / "v1.13" / "status-edge-1.json").read_text())
    result = run_gate(cluster, nodes)
    assert result.condition("agents-kpr-mode").status == "unknown"
    assert "Cilium 1.13.18" in reasons_of(result, "agents-kpr-mode")
    assert result.verdict == "cannot-prove" and result.exit_code == 3
    future = edit_json_fact(passing[1], "edge-1", STATUS,
                            lambda d: (d["cilium"].__setitem__("msg", "1.19.0 (v1.19.0-abc)"), d)[1])
    assert run_gate(cluster, future).verdict == "cannot-prove"


def test_missing_or_garbled_status_cannot_prove(passing) -> None:  # type: ignore[no-untyped-def]
    cluster, nodes = passing
    for content, text in ((None, "absent"), ("{\"nothing\": true}", "not recognised")):
        result = run_gate(cluster, set_fact(nodes, "edge-2", STATUS, content))
        assert result.condition("agents-kpr-mode").status == "unknown"
        assert text in reasons_of(result, "agents-kpr-mode")
        assert result.verdict != "pass"


# ---- apiserver-direct --------------------------------------------------------------------------------
@pytest.mark.parametrize(("changes", "expected"), [
    ({"k8s-service-host": None}, "k8s-service-host is not set"),
    ({"k8s-service-port": None}, "k8s-service-port is not set"),
    ({"k8s-service-port": "https"}, "is not a port number"),
    ({"k8s-service-host": "10.96.0.1", "k8s-service-port": "443"}, "ClusterIP of Service default/kubernetes"),
    ({"k8s-service-host": "10.96.150.10"}, "ClusterIP of Service storefront/catalog"),
])
def test_apiserver_through_kube_proxy_fails(passing, changes, expected) -> None:  # type: ignore[no-untyped-def]
    cluster, nodes = passing
    result = run_gate(edit_cilium_config(cluster, **changes), nodes)
    assert result.condition("apiserver-direct").status == "fail"
    assert expected in reasons_of(result, "apiserver-direct")


def test_apiserver_by_dns_name_passes(passing) -> None:  # type: ignore[no-untyped-def]
    cluster, nodes = passing
    result = run_gate(edit_cilium_config(cluster, **{"k8s-service-host": "api.cluster.example"}), nodes)
    assert result.condition("apiserver-direct").status == "pass"


# ---- service-coverage: features ----------------------------------------------------------------------
@pytest.mark.parametrize(("feature", "services"), [
    ("nodePort", {"storefront/checkout", "storefront/gateway"}),
    ("sessionAffinity", {"storefront/sessions"}),
    ("socketLB", {"default/kubernetes", "storefront/catalog", "storefront/checkout", "storefront/gateway",
                  "storefront/resolver", "storefront/sessions", "storefront/statsd"}),
])
def test_feature_off_fails_exactly_the_services_that_need_it(passing, feature, services) -> None:  # type: ignore[no-untyped-def]
    cluster, nodes = passing
    nodes = edit_json_fact(nodes, "edge-1", STATUS,
                           lambda d: (d["kube-proxy-replacement"]["features"].__setitem__(feature, {}), d)[1])
    cond = run_gate(cluster, nodes).condition("service-coverage")
    failing = {c.name.removeprefix("Service ") for c in cond.cases if c.status == "fail"}
    assert failing == services
    assert all("edge-1" in r.message for c in cond.cases for r in c.reasons)


def test_externalips_need_the_external_ips_feature(passing) -> None:  # type: ignore[no-untyped-def]
    cluster, nodes = passing
    svc = cluster.service_by_key["storefront/catalog"]
    with_eip = replace(cluster, services=tuple(
        replace(s, external_ips=("203.0.113.7",)) if s is svc else s for s in cluster.services))
    nodes = edit_json_fact(nodes, "edge-2", STATUS,
                           lambda d: (d["kube-proxy-replacement"]["features"].__setitem__("externalIPs", {}), d)[1])
    cond = run_gate(with_eip, nodes).condition("service-coverage")
    text = "\n".join(r.message for c in cond.cases for r in c.reasons if c.name == "Service storefront/catalog")
    assert "externalIPs 203.0.113.7 need the external-IPs feature" in text
    assert "externalIP frontend 203.0.113.7:80/TCP is missing" in text  # and the table does not have it


def test_config_only_gaps_health_check_source_ranges_proxy_name(passing) -> None:  # type: ignore[no-untyped-def]
    cluster, nodes = passing
    result = run_gate(edit_cilium_config(cluster, **{"enable-health-check-nodeport": "false"}), nodes)
    failing = {c.name for c in result.condition("service-coverage").cases if c.status == "fail"}
    assert failing == {"Service storefront/gateway"}
    gw = cluster.service_by_key["storefront/gateway"]
    ranged = replace(cluster, services=tuple(
        replace(s, load_balancer_source_ranges=("192.0.2.0/24",)) if s is gw else s for s in cluster.services))
    result = run_gate(edit_cilium_config(ranged, **{"enable-svc-source-range-check": "false"}), nodes)
    assert "loadBalancerSourceRanges 192.0.2.0/24 are not enforced" in reasons_of(result, "service-coverage")
    result = run_gate(edit_cilium_config(cluster, **{"k8s-service-proxy-name": "cilium"}), nodes)
    assert all(c.status == "fail" for c in result.condition("service-coverage").cases)


def test_ipv6_and_sctp_ports_need_cilium_support(passing) -> None:  # type: ignore[no-untyped-def]
    cluster, nodes = passing
    svc = cluster.service_by_key["storefront/statsd"]
    changed = replace(cluster, services=tuple(
        replace(s, cluster_ips=(*s.cluster_ips, "fd00:10:96::14"), ip_families=("IPv4", "IPv6"),
                ports=(*s.ports, ServicePort("sctp", "SCTP", 9999, 9999))) if s is svc else s
        for s in cluster.services))
    text = reasons_of(run_gate(changed, nodes), "service-coverage")
    assert "IPv6 frontend but cilium-config enable-ipv6 is not true" in text
    assert "SCTP port but cilium-config enable-sctp is not true" in text


def test_node_port_outside_agent_range_fails(passing) -> None:  # type: ignore[no-untyped-def]
    cluster, nodes = passing
    nodes = edit_json_fact(nodes, "edge-1", STATUS, lambda d: (
        d["kube-proxy-replacement"]["features"]["nodePort"].__setitem__("portMax", 31000), d)[1])
    assert "outside the agent's node-port range 30000-31000" in reasons_of(run_gate(cluster, nodes),
                                                                           "service-coverage")


# ---- service-coverage: the agents' service table -------------------------------------------------------
def test_stale_backend_in_table_fails_naming_the_service(passing) -> None:  # type: ignore[no-untyped-def]
    """The seed's 'connection refused after pod deletion', on the replacement: a backend the API no longer has."""
    cluster, nodes = passing

    def stale(doc):  # type: ignore[no-untyped-def]
        for entry in doc:
            spec = entry["status"]["realized"]
            if spec["flags"]["name"] == "catalog":
                spec["backend-addresses"].append({"ip": "10.244.50.99", "port": 8080, "state": "active"})
        return doc

    result = run_gate(cluster, edit_json_fact(nodes, "edge-1", TABLE, stale))
    cond = result.condition("service-coverage")
    [case] = [c for c in cond.cases if c.status == "fail"]
    assert case.name == "Service storefront/catalog"
    assert "backends kube-proxy would not use 10.244.50.99:8080" in case.reasons[0].message


def test_table_without_service_lists_warns_but_passes(tmp_path: Path) -> None:
    cluster, nodes = load(build_bundle(tmp_path, with_service_list=False))
    result = run_gate(cluster, nodes)
    cond = result.condition("service-coverage")
    assert cond.status == "pass" and any(r.kind == "warning" and "not compared" in r.message for r in cond.reasons)
    assert result.verdict == "pass"


def test_unrecognised_table_cannot_prove(passing) -> None:  # type: ignore[no-untyped-def]
    cluster, nodes = passing
    result = run_gate(cluster, set_fact(nodes, "edge-1", TABLE, json.dumps({"services": []})))
    assert result.condition("service-coverage").status == "unknown"
    assert result.verdict == "cannot-prove"


# ---- services-served-now (the seed's mistake) ----------------------------------------------------------
def test_seed_mistake_kube_proxy_deleted_kpr_off_is_a_critical_cluster_wide_outage(passing) -> None:  # type: ignore[no-untyped-def]
    """kube-proxy DaemonSet deleted while Cilium's KPR is off: every Service in the cluster is down."""
    cluster, nodes = passing
    broken = edit_cilium_config(without_kube_proxy(cluster), **{"kube-proxy-replacement": "false"})
    nodes = not_answering(nodes)  # kube-proxy deleted: nothing answers on :10256 any more (else: a host process)
    for node in NODES:
        nodes = edit_json_fact(nodes, node, STATUS,
                               lambda d: (d["kube-proxy-replacement"].__setitem__("mode", "False"), d)[1])
    result = run_gate(broken, nodes)
    cond = result.condition("services-served-now")
    assert cond.status == "fail"
    [outage] = [r for r in cond.reasons if r.subject == "Cluster"]
    assert outage.severity is Severity.CRITICAL and outage.message.startswith("cluster-wide Service outage")
    assert "kube-proxy DaemonSet is gone" in outage.message
    assert result.exit_code == 1
    findings = [f for f in to_findings(result) if f.check_id == "GATE-SERVICES-SERVED-NOW"]
    assert any(f.severity is Severity.CRITICAL and "cluster-wide" in f.message for f in findings)


def test_served_now_passes_when_kube_proxy_runs_even_without_cilium(tmp_path: Path) -> None:
    cluster, nodes = load(build_bundle(tmp_path, with_config=False, with_agents=False, with_status=False))
    assert run_gate(cluster, nodes).condition("services-served-now").status == "pass"


# ---- nodes-ready + cleanup plan ------------------------------------------------------------------------
def test_node_not_ready_fails_and_plan_lists_real_leftovers(passing) -> None:  # type: ignore[no-untyped-def]
    cluster, nodes = passing
    sick = replace(cluster, nodes=tuple(replace(n, ready=False) if n.name == "edge-2" else n for n in cluster.nodes))
    result = run_gate(sick, nodes)
    assert result.condition("nodes-ready").status == "fail"
    assert "Node edge-2 is NotReady" in reasons_of(result, "nodes-ready")
    plan = run_gate(cluster, nodes).cleanup
    assert plan is not None
    assert "kubectl -n kube-system delete daemonset kube-proxy" in plan.cluster_commands
    assert "kubectl -n kube-system delete configmap kube-proxy" in plan.cluster_commands
    assert any("kubeadm upgrade" in n for n in plan.cluster_notes)
    by_node = {n.node: n for n in plan.nodes}
    # edge-1 ran iptables mode (real iptables-nft dump), edge-2 nftables mode (real nft ruleset)
    assert any(i.what.startswith("iptables-nft: ") and "KUBE-SERVICES" in i.what for i in by_node["edge-1"].items)
    assert [i.what for i in by_node["edge-2"].items] == ["nftables: table ip kube-proxy",
                                                         "nftables: table ip6 kube-proxy"]
    assert all("kube-proxy --cleanup" in i.commands for n in plan.nodes for i in n.items)


# ---- post-removal ---------------------------------------------------------------------------------------
def test_post_removal_fails_on_leftovers_and_remaining_objects(passing) -> None:  # type: ignore[no-untyped-def]
    cluster, nodes = passing
    result = run_gate(cluster, nodes, phase="post-removal")
    assert result.condition("kube-proxy-removed").status == "fail"
    assert "DaemonSet kube-system/kube-proxy still exists" in reasons_of(result, "kube-proxy-removed")
    assert "kubeadm upgrade reinstalls" in reasons_of(result, "kube-proxy-removed")
    removed = without_kube_proxy(cluster)
    result = run_gate(removed, nodes, phase="post-removal")
    assert result.condition("kube-proxy-removed").status == "pass"
    assert result.condition("no-leftover-state").status == "fail"
    assert "table ip kube-proxy" in reasons_of(result, "no-leftover-state")


def test_post_removal_passes_on_clean_nodes_and_cannot_prove_without_node_facts(passing) -> None:  # type: ignore[no-untyped-def]
    cluster, nodes = passing
    removed = without_kube_proxy(cluster)
    clean = dict(nodes)
    for node in NODES:
        for key in ("iptables-save.txt", "iptables-nft-save.txt", "ip6tables-save.txt", "iptables-legacy-save.txt"):
            clean = set_fact(clean, node, key, "")
        clean = set_fact(clean, node, "nft-ruleset.json", json.dumps({"nftables": [{"metainfo": {}}]}))
    result = run_gate(removed, clean, phase="post-removal")
    assert result.verdict == "pass", [(c.id, reasons_of(result, c.id)) for c in result.conditions if c.status != "pass"]
    no_nft = set_fact(clean, "edge-2", "nft-ruleset.json", None)
    result = run_gate(removed, no_nft, phase="post-removal")
    assert result.condition("no-leftover-state").status == "unknown" and result.exit_code == 3
    result = run_gate(removed, {}, phase="post-removal")
    assert result.verdict == "cannot-prove"


def test_lb_frontend_for_new_ingress_missing_from_table(passing) -> None:  # type: ignore[no-untyped-def]
    cluster, nodes = passing
    gw = cluster.service_by_key["storefront/gateway"]
    more = replace(cluster, services=tuple(
        replace(s, load_balancer_ingress=(*s.load_balancer_ingress, LoadBalancerIngress("198.51.100.99")))
        if s is gw else s for s in cluster.services),
        nodes=tuple(replace(n, addresses=(*n.addresses, NodeAddress("Hostname", n.name))) for n in cluster.nodes))
    text = reasons_of(run_gate(more, nodes), "service-coverage")
    assert "LoadBalancer frontend 198.51.100.99:80/TCP is missing" in text
