"""`kpdoctor why`: one test per API-level cause, each asserting the headline cause.

Built from RECORDED REAL API objects, not from a real apiserver at test time (the lab's real-apiserver issue has
not landed): the Services, Pods, EndpointSlices and Nodes of tests/fixtures/bundles/B2-stale-endpoint (read back
from a real kube-apiserver v1.36.2; its README says what is real and what was modelled) and of the
tests/fixtures/kube-proxy-v1.36 captures (V1: headless, ExternalName, a Service without EndpointSlice; V3:
terminating endpoints with ClientIP affinity; V6: zone hints). Where a cause needs a state the recording does not
hold, the test changes the recorded objects the way the named kubectl action / kubelet would and says so in
`_mutate`'s comment; status shapes copied in are the kubelet's / scheduler's own (cited where used).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kpdoctor.cluster.snapshot import load_objects
from kpdoctor.cluster.state import ClusterState
from kpdoctor.why.api import api_causes
from kpdoctor.why.model import Cause, Client
from kpdoctor.why.target import parse_from, parse_target, resolve_client

FIX = Path(__file__).resolve().parents[1] / "fixtures"
B2 = FIX / "bundles" / "B2-stale-endpoint" / "bundle" / "cluster"
V = FIX / "kube-proxy-v1.36"
KINDS = ("services", "endpointslices", "pods", "nodes")


def _objects(cluster_dir: Path) -> dict[str, list[dict[str, Any]]]:
    out = {}
    for kind in KINDS:
        path = cluster_dir / f"{kind}.json"
        out[kind] = json.loads(path.read_text())["items"] if path.is_file() else []
    return out


def _state(objs: dict[str, list[dict[str, Any]]], namespaces: tuple[str, ...]) -> ClusterState:
    pairs = [(o, kind) for kind in KINDS for o in objs[kind]]
    return load_objects(pairs, source="test", pod_namespaces=namespaces)


def _named(items: list[dict[str, Any]], prefix: str) -> list[dict[str, Any]]:
    return [o for o in items if o["metadata"]["name"].startswith(prefix)]


def causes_for(cluster_dir: Path, service: str, mutate: Callable[[dict[str, Any]], None] | None = None,
               client: str | None = None) -> list[Cause]:
    objs = copy.deepcopy(_objects(cluster_dir))
    if mutate is not None:
        mutate(objs)
    target = parse_target(service)
    who = parse_from(client)
    namespaces = (target.namespace,) + ((who.value.split("/")[0],) if who.kind == "pod" else ())
    cluster = _state(objs, namespaces)
    found, _ = api_causes(cluster, target, resolve_client(who, cluster))
    return found


def codes(causes: list[Cause]) -> list[str]:
    return [c.code for c in causes]


def first_blocking(causes: list[Cause]) -> Cause:
    return next(c for c in causes if c.severity == "blocking")


# ---- healthy ---------------------------------------------------------------------------------------------
def test_recorded_healthy_service_has_no_cause() -> None:
    assert causes_for(B2, "svc/payments/ledger") == []


# ---- the Service itself ------------------------------------------------------------------------------------
def test_service_not_found_suggests_the_near_name() -> None:
    cause = first_blocking(causes_for(B2, "svc/payments/ledgr"))
    assert cause.code == "service-not-found"
    assert "did you mean ledger" in cause.headline


def test_external_name_is_served_by_dns_not_kube_proxy() -> None:
    # V1 platform/billing-ext: a real ExternalName Service (billing.example.com)
    (cause,) = causes_for(V / "V1-basic-clusterip" / "cluster", "svc/platform/billing-ext")
    assert cause.code == "external-name"
    assert "CoreDNS" in cause.headline and "billing.example.com" in cause.headline


def test_headless_service_says_who_serves_it() -> None:
    # V1 platform/db-headless: clusterIP None with an EndpointSlice (kube-proxy writes no rule for it)
    found = causes_for(V / "V1-basic-clusterip" / "cluster", "svc/platform/db-headless")
    assert found[0].code == "headless"
    assert "cluster DNS returns the ready endpoints' pod IPs" in found[0].headline


def test_port_not_on_the_service() -> None:
    cause = first_blocking(causes_for(B2, "svc/payments/ledger:grpc"))
    assert cause.code == "port-not-found"
    assert "http=80/TCP" in cause.evidence[0]


# ---- selector -> pods ----------------------------------------------------------------------------------------
def test_selector_matches_no_pods_shows_the_nearest_labels() -> None:
    def mutate(objs: dict[str, Any]) -> None:  # `kubectl patch svc ledger` to a mistyped selector app=ledgers
        _named(objs["services"], "ledger")[0]["spec"]["selector"] = {"app": "ledgers"}

    cause = first_blocking(causes_for(B2, "svc/payments/ledger", mutate))
    assert cause.code == "selector-matches-no-pods"
    assert "selector app=ledgers vs pods app=ledger" in cause.headline
    assert any("ledger-fe14010b4f-d5vch" in e for e in cause.evidence)


def _ledger_pods(objs: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in objs["pods"] if p["metadata"]["labels"].get("app") == "ledger"]


def test_no_ready_pod_readiness_probe_failing() -> None:
    def mutate(objs: dict[str, Any]) -> None:
        # the status the kubelet writes while a readiness probe fails: container running, ready=false, pod condition
        # Ready=False reason ContainersNotReady (the shape of kubernetes/kubernetes#138889 and of B2's own
        # kube-proxy-76gg5 conditions); the controller then lists the pods as not ready
        for pod in _ledger_pods(objs):
            st = pod["status"]
            st["containerStatuses"][0]["ready"] = False
            for cond in st["conditions"]:
                if cond["type"] in ("Ready", "ContainersReady"):
                    cond.update(status="False", reason="ContainersNotReady",
                                message="containers with unready status: [app]")
        for ep in _named(objs["endpointslices"], "ledger")[0]["endpoints"]:
            ep["conditions"] = {"ready": False, "serving": False, "terminating": False}

    cause = first_blocking(causes_for(B2, "svc/payments/ledger", mutate))
    assert cause.code == "no-ready-pods"
    assert "readiness probe of container app is failing" in cause.headline
    assert "ContainersNotReady" in cause.headline


def test_no_ready_pod_crashloopbackoff() -> None:
    def mutate(objs: dict[str, Any]) -> None:
        # B2's recorded CrashLoopBackOff status (pod kube-system/kube-proxy-76gg5, exit 137) on the ledger pods
        crashed = next(p for p in objs["pods"] if p["metadata"]["name"] == "kube-proxy-76gg5")["status"]
        for pod in _ledger_pods(objs):
            status = copy.deepcopy(crashed)
            status["containerStatuses"][0]["name"] = "app"
            status["podIP"] = pod["status"]["podIP"]
            pod["status"] = status
        for ep in _named(objs["endpointslices"], "ledger")[0]["endpoints"]:
            ep["conditions"] = {"ready": False, "serving": False, "terminating": False}

    cause = first_blocking(causes_for(B2, "svc/payments/ledger", mutate))
    assert cause.code == "no-ready-pods"
    assert "CrashLoopBackOff" in cause.headline and "exit code 137" in cause.headline
    assert any("logs" in c and "--previous" in c for c in cause.commands)


def test_no_ready_pod_pending_unschedulable() -> None:
    def mutate(objs: dict[str, Any]) -> None:
        # what kube-scheduler writes for a pod it cannot place (condition PodScheduled=False, reason Unschedulable,
        # its "0/N nodes are available" message); no node, no IP, so no endpoint
        for pod in _ledger_pods(objs):
            pod["spec"].pop("nodeName", None)
            pod["status"] = {"phase": "Pending", "qosClass": "BestEffort", "conditions": [{
                "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "message": "0/2 nodes are available: 2 Insufficient cpu. preemption: 0/2 nodes are available: "
                           "2 No preemption victims found for incoming pod."}]}
        objs["endpointslices"] = [s for s in objs["endpointslices"] if not s["metadata"]["name"].startswith("ledger")]

    cause = first_blocking(causes_for(B2, "svc/payments/ledger", mutate))
    assert cause.code == "no-ready-pods"
    assert "Pending, not scheduled (Unschedulable)" in cause.headline
    assert "Insufficient cpu" in cause.headline


def test_no_ready_pod_terminating() -> None:
    def mutate(objs: dict[str, Any]) -> None:  # `kubectl delete pod` with a grace period: deletionTimestamp set
        for pod in _ledger_pods(objs):
            pod["metadata"]["deletionTimestamp"] = "2026-11-26T09:10:00Z"
        for ep in _named(objs["endpointslices"], "ledger")[0]["endpoints"]:
            ep["conditions"] = {"ready": False, "serving": True, "terminating": True}

    cause = first_blocking(causes_for(B2, "svc/payments/ledger", mutate))
    assert cause.code == "no-ready-pods"
    assert "terminating" in cause.headline


# ---- ports ---------------------------------------------------------------------------------------------------
def test_target_port_name_not_in_the_pods() -> None:
    def mutate(objs: dict[str, Any]) -> None:  # Service targetPort renamed to a name no container declares
        _named(objs["services"], "ledger")[0]["spec"]["ports"][0]["targetPort"] = "web"

    cause = first_blocking(causes_for(B2, "svc/payments/ledger", mutate))
    assert cause.code == "target-port-name-not-found"
    assert "no container of its pods has a port named 'web'" in cause.headline
    assert "http:8080/TCP" in cause.evidence[0]


def test_protocol_mismatch() -> None:
    def mutate(objs: dict[str, Any]) -> None:  # the Service port switched to UDP, the pods' `http` port stays TCP
        port = _named(objs["services"], "ledger")[0]["spec"]["ports"][0]
        port["protocol"] = "UDP"

    cause = first_blocking(causes_for(B2, "svc/payments/ledger", mutate))
    assert cause.code == "protocol-mismatch"
    assert "the pods declare 8080 as TCP only, the Service forwards UDP" in cause.headline

    def by_name(objs: dict[str, Any]) -> None:  # the same with targetPort given by name: the name does not match
        mutate(objs)
        _named(objs["services"], "ledger")[0]["spec"]["ports"][0]["targetPort"] = "http"

    cause = first_blocking(causes_for(B2, "svc/payments/ledger", by_name))
    assert cause.code == "protocol-mismatch"
    assert "named 'http' is TCP, the Service port is UDP" in cause.headline


# ---- EndpointSlices ------------------------------------------------------------------------------------------
def test_selectorless_service_without_endpointslices() -> None:
    def mutate(objs: dict[str, Any]) -> None:  # the selector removed (`kubectl patch ... selector: null`)
        del _named(objs["services"], "billing")[0]["spec"]["selector"]
        objs["endpointslices"] = [s for s in objs["endpointslices"] if not s["metadata"]["name"].startswith("billing")]

    cause = first_blocking(causes_for(B2, "svc/payments/billing", mutate))
    assert cause.code == "selector-less-without-slices"


def test_endpointslices_not_managed_by_the_controller() -> None:
    # V6's EndpointSlices are real objects written by hand (managed-by fixtures.kpdoctor) for a Service with a selector
    found = causes_for(V / "V6-topology" / "cluster", "svc/geo/plain")
    note = next(c for c in found if c.code == "slices-not-managed-by-controller")
    assert "fixtures.kpdoctor" in note.headline


def test_endpointslice_lagging_the_pods() -> None:
    def mutate(objs: dict[str, Any]) -> None:
        # B2's own history: the slice as it was before the endpoint change (10.244.53.12, pod since deleted, instead
        # of 10.244.53.19) while the pods are today's: the controller has not caught up
        ep = next(e for e in _named(objs["endpointslices"], "ledger")[0]["endpoints"]
                  if e["addresses"] == ["10.244.53.19"])
        ep["addresses"] = ["10.244.53.12"]
        ep["targetRef"]["name"] = "ledger-fe14010b4f-gone1"

    found = causes_for(B2, "svc/payments/ledger", mutate)
    cause = next(c for c in found if c.code == "slices-lag-pods")
    assert cause.severity == "partial"
    assert "10.244.53.19 missing" in cause.headline and "10.244.53.12" in cause.headline


# ---- traffic policy, topology, affinity ----------------------------------------------------------------------
def test_internal_traffic_policy_local_without_endpoint_on_the_clients_node() -> None:
    def mutate(objs: dict[str, Any]) -> None:  # iTP Local on audit-udp, whose only pod runs on edge-2
        _named(objs["services"], "audit-udp")[0]["spec"]["internalTrafficPolicy"] = "Local"

    cause = first_blocking(causes_for(B2, "svc/payments/audit-udp", mutate, client="pod/payments/ledger-fe14010b4f-d5vch"))
    assert cause.code == "internal-policy-local"
    assert "edge-1" in cause.headline


def test_external_traffic_policy_local_entering_a_node_without_endpoint() -> None:
    # B2 pay-gateway: a real eTP=Local LoadBalancer whose only endpoint is on edge-1
    assert codes(causes_for(B2, "svc/payments/pay-gateway")) == ["external-policy-local"]  # a note without client
    cause = first_blocking(causes_for(B2, "svc/payments/pay-gateway", client="node/edge-2"))
    assert cause.code == "external-policy-local" and "edge-2" in cause.headline


def test_topology_hints_leave_a_zone_without_endpoints() -> None:
    def mutate(objs: dict[str, Any]) -> None:  # V6 geo/close with zone-c's endpoints hinted to zone-b instead
        for ep in _named(objs["endpointslices"], "close-")[0]["endpoints"]:
            if ep.get("zone") == "zone-c":
                ep["hints"] = {"forZones": [{"name": "zone-b"}]}

    found = causes_for(V / "V6-topology" / "cluster", "svc/geo/close", mutate)
    cause = next(c for c in found if c.code == "topology-zone-without-endpoints")
    assert "zone-c" in cause.headline and "falls back" in cause.headline


def test_topology_partial_hints_are_ignored() -> None:
    found = causes_for(V / "V6-topology" / "cluster", "svc/geo/partial-hints")  # recorded as is
    assert "topology-hints-ignored" in codes(found)


def test_session_affinity_with_terminating_endpoints() -> None:
    # V3 stateful/session-600: a real ClientIP-affinity Service (timeoutSeconds 600)
    objs_dir = V / "V3-affinity-terminating" / "cluster"

    def mutate(objs: dict[str, Any]) -> None:  # one endpoint terminating, as after `kubectl delete pod`
        ep = _named(objs["endpointslices"], "session-600")[0]["endpoints"][0]
        ep["conditions"] = {"ready": False, "serving": True, "terminating": True}

    found = causes_for(objs_dir, "svc/stateful/session-600", mutate)
    cause = next(c for c in found if c.code == "affinity-terminating")
    assert "600s" in cause.headline


def test_pods_not_collected_is_not_evaluated_not_no_pods() -> None:
    # V1 holds no Pod objects at all: "selector matches no pod" would be a false cause
    found = causes_for(V / "V1-basic-clusterip" / "cluster", "svc/shop/frontend")
    assert "selector-matches-no-pods" not in codes(found)


def test_client_is_placed_on_its_node() -> None:
    cluster = _state(_objects(B2), ("payments",))
    client = resolve_client(parse_from("pod/payments/ledger-fe14010b4f-d5vch"), cluster)
    assert client == Client("pod", "payments/ledger-fe14010b4f-d5vch", "edge-1", None)


@pytest.mark.parametrize("bad", ["svc/payments", "svc/Payments/x", "svc/a/b:0", "svc/a/b:UPPER", "x/y/z/w"])
def test_bad_target_is_an_input_error(bad: str) -> None:
    from kpdoctor.errors import InputError

    with pytest.raises(InputError):
        parse_target(bad)


def test_pods_forbidden_is_not_evaluated() -> None:
    # the live loader's gap when listing the namespace's Pods answered 403 (kpdoctor.cluster.live._workload_pods)
    from dataclasses import replace

    from kpdoctor.cluster.model import WORKLOAD_PODS_GAP, ResourceGap

    objs = _objects(B2)
    objs["pods"] = [p for p in objs["pods"] if p["metadata"]["namespace"] == "kube-system"]
    cluster = replace(_state(objs, ("payments",)), gaps=(
        ResourceGap(WORKLOAD_PODS_GAP, "forbidden (403): cannot list Pods in payments"),))
    found, not_evaluated = api_causes(cluster, parse_target("svc/payments/ledger"), Client())
    assert "selector-matches-no-pods" not in codes(found)
    assert not_evaluated == ["pods behind the selector app=ledger: forbidden (403): cannot list Pods in payments"]
