"""`kpdoctor trace` names resolved through the cluster state in any namespace (issue 15, names and sources):
`pod/NS/NAME` (the loaders are asked for the named namespaces' Pods), `node/NAME`, `svc/NS/NAME:PORTNAME` and
`:PORT`, `external`, and one-line exit-2 errors naming an unknown name. Cluster data: the demo bundle's cluster/."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kpdoctor.cli import main
from kpdoctor.node.bundle import read_bundle
from kpdoctor.trace.addresses import resolve
from kpdoctor.trace.inputs import trace_cluster_state
from kpdoctor.trace.names import named_objects

DEMO = Path(__file__).resolve().parents[2] / "kpdoctor" / "demo" / "bundle"


def test_named_objects_lists_services_and_pod_namespaces_once() -> None:
    found = named_objects(["pod/payments/a:80", "svc/payments/ledger:http", None, "10.0.0.1:80", "pod/payments/b",
                           "pod/web/c", "service/default/kubernetes", "node/edge-1:31130", "external"])
    assert found.services == {"payments/ledger", "default/kubernetes"}
    assert found.pod_namespaces == ("payments", "web")


def test_pods_of_named_namespaces_are_loaded_and_resolved() -> None:
    bundle = read_bundle(DEMO)
    without = trace_cluster_state(bundle, set())
    assert without is not None and not without.workload_pods  # kube-system only, as before
    with pytest.raises(Exception, match="no Pod payments/ledger-fe14010b4f-d5vch in the cluster state"):
        resolve("pod/payments/ledger-fe14010b4f-d5vch", without, "--from")
    cluster = trace_cluster_state(bundle, set(), ["payments"])
    assert cluster is not None
    pod = resolve("pod/payments/ledger-fe14010b4f-d5vch:5000", cluster, "--from")
    assert (pod.address, pod.port, pod.node, pod.label) == ("10.244.52.11", 5000, "edge-1",
                                                            "pod payments/ledger-fe14010b4f-d5vch")


def _trace(*args: str, capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    main(["trace", "--demo", "--node", "edge-1", "-o", "json", *args])
    doc: dict[str, object] = json.loads(capsys.readouterr().out)
    return doc


def test_cli_pod_in_a_workload_namespace_to_a_service_port_by_name_and_number(
        capsys: pytest.CaptureFixture[str]) -> None:
    by_name = _trace("--from", "pod/payments/tokens-c51e455b41-7lq2l", "--to", "svc/payments/pay-dns:dns-tcp",
                     capsys=capsys)
    packet = by_name["packet"]
    assert isinstance(packet, dict)
    assert (packet["src"], packet["dst"], packet["dport"], packet["proto"]) == ("10.244.52.61", "10.96.150.33", 53,
                                                                                "tcp")
    by_number = _trace("--from", "pod/payments/tokens-c51e455b41-7lq2l", "--to", "svc/payments/pay-dns:53",
                       capsys=capsys)
    number_packet = by_number["packet"]
    assert isinstance(number_packet, dict) and number_packet["dport"] == 53
    # the first port numbered 53 is the UDP one: the protocol follows the Service port chosen
    assert number_packet["proto"] == "udp"
    assert by_name["endpoints"] and by_number["endpoints"]


def test_cli_node_and_external_names(capsys: pytest.CaptureFixture[str]) -> None:
    doc = _trace("--from", "external", "--to", "node/edge-1:31130", capsys=capsys)
    packet = doc["packet"]
    assert isinstance(packet, dict)
    assert (packet["src"], packet["dst"], packet["dport"]) == ("203.0.113.10", "10.81.0.2", 31130)
    local = _trace("--from", "node/edge-1", "--to", "svc/payments/ledger:http", capsys=capsys)
    assert isinstance(local["packet"], dict) and local["packet"]["path"] == "locally generated"
    assert local["from"] == "node edge-1"


@pytest.mark.parametrize(("args", "message"), [
    (["--from", "pod/payments/ghost", "--to", "svc/payments/ledger"], "'pod/payments/ghost': no Pod payments/ghost"),
    (["--from", "pod/other/x", "--to", "svc/payments/ledger"], "no Pod other/x in the cluster state"),
    (["--from", "node/ghost", "--to", "svc/payments/ledger"], "'node/ghost': no Node 'ghost'"),
    (["--from", "external", "--to", "svc/payments/ledger:grpc"], "Service payments/ledger has no port 'grpc'"),
    (["--from", "external", "--to", "svc/payments/ledger:81"], "Service payments/ledger has no port '81'"),
    (["--from", "externa", "--to", "svc/payments/ledger"], "'externa': not an IP address or a name"),
    (["--from", "external", "--to", "svc/payments/ledger", "--transport", "local"], "give one of --bundle B"),
])
def test_cli_unknown_names_are_one_line_exit_2(args: list[str], message: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["trace", "--demo", "--node", "edge-1", *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


@pytest.mark.parametrize(("args", "message"), [
    (["--node", "edge-1"], "--transport 'none'"),
    (["--node", "edge-1", "--transport", "bundle"], "--transport 'bundle'"),
    (["--transport", "local"], "give --node NAME"),
])
def test_cli_snapshot_needs_a_transport_and_a_node(args: list[str], message: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """Checked before anything is collected (the node's facts are read only with a transport and a node)."""
    argv = ["trace", "--snapshot", str(DEMO / "cluster"), "--from", "external", "--to", "svc/payments/ledger"]
    with pytest.raises(SystemExit) as exit_info:
        main(argv + args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
