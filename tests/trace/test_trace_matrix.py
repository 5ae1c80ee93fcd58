"""`kpdoctor trace --matrix` on the demo bundle: one Service, every node x frontend x client."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kpdoctor.cli import main
from kpdoctor.node.bundle import read_bundle
from kpdoctor.trace.inputs import trace_cluster_state
from kpdoctor.trace.matrix import matrix

DEMO = Path(__file__).resolve().parents[2] / "kpdoctor" / "demo" / "bundle"


def test_etp_local_and_edge2_faults_are_visible_in_one_table() -> None:
    b = read_bundle(DEMO)
    cluster = trace_cluster_state(b)
    assert cluster is not None
    svc = cluster.service_by_key["payments/pay-gateway"]  # LoadBalancer, eTP=Local, its endpoint is on edge-1
    cells = {(c.node, c.frontend.split()[0], c.client): c for c in matrix(cluster, svc, None, b.node_states())}
    assert cells[("edge-1", "nodePort", "external")].summary == "100% -> 10.244.52.31:8080"
    no_local = cells[("edge-2", "nodePort", "external")]  # eTP=Local, no endpoint on edge-2: kube-proxy drops it
    assert no_local.delivered == 0 and "DROP by ip kube-proxy nodeport-endpoints-check" in no_local.summary
    assert "ip_forward = 0" in cells[("edge-2", "clusterIP", "pod")].summary  # the planted sysctl fault
    assert cells[("edge-2", "clusterIP", "node")].delivered == pytest.approx(1.0)  # locally generated: no forward
    assert all(c.complete for c in cells.values())


def test_cli_matrix_json(capsys: pytest.CaptureFixture[str]) -> None:
    main(["trace", "--demo", "--matrix", "--to", "svc/payments/billing:https", "--node", "edge-1", "-o", "json"])
    cells = json.loads(capsys.readouterr().out)
    assert {c["frontend"] for c in cells} == {"clusterIP 10.96.150.31:443/tcp", "nodePort 10.81.0.2:31130/tcp"}
    assert all(c["delivered"] == pytest.approx(1.0) for c in cells)


def test_cli_matrix_needs_a_service(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["trace", "--demo", "--matrix", "--to", "10.96.150.31:443"])
    assert exit_info.value.code == 2
    assert "--matrix needs --to svc/" in capsys.readouterr().err
