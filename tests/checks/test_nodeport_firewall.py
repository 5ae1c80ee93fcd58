"""KP-NODEPORT-FIREWALL (checks/nodeport_firewall.py): B1 passes (edge-2's eTP=Local drop is explained at info
level only); the demo bundle (real kube-proxy captures with a planted host firewall) fails on edge-2; many
eTP=Local Services without a local endpoint are one note per node that lists them all."""

from __future__ import annotations

import json

from kpdoctor.checks.nodeport_firewall import CHECK, LISTED
from kpdoctor.findings import Severity
from tests.support.checks import load_bundle, load_demo, run_check, verdicts, with_service_copies


def test_passes_on_b1_healthy() -> None:
    cluster, nodes = load_bundle("B1-healthy")
    assert verdicts(CHECK, cluster, nodes, at=Severity.WARNING) == []
    assert verdicts(CHECK, cluster, nodes) == [("edge-2", "Service storefront/gateway:http/TCP", Severity.INFO)]


def test_fails_on_the_demo_host_firewall() -> None:
    assert verdicts(CHECK, *load_demo(), at=Severity.WARNING) == [("edge-2", "Node edge-2", Severity.ERROR)]


def test_one_etp_local_note_per_node_states_the_count_and_lists_every_service() -> None:
    cluster, nodes = load_bundle("B1-healthy")  # storefront/gateway: eTP=Local, its one endpoint on edge-1
    [single] = run_check(CHECK, cluster, nodes, node="edge-2")
    assert json.loads(dict(single.labels)["services"]) == ["storefront/gateway:http/TCP"]
    many = with_service_copies(cluster, "storefront/gateway", LISTED + 2)  # generated copies of the real one
    findings = run_check(CHECK, many, nodes, node="edge-2")
    [note] = findings
    assert (note.scope, note.subject, note.severity) == ("edge-2", "Node edge-2", Severity.INFO)
    assert note.message.startswith(f"{LISTED + 3} NodePorts of Services with externalTrafficPolicy: Local drop on "
                                   "node edge-2 because no endpoint of their Service runs there: this is expected")
    assert len(note.evidence) == LISTED + 1 and note.evidence[-1].startswith("… and 3 more (all 13 in")
    assert all(e.startswith("expected dataplane: node-port *:") for e in note.evidence[:LISTED])
    services = json.loads(dict(note.labels)["services"])
    assert sorted(services) == sorted(["storefront/gateway:http/TCP"]
                                      + [f"storefront/gateway-copy-{i}:http/TCP" for i in range(LISTED + 2)])
    assert run_check(CHECK, many, nodes, node="edge-1") == []  # the endpoint's node serves them all
