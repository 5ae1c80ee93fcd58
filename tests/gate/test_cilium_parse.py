"""Parsing Cilium's documents for 1.14-1.18 field names; anything else is "cannot prove", never a pass.

Cilium cannot run on this machine: the agent documents are the hand-built shapes of tests/fixtures/cilium/
(written from Cilium's API models, see its README), not captures.
"""

from __future__ import annotations

import json

import pytest

from kpdoctor.cilium import (
    CiliumShapeError,
    parse_agent_status,
    parse_cilium_config,
    parse_service_list,
    version_supported,
)
from kpdoctor.cluster.model import ConfigMap
from tests.support.gate import CILIUM


def _status(version: str, node: str = "edge-1") -> str:
    return (CILIUM / f"v{version}" / f"status-{node}.json").read_text()


@pytest.mark.parametrize(("version", "label"), [("1.14", "1.14.19"), ("1.16", "1.16.15"), ("1.18", "1.18.2")])
def test_known_versions_parse_with_kpr_true_and_features(version: str, label: str) -> None:
    status = parse_agent_status(_status(version), node="edge-1")
    assert status.version_label == label and status.supported
    assert status.kpr_true and status.cilium_state == "Ok" and status.kubernetes_state == "Ok"
    f = status.features
    assert (f.node_port, f.external_ips, f.host_port, f.socket_lb, f.session_affinity) == (True,) * 5
    assert (f.node_port_min, f.node_port_max) == (30000, 32767)


def test_1_13_status_is_an_unknown_version() -> None:
    status = parse_agent_status(_status("1.13"), node="edge-1")
    assert status.version_label == "1.13.18" and not status.supported
    assert status.kpr_mode == "Strict" and not status.kpr_true


def test_disabled_feature_is_an_empty_object_and_strict_leaves_mode_empty() -> None:
    """go-swagger omits `enabled: false`; the agent leaves `mode` empty for the legacy strict value."""
    doc = json.loads(_status("1.18"))
    doc["kube-proxy-replacement"]["features"]["nodePort"] = {}
    del doc["kube-proxy-replacement"]["mode"]
    status = parse_agent_status(json.dumps(doc), node="edge-1")
    assert status.features.node_port is False
    assert status.kpr_mode == "" and not status.kpr_true


@pytest.mark.parametrize("text", ["", "not json", "[]", '{"foo": 1}',
                                  '{"cilium": {"state": "Ok"}, "kube-proxy-replacement": []}',
                                  '{"cilium": {}, "kube-proxy-replacement": {"features": {"nodePort": true}}}'])
def test_unrecognised_status_raises_shape_error(text: str) -> None:
    with pytest.raises(CiliumShapeError):
        parse_agent_status(text, node="edge-1")


def test_version_range() -> None:
    assert version_supported((1, 14, 0)) and version_supported((1, 18, 9))
    assert not version_supported((1, 13, 18)) and not version_supported((1, 19, 0)) and not version_supported(None)


@pytest.mark.parametrize("version", ["1.14", "1.18"])
def test_service_list_parses_frontends_backends_and_scopes(version: str) -> None:
    table = parse_service_list((CILIUM / f"v{version}" / "service-list-edge-2.json").read_text(), node="edge-2")
    assert len(table.frontends) == 16
    catalog = table.at("10.96.150.10", 80, "TCP")
    assert [fe.service_key for fe in catalog] == ["storefront/catalog"]
    assert catalog[0].serving_backends == {"10.244.50.11:8080", "10.244.51.12:8080", "10.244.51.13:8080"}
    # gateway is eTP=Local with its only endpoint on edge-1: external scope empty on edge-2, internal scope all
    lb = table.at("198.51.100.10", 80, "TCP")
    assert {fe.scope: fe.serving_backends for fe in lb} == {"external": frozenset(),
                                                             "internal": frozenset({"10.244.50.31:8080"})}
    node_ports = table.node_ports(31110, "TCP")
    assert {fe.ip for fe in node_ports} == {"0.0.0.0", "10.82.0.2"}
    assert {fe.protocol for fe in table.at("10.96.150.13", 53, "UDP")} == {"UDP"}


def test_terminating_backends_serve_only_when_no_backend_is_active() -> None:
    doc = json.loads((CILIUM / "v1.18" / "service-list-edge-1.json").read_text())
    spec = doc[1]["status"]["realized"]
    for b in spec["backend-addresses"]:
        b["state"] = "terminating"
    fe = parse_service_list(json.dumps(doc), node="edge-1").frontends[1]
    assert fe.active_backends == frozenset() and fe.serving_backends == fe.terminating_backends != frozenset()


@pytest.mark.parametrize("mutate", [
    lambda d: {"services": d},
    lambda d: [{"spec": {"id": 1}}],
    lambda d: [{**d[0], "status": {"realized": {**d[0]["spec"], "flags": {"type": "Magic"}}}}],
    lambda d: [{**d[0], "status": {"realized": {**d[0]["spec"],
                                                 "backend-addresses": [{"ip": "10.0.0.1", "state": "zombie"}]}}}],
    lambda d: [{**d[0], "status": {"realized": {**d[0]["spec"], "frontend-address": {"ip": "nope", "port": 1}}}}],
])
def test_unrecognised_service_list_raises_shape_error(mutate) -> None:  # type: ignore[no-untyped-def]
    doc = json.loads((CILIUM / "v1.14" / "service-list-edge-1.json").read_text())
    with pytest.raises(CiliumShapeError):
        parse_service_list(json.dumps(mutate(doc)), node="edge-1")


def test_config_defaults_follow_kpr_true_and_not_strict() -> None:
    data = json.loads((CILIUM / "cilium-config.json").read_text())["items"][0]["data"]
    cfg = parse_cilium_config(ConfigMap("kube-system", "cilium-config", data))
    assert cfg.kpr == "true" and cfg.kpr_enabled and cfg.k8s_service_host == "10.81.0.1"
    assert cfg.expected_feature(cfg.enable_node_port) is True  # key absent: on with KPR=true
    strict = parse_cilium_config(ConfigMap("kube-system", "cilium-config", {**data, "kube-proxy-replacement": "strict"}))
    assert strict.kpr_enabled and strict.expected_feature(None) is False  # cilium/cilium#32711
