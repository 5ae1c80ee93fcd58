"""Semantic view of iptables dumps: detects stale/missing endpoints and tolerates non-kube rules.

Built on the REAL kube-proxy v1.36.2 dumps of the golden fixtures, edited the way a broken node
looks (a stale endpoint still in the chains, a missing one, a foreign firewall).
"""

from __future__ import annotations

from kpdoctor.dataplane import semantic as sem
from kpdoctor.dataplane.iptables_save import parse_iptables_save
from kpdoctor.dataplane.iptables_semantic import address_kinds_of, semantic_view
from kpdoctor.dataplane.semantic import Frontend, diff
from kpdoctor.proxier.expected import expected_view
from tests.support.iptables import GOLDEN, scenario_input

V2 = GOLDEN / "V2-nodeport-lb"
V3 = GOLDEN / "V3-affinity-terminating"


def _view(text: str, expected=None):  # type: ignore[no-untyped-def]
    return semantic_view(parse_iptables_save(text, "dump"),
                         address_kinds=address_kinds_of(expected) if expected is not None else None)


def test_frontend_kinds_verdicts_and_ranges_of_v2() -> None:
    view = _view((V2 / "iptables" / "iptables-save.txt").read_text())
    f = view.frontends
    lb_ranges = f[Frontend(sem.LOAD_BALANCER, "192.0.2.102", 443, "TCP")]
    assert lb_ranges.verdict == sem.DNAT and lb_ranges.source_ranges == {"203.0.113.0/24", "198.51.100.128/25"}
    assert lb_ranges.endpoints == {"10.244.2.24:8443", "10.244.4.24:8443"}
    # eTP=Local: external traffic reaches only the local endpoint; no local endpoint -> drop.
    assert f[Frontend(sem.LOAD_BALANCER, "192.0.2.100", 80, "TCP")].endpoints == {"10.244.1.21:8080"}
    assert f[Frontend(sem.NODE_PORT, "", 30101, "TCP")].endpoints == {"10.244.1.21:8080"}
    assert f[Frontend(sem.LOAD_BALANCER, "192.0.2.101", 443, "TCP")].verdict == sem.DROP
    assert f[Frontend(sem.NODE_PORT, "", 30102, "TCP")].verdict == sem.DROP
    assert f[Frontend(sem.CLUSTER_IP, "10.96.20.12", 443, "TCP")].endpoints == {"10.244.4.22:8443", "10.244.5.22:8443"}
    # No endpoints at all -> reject on the cluster IP and the node port.
    assert f[Frontend(sem.CLUSTER_IP, "10.96.20.15", 80, "TCP")].verdict == sem.REJECT
    assert f[Frontend(sem.NODE_PORT, "", 30104, "TCP")].verdict == sem.REJECT
    assert f[Frontend(sem.EXTERNAL_IP, "198.51.100.10", 8080, "TCP")].service == "web/legacy-extip:http"


def test_affinity_itp_local_and_terminating_fallback_of_v3() -> None:
    view = _view((V3 / "iptables" / "iptables-save.txt").read_text())
    by_service = {v.service: v for v in view.frontends.values()}
    assert by_service["stateful/session-600:http"].affinity_seconds == 600
    assert by_service["stateful/session-default:http"].affinity_seconds == 10800
    assert by_service["stateful/node-local:http"].endpoints == {"10.244.1.34:8080"}
    assert by_service["stateful/node-local-none:http"].verdict == sem.DROP
    assert by_service["stateful/draining:http"].endpoints == {"10.244.1.32:8080", "10.244.4.32:8080"}


def test_stale_endpoint_left_in_the_chains_is_found() -> None:
    """A node that still DNATs to a deleted pod: one extra SEP chain behind the service chain."""
    text = (V2 / "iptables" / "iptables-save.txt").read_text()
    stale_sep = "KUBE-SEP-STALESTALESTALE"
    head, _, tail = text.rpartition(":KUBE-SERVICES - [0:0]\n")  # the nat table's declaration
    text = f"{head}:KUBE-SERVICES - [0:0]\n:{stale_sep} - [0:0]\n{tail}"
    text = text.replace(
        '-A KUBE-SVC-YAJPJG7ZWPQMMX5F -m comment --comment "web/site-np:http -> 10.244.1.20:8080"',
        f'-A KUBE-SVC-YAJPJG7ZWPQMMX5F -m statistic --mode random --probability 0.20000000000 -j {stale_sep}\n'
        '-A KUBE-SVC-YAJPJG7ZWPQMMX5F -m comment --comment "web/site-np:http -> 10.244.1.20:8080"',
    )
    head, _, tail = text.rpartition("COMMIT\n")  # the nat table is the last one
    text = f"{head}-A {stale_sep} -p tcp -m tcp -j DNAT --to-destination 10.244.9.99:8080\nCOMMIT\n{tail}"
    expected = expected_view(scenario_input(V2))
    diffs = diff(expected, _view(text, expected))
    stale = {(str(d.frontend), d.kind, tuple(sorted(d.stale))) for d in diffs}
    # The cluster IP and the node port of web/site-np both reach the stale endpoint, and so does the node port
    # through 127.0.0.1 (localhost NodePorts: the v1.36 default in iptables mode).
    assert stale == {
        ("cluster-ip 10.96.20.10:80/TCP", "stale-endpoints", ("10.244.9.99:8080",)),
        ("node-port *:30100/TCP", "stale-endpoints", ("10.244.9.99:8080",)),
        ("localhost-node-port 127.0.0.1:30100/TCP", "stale-endpoints", ("10.244.9.99:8080",)),
    }


def test_missing_endpoint_and_verdict_change_are_found() -> None:
    text = (V2 / "iptables" / "iptables-save.txt").read_text()
    lines = [ln for ln in text.splitlines()
             if "-j KUBE-SEP-HJS3ZJTGCYFDTS6Z" not in ln  # site-np's 10.244.5.20 endpoint
             and "web/empty-np:http has no endpoints" not in ln]  # the REJECT of empty-np
    expected = expected_view(scenario_input(V2))
    diffs = {(str(d.frontend), d.kind) for d in diff(expected, _view("\n".join(lines), expected))}
    assert ("cluster-ip 10.96.20.10:80/TCP", "missing-endpoints") in diffs
    assert ("cluster-ip 10.96.20.15:80/TCP", "missing-frontend") in diffs
    assert ("node-port *:30104/TCP", "missing-frontend") in diffs


def test_foreign_rules_are_tolerated() -> None:
    """Docker/Calico-like chains and rules in the same tables do not change the view."""
    text = (V2 / "iptables" / "iptables-save.txt").read_text()
    foreign = text.replace(
        ":KUBE-SERVICES - [0:0]\n-A PREROUTING",
        ":KUBE-SERVICES - [0:0]\n:DOCKER - [0:0]\n-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER\n"
        "-A DOCKER -d 172.17.0.2/32 ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80\n"
        "-A PREROUTING", 1,
    ).replace(
        ":INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:KUBE-EXTERNAL-SERVICES",
        ":INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:cali-INPUT - [0:0]\n:KUBE-EXTERNAL-SERVICES",
        1,
    ).replace("-A INPUT -j KUBE-FIREWALL", "-A INPUT -j cali-INPUT\n-A cali-INPUT -p tcp --dport 22 -j ACCEPT\n"
              "-A INPUT -j KUBE-FIREWALL", 1)
    assert foreign != text
    assert _view(foreign) == _view(text)


def test_no_endpoint_lb_and_external_ip_are_told_apart_with_address_kinds() -> None:
    """Without endpoints both appear only as identical REJECT rules in KUBE-EXTERNAL-SERVICES."""
    from tests.support.upstream_objects import fake_proxier_input, svc

    inp = fake_proxier_input([svc("ns1", "lb", "172.30.0.50", type_="LoadBalancer", node_port=3010,
                                  lb_ip="1.2.3.4", external_ips=["192.168.99.50"])])
    from kpdoctor.proxier.iptables import render_iptables

    text = render_iptables(inp)
    expected = expected_view(inp)
    labelled = _view(text, expected)
    assert labelled == expected
    unlabelled = _view(text)
    assert Frontend(sem.EXTERNAL_IP, "1.2.3.4", 80, "TCP") in unlabelled.frontends  # documented fallback
    assert all(v.verdict == sem.REJECT for v in labelled.frontends.values())


def test_empty_and_non_kube_dumps() -> None:
    assert _view("").frontends == {}
    assert _view("*filter\n:INPUT DROP [0:0]\n-A INPUT -p tcp --dport 22 -j ACCEPT\nCOMMIT\n").frontends == {}


def test_real_stale_node_bundle_is_diagnosed() -> None:
    """Recorded real data (bundle B2): kube-proxy was SIGKILLed on edge-1 before an endpoint change.

    The expert diagnosis in its README: payments/ledger still DNATs to 10.244.53.12 and lacks
    10.244.53.19 on edge-1. The healthy bundle B1 shows no difference at all.
    """
    from kpdoctor.cluster.snapshot import load_snapshot
    from kpdoctor.dataplane.iptables_save import load_iptables_save
    from kpdoctor.proxier.context import build_input
    from tests.support.iptables import GOLDEN

    bundles = GOLDEN.parent / "bundles"
    results = {}
    for name in ("B1-healthy", "B2-stale-endpoint"):
        root = bundles / name / "bundle"
        expected = expected_view(build_input(load_snapshot(root / "cluster"), "edge-1"))
        actual = semantic_view(load_iptables_save(str(root / "nodes" / "edge-1" / "iptables-save.txt")),
                               address_kinds=address_kinds_of(expected))
        results[name] = diff(expected, actual)
    assert results["B1-healthy"] == []
    [stale] = results["B2-stale-endpoint"]
    assert (str(stale.frontend), stale.service, stale.kind) == (
        "cluster-ip 10.96.150.30:80/TCP", "payments/ledger:http", "stale-endpoints")
    assert stale.stale == {"10.244.53.12:8080"} and stale.missing == {"10.244.53.19:8080"}
