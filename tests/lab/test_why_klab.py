"""`kpdoctor why` against the lab's real Kubernetes: a real etcd + kube-apiserver holds the Services, Pods and
EndpointSlices, and a real kube-proxy v1.37 in each node namespace writes the rules from them. kpdoctor's own CLI
reads both (`--transport local` inside a node's namespace, and once without node access).

The lab runs no kubelet, scheduler or kube-controller-manager, so the test plays their parts through the real API:
Pod status is written through the status subresource as the kubelet writes it, and the EndpointSlices are the ones
the EndpointSlice controller would write for those pods (ready endpoints only for ready pods, none for a port name
no container declares). One cluster serves the whole module; the stale-node test runs last because it kills a
kube-proxy.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from kpdoctor.lab import kcluster, procs
from kpdoctor.lab.kapi import Api
from kpdoctor.lab.kcluster import ClusterState
from tests.support.klab import admin_api, endpointslice, kpdoctor, lab_cluster, save, service, wait_for_rules

pytestmark = pytest.mark.root("etcd", "nft", "curl")

NS = "lab"


def _pod(name: str, labels: dict[str, str], node: str, *, port_name: str = "http") -> dict[str, Any]:
    container = {"name": "app", "image": "registry.k8s.io/pause:3.10",
                 "ports": [{"name": port_name, "containerPort": 8080, "protocol": "TCP"}]}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS, "labels": labels},
            "spec": {"nodeName": node, "containers": [container]}}  # fmt: skip


def _pod_status(ip: str, node_ip: str, *, ready: bool) -> dict[str, Any]:
    """The status a kubelet writes for a running pod whose readiness probe passes (or fails)."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    flag = "True" if ready else "False"
    reason = {} if ready else {"reason": "ContainersNotReady", "message": "containers with unready status: [app]"}
    return {
        "phase": "Running", "hostIP": node_ip, "podIP": ip, "podIPs": [{"ip": ip}], "startTime": now,
        "conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
                       {"type": "Initialized", "status": "True", "lastTransitionTime": now},
                       {"type": "ContainersReady", "status": flag, "lastTransitionTime": now, **reason},
                       {"type": "Ready", "status": flag, "lastTransitionTime": now, **reason}],
        "containerStatuses": [{"name": "app", "ready": ready, "restartCount": 0, "started": True,
                               "image": "registry.k8s.io/pause:3.10", "imageID": "",
                               "state": {"running": {"startedAt": now}}}],
    }  # fmt: skip


def _crashing_status(ip: str, node_ip: str) -> dict[str, Any]:
    """A kubelet's status for a pod whose only container keeps exiting 1 (CrashLoopBackOff)."""
    status = _pod_status(ip, node_ip, ready=False)
    status["containerStatuses"][0].update({
        "restartCount": 7, "started": False,
        "state": {"waiting": {"reason": "CrashLoopBackOff",
                              "message": "back-off 5m0s restarting failed container=app"}},
        "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "startedAt": status["startTime"],
                                     "finishedAt": status["startTime"]}}})  # fmt: skip
    return status


def _unschedulable_status() -> dict[str, Any]:
    """The scheduler's status for a pod it cannot place (no kubelet has it: no IP, no container status)."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {"phase": "Pending", "conditions": [{
        "type": "PodScheduled", "status": "False", "reason": "Unschedulable", "lastTransitionTime": now,
        "message": "0/2 nodes are available: 2 Insufficient cpu. preemption: 0/2 nodes are available: "
                   "2 No preemption victims found for incoming pod."}]}  # fmt: skip


def _run_pod(api: Api, name: str, labels: dict[str, str], state: ClusterState, index: int, *, ready: bool = True,
             port_name: str = "http", slot: int | None = None, host: int = 0) -> str:  # fmt: skip
    """A Pod object on node `index`: its IP is a lab pod's (`slot`, where real rules must reach it) or an unused
    address `host` in the node's pod CIDR (a pod no rule sends traffic to)."""
    node = state.nodes[index]
    ip = node.pods[slot].ip if slot is not None else f"{node.pods[0].ip.rsplit('.', 1)[0]}.{host}"
    api.apply(_pod(name, labels, node.name, port_name=port_name))
    api.set_status("Pod", name, _pod_status(ip, node.ip, ready=ready), namespace=NS)
    return ip


def _slice(svc: str, endpoints: list[tuple[str, str, bool]]) -> dict[str, Any]:
    obj = endpointslice(svc, [(ip, node) for ip, node, _ in endpoints], namespace=NS)
    for ep, (_, _, ready) in zip(obj["endpoints"], endpoints, strict=True):
        ep["conditions"] = {"ready": ready, "serving": ready, "terminating": False}
    return obj


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterState]:
    with lab_cluster(tmp_path_factory.mktemp("klab"), nodes=2) as state:
        api = admin_api(state)
        n0, n1 = state.nodes[0].name, state.nodes[1].name
        # healthy: two ready pods on two nodes, their slice
        a = _run_pod(api, "web-0", {"app": "web"}, state, 0, slot=0)
        b = _run_pod(api, "web-1", {"app": "web"}, state, 1, slot=0)
        api.apply(service("web", node_port=30080))
        api.apply(_slice("web", [(a, n0, True), (b, n1, True)]))
        # a selector with a typo: pods say app=payment, the Service asks for app=payments
        _run_pod(api, "payment-0", {"app": "payment"}, state, 0, host=50)
        api.apply({**service("payment"), "spec": {**service("payment")["spec"], "selector": {"app": "payments"}}})
        # matching pods whose readiness probe fails: the controller lists them not ready
        c = _run_pod(api, "slow-0", {"app": "slow"}, state, 1, ready=False, host=51)
        api.apply(service("slow"))
        api.apply(_slice("slow", [(c, n1, False)]))
        # targetPort names a port no container declares (the pods name theirs "http")
        _run_pod(api, "named-0", {"app": "named"}, state, 0, host=52, port_name="http")
        named = service("named")
        named["spec"]["ports"][0]["targetPort"] = "web"
        api.apply(named)
        # selector-less, nobody wrote EndpointSlices
        manual = service("manual")
        del manual["spec"]["selector"]
        api.apply(manual)
        # headless and ExternalName
        f = _run_pod(api, "headless-0", {"app": "headless"}, state, 0, host=53)
        headless = service("headless")
        headless["spec"]["clusterIP"] = "None"
        api.apply(headless)
        api.apply(_slice("headless", [(f, n0, True)]))
        api.apply({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "ext", "namespace": NS},
                   "spec": {"type": "ExternalName", "externalName": "db.example.com"}})  # fmt: skip
        # a crash-looping container: the controller lists the pod not ready
        g = _run_pod(api, "crash-0", {"app": "crash"}, state, 1, ready=False, host=54)
        api.set_status("Pod", "crash-0", _crashing_status(g, state.nodes[1].ip), namespace=NS)
        api.apply(service("crash"))
        api.apply(_slice("crash", [(g, n1, False)]))
        # a pod the scheduler cannot place: no node, no IP, so no endpoint
        pend = _pod("pend-0", {"app": "pend"}, n0)
        del pend["spec"]["nodeName"]
        api.apply(pend)
        api.set_status("Pod", "pend-0", _unschedulable_status(), namespace=NS)
        api.apply(service("pend"))
        # a ready pod but no EndpointSlice: this lab runs no kube-controller-manager, as when it is down
        _run_pod(api, "lag-0", {"app": "lag"}, state, 0, host=55)
        api.apply(service("lag"))
        # externalTrafficPolicy: Local with its only endpoint on node 0
        h = _run_pod(api, "local-0", {"app": "local"}, state, 0, slot=0)
        local = service("local", node_port=30081)
        local["spec"]["externalTrafficPolicy"] = "Local"
        api.apply(local)
        api.apply(_slice("local", [(h, n0, True)]))
        # internalTrafficPolicy: Local with its only endpoint on node 0
        i = _run_pod(api, "inner-0", {"app": "inner"}, state, 0, slot=0)
        inner = service("inner")
        inner["spec"]["internalTrafficPolicy"] = "Local"
        api.apply(inner)
        api.apply(_slice("inner", [(i, n0, True)]))
        # a UDP Service port whose targetPort names the pods' TCP port
        _run_pod(api, "dns-0", {"app": "dns"}, state, 0, host=56)
        udp = service("dns")
        udp["spec"]["ports"][0].update({"protocol": "UDP", "targetPort": "http"})
        api.apply(udp)
        # a selector Service whose EndpointSlice another writer manages
        j = _run_pod(api, "owned-0", {"app": "owned"}, state, 1, slot=0)
        api.apply(service("owned"))
        owned = _slice("owned", [(j, n1, True)])
        owned["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] = "operator.example.com"
        api.apply(owned)
        # for the stale test: two ready endpoints on two nodes
        d = _run_pod(api, "stale-0", {"app": "stale"}, state, 0, slot=1)
        e = _run_pod(api, "stale-1", {"app": "stale"}, state, 1, slot=1)
        api.apply(service("stale"))
        api.apply(_slice("stale", [(d, n0, True), (e, n1, True)]))
        for svc in ("web", "stale", "payment", "slow", "crash", "pend", "lag", "local", "inner", "owned"):
            wait_for_rules(state, f"{NS}/{svc}:http")
        yield state


def _why(state: ClusterState, svc: str, node_index: int | None = 0, *extra: str) -> tuple[int, dict[str, Any]]:
    args = ["why", f"svc/{NS}/{svc}", "--kubeconfig", state.kubeconfig, "-o", "json", *extra]
    netns = None
    if node_index is not None:
        node = state.nodes[node_index]
        args += ["--transport", "local", "--nodes", node.name]
        netns = node.netns
    proc = kpdoctor(*args, netns=netns)
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    try:
        data: dict[str, Any] = json.loads(proc.stdout)
    except ValueError:
        raise AssertionError(f"not JSON (exit {proc.returncode}): {proc.stdout[-800:]}{proc.stderr[-800:]}") from None
    assert data["exit_code"] == proc.returncode
    return proc.returncode, data


def _codes(data: dict[str, Any]) -> list[str]:
    return [c["code"] for c in data["causes"]]


@pytest.mark.parametrize("index", [0, 1])
def test_healthy_service_is_reachable_from_the_node(lab: ClusterState, index: int) -> None:
    code, data = _why(lab, "web", index)
    assert code == 0, data
    assert data["causes"] == [] or all(c["severity"] == "note" for c in data["causes"]), data["causes"]
    node, other = lab.nodes[index].name, lab.nodes[1 - index].name
    assert [n["node"] for n in data["nodes"]] == [node], data["nodes"]
    assert data["nodes"][0]["status"] == "ok", data["nodes"]
    # only this node's rules were read: the verdict must not claim the other node (found as a real bug here)
    assert "is reachable from every node checked (1 node" in data["verdict"], data["verdict"]
    assert "1 node(s) not evaluated" in data["verdict"] and data["nodes_not_checked"] == [other]


def test_healthy_service_without_node_access(lab: ClusterState) -> None:
    code, data = _why(lab, "web", None)
    assert code == 0, data
    assert "what the nodes do with it is not known" in data["verdict"], data["verdict"]
    assert data["nodes"] == []


def test_selector_matches_no_pods_shows_nearest_labels(lab: ClusterState) -> None:
    code, data = _why(lab, "payment")
    assert code == 1
    assert _codes(data)[0] == "selector-matches-no-pods", data["causes"]
    cause = data["causes"][0]
    assert "app=payments" in cause["headline"]
    assert any("payment-0" in line and "app=payment" in line for line in cause["evidence"]), cause["evidence"]
    assert "matches no pod" in data["verdict"]


def test_pods_exist_but_none_ready(lab: ClusterState) -> None:
    code, data = _why(lab, "slow", 1)
    assert code == 1
    assert _codes(data)[0] == "no-ready-pods", data["causes"]
    assert "slow-0" in data["causes"][0]["headline"] and "none is ready" in data["verdict"]


def test_crash_looping_pod(lab: ClusterState) -> None:
    code, data = _why(lab, "crash", 1)
    assert code == 1
    assert _codes(data)[0] == "no-ready-pods", data["causes"]
    cause = data["causes"][0]
    assert "container app is CrashLoopBackOff (restarted 7 times, last exit code 1 (Error))" in cause["headline"]
    assert "crashing container" in data["fix"]
    assert any("logs crash-0 --previous" in c for c in data["commands"]), data["commands"]


def test_unschedulable_pod(lab: ClusterState) -> None:
    code, data = _why(lab, "pend", None)  # without node access: API-level causes still answer
    assert code == 1
    assert _codes(data)[0] == "no-ready-pods", data["causes"]
    assert "Pending, not scheduled (Unschedulable): 0/2 nodes are available: 2 Insufficient cpu" in \
        data["causes"][0]["headline"]
    assert data["fix"].startswith("Give the scheduler somewhere to put the pods")


def test_ready_pod_without_endpointslice_blames_the_controller(lab: ClusterState) -> None:
    code, data = _why(lab, "lag")
    assert code == 1
    assert _codes(data)[0] == "slices-lag-pods", data["causes"]
    assert "EndpointSlice controller" in data["verdict"] and lab.nodes[0].pods[0].ip.rsplit(".", 1)[0] + ".55" in \
        data["verdict"]


def test_external_policy_local_without_endpoint_on_the_entry_node(lab: ClusterState) -> None:
    entry, home = lab.nodes[1].name, lab.nodes[0].name
    code, data = _why(lab, "local", 1, "--from", f"node/{entry}")
    assert code == 1
    assert _codes(data)[0] == "external-policy-local", data["causes"]
    assert f"no ready endpoint on {entry}" in data["verdict"]
    assert data["causes"][0]["evidence"] == [f"nodes with a ready endpoint: {home}"]
    code, data = _why(lab, "local", 0, "--from", f"node/{home}")
    assert code == 0, data["causes"]  # from the endpoint's node it works; the other node stays a note
    assert [(c["code"], c["severity"]) for c in data["causes"]] == [("external-policy-local", "note")]
    assert "reachable for node" in data["verdict"], data["verdict"]


def test_internal_policy_local_from_a_pod_on_another_node(lab: ClusterState) -> None:
    code, data = _why(lab, "inner", 1, "--from", f"pod/{NS}/web-1")
    assert code == 1
    assert _codes(data)[0] == "internal-policy-local", data["causes"]
    assert f"no ready endpoint on {lab.nodes[1].name}, the client's node" in data["verdict"], data["verdict"]
    assert data["client"]["node"] == lab.nodes[1].name


def test_protocol_mismatch_on_a_named_target_port(lab: ClusterState) -> None:
    code, data = _why(lab, "dns")
    assert code == 1
    assert _codes(data)[0] == "protocol-mismatch", data["causes"]
    assert "the container port named 'http' is TCP, the Service port is UDP" in data["verdict"], data["verdict"]


def test_console_output_of_a_narrowed_healthy_run(lab: ClusterState) -> None:
    node, other = lab.nodes[0], lab.nodes[1]
    proc = kpdoctor("why", f"svc/{NS}/web", "--kubeconfig", lab.kubeconfig, "--transport", "local", "--nodes",
                    node.name, netns=node.netns)  # fmt: skip
    assert proc.returncode == 0 and proc.stderr == "", proc.stdout[-1500:] + proc.stderr[-1500:]
    verdict = next(line for line in proc.stdout.splitlines() if line.startswith("VERDICT"))
    assert "reachable from every node checked" in verdict
    not_eval = proc.stdout.split("NOT EVALUATED", 1)[1]
    assert other.name in not_eval


def test_slices_not_managed_by_the_controller_is_a_note(lab: ClusterState) -> None:
    code, data = _why(lab, "owned", 1)
    assert code == 0, data["causes"]
    assert [(c["code"], c["severity"]) for c in data["causes"]] == [("slices-not-managed-by-controller", "note")]
    assert "managed by operator.example.com" in data["causes"][0]["headline"]
    assert data["nodes"][0]["status"] == "ok", data["nodes"]


def test_target_port_name_not_found(lab: ClusterState) -> None:
    code, data = _why(lab, "named")
    assert code == 1
    assert "target-port-name-not-found" in _codes(data), data["causes"]
    assert "no container of its pods has a port named 'web'" in data["verdict"], data["verdict"]


def test_selector_less_service_without_slices(lab: ClusterState) -> None:
    code, data = _why(lab, "manual")
    assert code == 1
    assert _codes(data)[0] == "selector-less-without-slices", data["causes"]
    assert "no selector and no EndpointSlices" in data["verdict"]


@pytest.mark.parametrize(("svc", "cause"), [("headless", "headless"), ("ext", "external-name")])
def test_services_kube_proxy_does_not_serve(lab: ClusterState, svc: str, cause: str) -> None:
    code, data = _why(lab, svc)
    assert code == 0, data["causes"]
    assert _codes(data)[0] == cause, data["causes"]


def test_zz_kube_proxy_killed_then_endpoint_removed_names_the_stale_node(lab: ClusterState) -> None:
    """Runs last in the module: it kills node 1's kube-proxy for good."""
    dead, alive = lab.nodes[1], lab.nodes[0]
    procs.stop(kcluster.kube_proxy_proc(lab, dead.name))
    api = admin_api(lab)
    gone = dead.pods[1].ip
    # the pod on the dead node is deleted; the controller drops it from the slice
    api.delete("Pod", "stale-1", namespace=NS)
    api.apply(_slice("stale", [(alive.pods[1].ip, alive.name, True)]))
    wait_for_rules(lab, gone, present=False, nodes=[alive.name])
    assert gone in save(dead.netns, lab.mode)  # nobody removes the dead kube-proxy's rules
    code, data = _why(lab, "stale", 1)
    assert code == 1, data
    assert data["verdict"].startswith(f"svc/{NS}/stale has no healthy node among those checked: {dead.name}: stale"), \
        data["verdict"]
    assert gone in json.dumps(data["nodes"]), data["nodes"]
    code, data = _why(lab, "stale", 0)  # the live node follows the API
    assert code == 0, data
