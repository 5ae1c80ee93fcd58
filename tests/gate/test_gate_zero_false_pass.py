"""Zero false passes: take a passing cluster, remove any one precondition, and the gate must not pass.

Exhaustive, not sampled: every precondition in the list below, every frontend of every agent's service table
on every node, and every backend of every frontend, for Cilium 1.14 and 1.18 shapes. Each removal must fail
the gate *and name* what was removed (the condition's subject, or the Service in the coverage condition).

A "frontend" here is the reference proxier's unit: ClusterIP/LoadBalancer/externalIP entries by address, and
for NodePort the set of entries (0.0.0.0 surrogate and node IP) that implement `*:nodePort` in one scope —
Cilium serves a NodePort from either entry, so removing only one of the two does not stop the Service (that
is covered by the backend removals, which hit each entry separately).

Cilium cannot run on this machine: agent status and service tables are the hand-built shapes of
tests/fixtures/cilium; the cluster is the real B1-healthy capture.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kpdoctor.cluster.state import ClusterState
from kpdoctor.gate import run_gate
from kpdoctor.node.state import NodeState
from tests.support import gate

State = tuple[ClusterState, dict[str, NodeState]]
Mutation = Callable[[ClusterState, dict[str, NodeState]], State]


@pytest.fixture(scope="module", params=["1.14", "1.18"])
def passing(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> State:
    state = gate.load(gate.build_bundle(tmp_path_factory.mktemp("zfp"), version=request.param))
    assert run_gate(*state).verdict == "pass"
    return state


def _status_edit(node: str, fn: Callable[[dict[str, Any]], None]) -> Mutation:
    def mutate(c: ClusterState, n: dict[str, NodeState]) -> State:
        fact = n[node].facts.get(gate.STATUS)
        try:
            doc = json.loads(fact.content or "") if fact is not None else None
        except ValueError:
            doc = None
        if not isinstance(doc, dict) or not isinstance(doc.get("kube-proxy-replacement"), dict):
            return c, n  # an earlier removal already took the status away: nothing left to edit
        return c, gate.edit_json_fact(n, node, gate.STATUS, lambda d: (fn(d), d)[1])
    return mutate


def _feature_off(node: str, feature: str) -> Mutation:
    return _status_edit(node, lambda d: d["kube-proxy-replacement"]["features"].__setitem__(feature, {}))


def _cfg(**changes: str | None) -> Mutation:
    return lambda c, n: (gate.edit_cilium_config(c, **{k.replace("_", "-"): v for k, v in changes.items()}), n)


def _pods(fn: Callable[[Any], Any]) -> Mutation:
    return lambda c, n: (gate.edit_pods(c, fn), n)


# (name, mutation, condition id that must not pass, text its reasons must contain)
PRECONDITIONS: list[tuple[str, Mutation, str, str]] = [
    ("kpr false", _cfg(kube_proxy_replacement="false"), "replacement-configured", "kube-proxy-replacement"),
    ("kpr partial", _cfg(kube_proxy_replacement="partial"), "replacement-configured", "'partial'"),
    ("kpr probe", _cfg(kube_proxy_replacement="probe"), "replacement-configured", "'probe'"),
    ("kpr unset", _cfg(kube_proxy_replacement=None), "replacement-configured", "not set"),
    ("cilium-config gone", lambda c, n: (gate.drop_configmap(c, "cilium-config"), n), "replacement-configured",
     "cilium-config"),
    ("service host unset", _cfg(k8s_service_host=None), "apiserver-direct", "k8s-service-host"),
    ("service port unset", _cfg(k8s_service_port=None), "apiserver-direct", "k8s-service-port"),
    ("service host = kubernetes ClusterIP", _cfg(k8s_service_host="10.96.0.1", k8s_service_port="443"),
     "apiserver-direct", "default/kubernetes"),
    ("health-check nodeport off", _cfg(enable_health_check_nodeport="false"), "service-coverage",
     "storefront/gateway"),
    ("service-proxy-name set", _cfg(k8s_service_proxy_name="cilium"), "service-coverage", "k8s-service-proxy-name"),
    ("ipv4 off", _cfg(enable_ipv4="false"), "service-coverage", "enable-ipv4"),
]
for _node, _pod in (("edge-1", "cilium-8xq2m"), ("edge-2", "cilium-tw6fp")):
    PRECONDITIONS += [
        (f"agent pod gone on {_node}", _pods(lambda p, name=_pod: None if p.name == name else p),
         "agents-ready", _node),
        (f"agent not ready on {_node}", _pods(lambda p, name=_pod: replace(p, ready=False) if p.name == name else p),
         "agents-ready", _node),
        (f"agent pending on {_node}", _pods(lambda p, name=_pod: replace(p, phase="Pending") if p.name == name else p),
         "agents-ready", _node),
        (f"status missing on {_node}", lambda c, n, node=_node: (c, gate.set_fact(n, node, gate.STATUS, None)),
         "agents-kpr-mode", _node),
        (f"status garbled on {_node}", lambda c, n, node=_node: (c, gate.set_fact(n, node, gate.STATUS, "[1, 2]")),
         "agents-kpr-mode", _node),
        (f"mode False on {_node}", _status_edit(_node, lambda d: d["kube-proxy-replacement"].__setitem__("mode", "False")),
         "agents-kpr-mode", _node),
        (f"mode empty on {_node}", _status_edit(_node, lambda d: d["kube-proxy-replacement"].pop("mode")),
         "agents-kpr-mode", _node),
        (f"KPR object gone on {_node}", _status_edit(_node, lambda d: d.pop("kube-proxy-replacement")),
         "agents-kpr-mode", _node),
        (f"agent unhealthy on {_node}", _status_edit(_node, lambda d: d["cilium"].__setitem__("state", "Failure")),
         "agents-kpr-mode", _node),
        (f"agent cut from API on {_node}",
         _status_edit(_node, lambda d: d["kubernetes"].__setitem__("state", "Warning")), "agents-kpr-mode", _node),
        (f"unknown version on {_node}",
         _status_edit(_node, lambda d: d["cilium"].__setitem__("msg", "1.13.18 (v1.13.18-33a4d5a2)")),
         "agents-kpr-mode", "1.13.18"),
        (f"unparseable version on {_node}", _status_edit(_node, lambda d: d["cilium"].__setitem__("msg", "OK")),
         "agents-kpr-mode", _node),
        (f"nodePort off on {_node}", _feature_off(_node, "nodePort"), "service-coverage", "storefront/checkout"),
        (f"socketLB off on {_node}", _feature_off(_node, "socketLB"), "service-coverage", "storefront/catalog"),
        (f"affinity off on {_node}", _feature_off(_node, "sessionAffinity"), "service-coverage",
         "storefront/sessions"),
        (f"service table garbled on {_node}", lambda c, n, node=_node: (c, gate.set_fact(n, node, gate.TABLE, "{}")),
         "service-coverage", _node),
        (f"Node NotReady {_node}", lambda c, n, node=_node: (replace(c, nodes=tuple(
            replace(x, ready=False) if x.name == node else x for x in c.nodes)), n), "nodes-ready", _node),
    ]


@pytest.mark.parametrize(("name", "mutation", "cid", "text"), PRECONDITIONS, ids=[p[0] for p in PRECONDITIONS])
def test_removing_any_precondition_never_passes(passing: State, name: str, mutation: Mutation, cid: str,
                                                text: str) -> None:
    result = run_gate(*mutation(*passing))
    assert result.verdict != "pass", name
    assert result.exit_code in (1, 3)
    cond = result.condition(cid)
    assert cond.status != "pass", f"{name}: {cid} passed"
    named = "\n".join(f"{r.subject}: {r.message}" for r in cond.all_reasons)
    assert text in named, f"{name}: {text!r} not in\n{named}"


def _groups(entries: list[dict[str, Any]]) -> dict[tuple[Any, ...], list[int]]:
    groups: dict[tuple[Any, ...], list[int]] = {}
    for i, entry in enumerate(entries):
        spec = entry["status"]["realized"]
        fe = spec["frontend-address"]
        kind = spec["flags"]["type"]
        addr = "*" if kind == "NodePort" else fe["ip"]
        groups.setdefault((kind, addr, fe["port"], fe["protocol"], fe.get("scope", "external")), []).append(i)
    return groups


def _table(nodes: dict[str, NodeState], node: str) -> list[dict[str, Any]]:
    return json.loads(nodes[node].facts[gate.TABLE].content or "[]")


def _failing_services(result: Any) -> set[str]:
    return {c.name.removeprefix("Service ") for c in result.condition("service-coverage").cases if c.status == "fail"}


def test_removing_any_frontend_fails_naming_its_service(passing: State) -> None:
    cluster, nodes = passing
    checked = 0
    for node in gate.NODES:
        entries = _table(nodes, node)
        for key, indexes in _groups(entries).items():
            flags = entries[indexes[0]]["status"]["realized"]["flags"]
            service = f"{flags['namespace']}/{flags['name']}"
            kept = [e for i, e in enumerate(entries) if i not in indexes]
            result = run_gate(cluster, gate.set_fact(nodes, node, gate.TABLE, json.dumps(kept)))
            assert result.verdict == "fail", (node, key)
            assert _failing_services(result) == {service}, (node, key)
            checked += 1
    assert checked >= 24  # every ClusterIP, NodePort, LB (both scopes) frontend on both nodes


def test_removing_any_backend_fails_naming_its_service(passing: State) -> None:
    cluster, nodes = passing
    checked = 0
    for node in gate.NODES:
        entries = _table(nodes, node)
        for i, entry in enumerate(entries):
            spec = entry["status"]["realized"]
            for j in range(len(spec["backend-addresses"])):
                doc = json.loads(json.dumps(entries))
                for part in ("spec", "status"):
                    target = doc[i]["spec"] if part == "spec" else doc[i]["status"]["realized"]
                    del target["backend-addresses"][j]
                result = run_gate(cluster, gate.set_fact(nodes, node, gate.TABLE, json.dumps(doc)))
                assert result.verdict == "fail", (node, i, j)
                assert _failing_services(result) == {f"{spec['flags']['namespace']}/{spec['flags']['name']}"}
                checked += 1
    assert checked >= 40


def test_marking_any_backend_not_active_fails(passing: State) -> None:
    """A backend in maintenance/quarantine serves nothing: same as missing."""
    cluster, nodes = passing
    entries = _table(nodes, "edge-1")
    for i, entry in enumerate(entries):
        for j, _ in enumerate(entry["status"]["realized"]["backend-addresses"]):
            doc = json.loads(json.dumps(entries))
            doc[i]["status"]["realized"]["backend-addresses"][j]["state"] = "maintenance"
            assert run_gate(cluster, gate.set_fact(nodes, "edge-1", gate.TABLE, json.dumps(doc))).verdict == "fail", (i, j)


_STATE: dict[str, State] = {}


def _passing_once(tmp_path_factory: pytest.TempPathFactory) -> State:
    if "1.18" not in _STATE:
        _STATE["1.18"] = gate.load(gate.build_bundle(tmp_path_factory.mktemp("zfp-h"), version="1.18"))
    return _STATE["1.18"]


@pytest.fixture(scope="module")
def base_1_18(tmp_path_factory: pytest.TempPathFactory) -> Callable[[], State]:
    state = _passing_once(tmp_path_factory)
    return lambda: state  # a callable keeps hypothesis from printing the whole cluster in its report


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(picks=st.sets(st.integers(min_value=0, max_value=len(PRECONDITIONS) - 1), min_size=1, max_size=4))
def test_any_combination_of_removals_never_passes(base_1_18: Callable[[], State], picks: set[int]) -> None:
    state = base_1_18()
    for index in sorted(picks):
        state = PRECONDITIONS[index][1](*state)
    assert run_gate(*state).verdict != "pass"
