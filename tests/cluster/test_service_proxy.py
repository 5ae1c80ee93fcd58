"""Who implements Services on a node (kpdoctor/service_proxy.py), on real cluster shapes (issue 10, item 1).

The shapes under tests/fixtures/realworld/shapes/ are rebuilt from public reports (each SOURCE.md says which, and
what was filled in). For each: the inferred shape, its config and evidence, and a full scan through the real engine
with every built-in check must give exactly the SOURCE's diagnosis - no false alarm on a healthy shape, the real
fault on a broken one. Nodes carry no facts here (API-only); node facts are covered by tests/checks/test_not_evaluated.py.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType

import pytest

import kpdoctor.checks.cilium_kpr as cilium
import kpdoctor.checks.kube_proxy_node_health as node_health
from kpdoctor.cluster.model import Container
from kpdoctor.cluster.snapshot import load_snapshot
from kpdoctor.cluster.state import ClusterState
from kpdoctor.engine import run_checks
from kpdoctor.findings import Finding, Severity
from kpdoctor.node.state import NodeState
from kpdoctor.service_proxy import DAEMONSET, EMBEDDED, REPLACED, STATIC_POD, UNKNOWN, decide
from tests.support.checks import all_checks, load_bundle

SHAPES = Path(__file__).resolve().parents[1] / "fixtures" / "realworld" / "shapes"


def shape(name: str) -> ClusterState:
    return load_snapshot(SHAPES / name / "cluster")


def scan_shape(cluster: ClusterState) -> list[Finding]:
    nodes = [NodeState(n.name, "bundle", MappingProxyType({})) for n in cluster.nodes]
    return run_checks(all_checks(), cluster, nodes).findings


def alarms(findings: list[Finding]) -> list[tuple[str, str, Severity]]:
    return sorted((f.check_id, f.scope, f.severity) for f in findings if f.severity >= Severity.WARNING)


def test_every_shape_has_a_source() -> None:
    names = sorted(p.name for p in SHAPES.iterdir() if p.is_dir())
    assert len(names) == 6
    for name in names:
        text = (SHAPES / name / "SOURCE.md").read_text()
        assert "https://" in text and "Right diagnosis" in text and "Assembled" in text, name


def test_k3s_embedded_kube_proxy_configured_by_kube_proxy_arg() -> None:
    cluster = shape("k3s-embedded")
    sp = decide(cluster, "ks-00")
    assert sp.kind == EMBEDDED and sp.runs_kube_proxy
    assert sp.config is not None and sp.config.config.mode == "ipvs"
    assert sp.line() == ("kube-proxy on ks-00: embedded in k3s (node version v1.30.5+k3s1; "
                         "--kube-proxy-arg --proxy-mode=ipvs)")
    # no kube-proxy DaemonSet is not an outage on k3s (main raised a CRITICAL here); no kernel facts collected:
    # the IPVS verdict is not evaluated, not "no usable IPVS"
    found = scan_shape(cluster)
    assert alarms(found) == []
    assert any(f.not_evaluated and "IPVS" in f.message for f in found)


def test_rke2_static_pod_configured_by_its_flags() -> None:
    cluster = shape("rke2-static-pod")
    sp = decide(cluster, "ip-172-31-43-97")
    assert sp.kind == STATIC_POD and sp.daemonset is None
    assert sp.pod is not None and sp.pod.name == "kube-proxy-ip-172-31-43-97"
    assert sp.config is not None and sp.config.config.mode == "iptables"
    assert sp.config.config.cluster_cidr == "10.42.0.0/16"
    assert "no --config" in sp.config.origin
    assert "mirror pod of a static pod (owner Node ip-172-31-43-97)" in sp.evidence
    assert alarms(scan_shape(cluster)) == []


def test_eks_config_in_a_differently_named_configmap() -> None:
    cluster = shape("eks-kube-proxy-config")
    node = "ip-192-168-12-34.us-west-2.compute.internal"
    sp = decide(cluster, node)
    assert sp.kind == DAEMONSET
    assert sp.config is not None and "ConfigMap kube-proxy-config[config]" in sp.config.origin
    assert sp.config.config.mode == "ipvs" and sp.config.config.ipvs_scheduler == "lc"
    assert "udpIdleTimeout" in sp.config.origin  # a 1.18-era field: decoded leniently, as kube-proxy does
    assert alarms(scan_shape(cluster)) == []


def _with_command(cluster: ClusterState, command: tuple[str, ...]) -> ClusterState:
    """The shape with the kube-proxy container's command replaced (a hand-made variant of the real shape)."""
    def fix(containers: tuple[Container, ...]) -> tuple[Container, ...]:
        return tuple(replace(c, command=command) if c.name == "kube-proxy" else c for c in containers)
    return replace(cluster, pods=tuple(replace(p, containers=fix(p.containers)) for p in cluster.pods),
                   daemonsets=tuple(replace(d, containers=fix(d.containers)) for d in cluster.daemonsets))


def test_flags_beside_config_are_ignored_like_kube_proxy_does() -> None:
    """aws/containers-roadmap#142: '--proxy-mode' added to EKS's DaemonSet had no effect - kube-proxy's
    Options.Complete replaces flag values with the --config file."""
    cluster = shape("eks-kube-proxy-config")
    node = "ip-192-168-12-34.us-west-2.compute.internal"
    variant = _with_command(cluster, ("kube-proxy", "--hostname-override=$(NODE_NAME)", "--v=2",
                                      "--config=/var/lib/kube-proxy-config/config", "--proxy-mode=iptables"))
    sp = decide(variant, node)
    assert sp.config is not None and sp.config.config.mode == "ipvs"
    assert "ignored beside --config" in sp.config.origin and "--proxy-mode=iptables" in sp.config.origin


def test_flags_only_daemonset_is_configured_by_its_flags() -> None:
    cluster = shape("eks-kube-proxy-config")
    node = "ip-192-168-12-34.us-west-2.compute.internal"
    variant = _with_command(cluster, ("kube-proxy", "--v=2", "--proxy-mode=nftables", "--cluster-cidr=10.1.0.0/16"))
    sp = decide(variant, node)
    assert sp.kind == DAEMONSET and sp.config is not None
    assert sp.config.config.mode == "nftables" and sp.config.config.cluster_cidr == "10.1.0.0/16"
    assert "command-line flags" in sp.config.origin and sp.config.configmap is None


def test_calico_ebpf_node_is_not_applicable_not_an_outage() -> None:
    cluster = shape("calico-ebpf")
    sp = decide(cluster, "worker-1")
    assert sp.kind == REPLACED and sp.implementer == "Calico eBPF dataplane"
    assert "DaemonSet kube-system/calico-node: FELIX_BPFENABLED=true" in sp.evidence
    found = scan_shape(cluster)
    assert alarms(found) == []
    na = [f for f in found if f.check_id == node_health.CHECK.id]
    assert [f.message for f in na] == [
        "kube-proxy checks not applicable on node worker-1: Services are implemented by Calico eBPF dataplane"]
    assert "FELIX_BPFENABLED=true" in na[0].evidence[0]


def test_k3s_with_cilium_kpr_but_agents_still_running_kube_proxy() -> None:
    cluster = shape("k3s-cilium-kpr-agent-kube-proxy")
    server = decide(cluster, "k3s-control-plane-nbg1-xyz")
    agent = decide(cluster, "k3s-agent-nbg1-abc")
    assert server.kind == REPLACED and server.implementer == "Cilium kube-proxy replacement"
    assert agent.kind == EMBEDDED
    found = scan_shape(cluster)
    assert alarms(found) == [(cilium.CHECK.id, "cluster", Severity.WARNING)]
    warning = next(f for f in found if f.severity == Severity.WARNING)
    assert "k3s-agent-nbg1-abc" in warning.message and "k3s-control-plane" not in warning.message
    assert warning.remediation is not None and "agent" in warning.remediation.text


def test_k3s_kube_proxy_disabled_without_kpr_is_the_outage() -> None:
    cluster = shape("k3s-kube-proxy-disabled-no-kpr")
    assert all(not decide(cluster, n.name).runs_kube_proxy for n in cluster.nodes)
    found = scan_shape(cluster)
    assert alarms(found) == [(cilium.CHECK.id, "cluster", Severity.CRITICAL)]


def test_k3s_node_args_annotation_is_read_and_bounded() -> None:
    cluster = shape("k3s-embedded")
    node = cluster.nodes[0]
    for bad in ("not json", json.dumps({"a": 1}), json.dumps(["server", "--disable-kube-proxy"])):
        variant = replace(cluster, nodes=(replace(node, annotations={"k3s.io/node-args": bad}),))
        sp = decide(variant, "ks-00")
        if "disable" in bad:
            assert not sp.runs_kube_proxy and "--disable-kube-proxy" in sp.line()
        else:  # unreadable annotation: still k3s from the version, with k3s's defaults
            assert sp.kind == EMBEDDED and sp.config is not None and sp.config.config.mode == ""


def test_nothing_collected_is_unknown_not_absent() -> None:
    cluster, _ = load_bundle("B1-healthy")
    bare = replace(cluster, pods=(), daemonsets=(), configmaps=())
    assert {decide(bare, n.name).kind for n in bare.nodes} == {UNKNOWN}
    found = scan_shape(bare)
    assert alarms(found) == []


@pytest.mark.parametrize("scenario", ["B1-healthy", "B2-stale-endpoint", "B3-backend-split", "B4-ipvs-unavailable"])
def test_the_kubeadm_bundles_are_daemonset_shapes(scenario: str) -> None:
    cluster, nodes = load_bundle(scenario)
    for name in nodes:
        sp = decide(cluster, name)
        assert sp.kind == DAEMONSET and sp.daemonset is not None and sp.config is not None, sp.line()
        assert sp.config.configmap is not None


def test_the_gate_uses_the_same_definition_on_k3s() -> None:
    """k3s-cilium-kpr-agent-kube-proxy: after 'removing' kube-proxy (server only), the agent still runs k3s's
    embedded kube-proxy - the post-removal gate must not pass; and without the agent's facts, whether Services
    are served there now is unknown, not 'not served'."""
    from kpdoctor.gate import run_gate

    cluster = shape("k3s-cilium-kpr-agent-kube-proxy")
    post = run_gate(cluster, {}, phase="post-removal")
    removed = post.condition("kube-proxy-removed")
    assert removed.status == "fail"
    assert [r.subject for r in removed.all_reasons] == ["Node k3s-agent-nbg1-abc"]
    assert "embedded in k3s" in removed.all_reasons[0].message
    served = run_gate(cluster, {}).condition("services-served-now")
    agent = [r for r in served.all_reasons if r.subject == "Node k3s-agent-nbg1-abc"]
    assert [r.kind for r in agent] == ["unknown"] and "embedded in k3s" in agent[0].message


def test_the_scan_reports_what_it_inferred_per_node() -> None:
    cluster = shape("k3s-embedded")
    nodes = [NodeState(n.name, "bundle", MappingProxyType({})) for n in cluster.nodes]
    result = run_checks(all_checks(), cluster, nodes)
    assert result.service_proxies == {
        "ks-00": "kube-proxy on ks-00: embedded in k3s (node version v1.30.5+k3s1; --kube-proxy-arg --proxy-mode=ipvs)"}


def _kube_system_objects(cluster: ClusterState, *objects: dict) -> ClusterState:  # type: ignore[type-arg]
    """`cluster` (kube-proxy removed) plus objects parsed from the manifests quoted in the test."""
    from kpdoctor.cluster.parse import parse_configmap, parse_daemonset

    daemonsets = [parse_daemonset(o) for o in objects if o["kind"] == "DaemonSet"]
    configmaps = [parse_configmap(o, source="test") for o in objects if o["kind"] == "ConfigMap"]
    return replace(cluster, daemonsets=(*cluster.daemonsets, *daemonsets),
                   configmaps=(*cluster.configmaps, *configmaps))


def _kube_router(args: list[str]) -> dict:  # type: ignore[type-arg]
    return {"kind": "DaemonSet", "metadata": {"namespace": "kube-system", "name": "kube-router",
                                              "labels": {"k8s-app": "kube-router"}},
            "spec": {"template": {"spec": {"containers": [{"name": "kube-router", "args": args}]}}}, "status": {}}


def test_kube_router_and_antrea_replacements_from_their_manifests() -> None:
    """Args as in kube-router's kubeadm-kuberouter-all-features manifest and its `--help` ("--run-service-proxy
    ... true by default"); the ConfigMap as in Antrea's "deploy without kube-proxy" doc. The objects around those
    lines are hand-made."""
    from tests.support.checks import without_kube_proxy

    base, _ = load_bundle("B1-healthy")
    base = without_kube_proxy(base)
    on = _kube_system_objects(base, _kube_router(["--run-router=true", "--run-firewall=true",
                                                  "--run-service-proxy=true"]))
    assert decide(on, "edge-1").implementer == "kube-router service proxy"
    default = _kube_system_objects(base, _kube_router(["--run-router=true", "--run-firewall=true"]))
    assert "true by default" in decide(default, "edge-1").evidence[0]
    off = _kube_system_objects(base, _kube_router(["--run-router=false", "--run-firewall=true",
                                                   "--run-service-proxy=false"]))
    assert decide(off, "edge-1").kind != REPLACED
    antrea = _kube_system_objects(base, {"kind": "ConfigMap", "metadata": {"namespace": "kube-system",
                                                                          "name": "antrea-config"},
                                         "data": {"antrea-agent.conf": 'kubeAPIServerOverride: "10.81.0.1:6444"\n'
                                                  "antreaProxy:\n  proxyAll: true\n"}})
    sp = decide(antrea, "edge-1")
    assert sp.kind == REPLACED and sp.implementer == "Antrea proxy (proxyAll)"
