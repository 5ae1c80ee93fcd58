"""kpdoctor.why.nodes on the real B2 capture: per-node behaviour from the SemanticView comparison, grouping."""

from __future__ import annotations

from pathlib import Path

from kpdoctor.scanner import load_bundle
from kpdoctor.why.model import NodeBehaviour
from kpdoctor.why.nodes import behaviour_of, belongs, group
from kpdoctor.why.target import parse_target

B2 = Path(__file__).resolve().parents[1] / "fixtures" / "bundles" / "B2-stale-endpoint" / "bundle"


def test_belongs_matches_the_service_and_its_named_port() -> None:
    assert belongs("payments/ledger:http", parse_target("svc/payments/ledger"))
    assert belongs("payments/ledger:http", parse_target("svc/payments/ledger:http"))
    assert not belongs("payments/ledger:http", parse_target("svc/payments/ledger:grpc"))
    assert not belongs("payments/ledger-2:http", parse_target("svc/payments/ledger"))


def test_b2_edge1_stale_edge2_ok_from_the_real_rules() -> None:
    cluster, nodes = load_bundle(B2)
    target = parse_target("svc/payments/ledger")
    got = {n.name: behaviour_of(n, cluster, target, has_api=True) for n in nodes}
    one, two = got["edge-1"], got["edge-2"]
    assert (one.status, one.mode, one.rules_source) == ("stale", "iptables", "iptables-save.txt")
    (fb,) = one.frontends
    assert fb.frontend == "cluster-ip 10.96.150.30:80/TCP" and fb.stale == ("10.244.53.12:8080",)
    assert fb.missing == ("10.244.53.19:8080",)
    assert (two.status, two.mode) == ("ok", "nftables")
    assert two.frontends[0].endpoints == ("10.244.52.11:8080", "10.244.53.13:8080", "10.244.53.19:8080")


def test_numeric_port_keeps_only_that_ports_frontends() -> None:
    cluster, nodes = load_bundle(B2)
    target = parse_target("svc/payments/billing:443")
    nb = behaviour_of(next(n for n in nodes if n.name == "edge-2"), cluster, target, has_api=True,
                      service_ports=[443])
    assert [fb.frontend for fb in nb.frontends] == ["cluster-ip 10.96.150.31:443/TCP"]


def test_group_puts_identical_behaviour_together_worst_first() -> None:
    same = "cluster-ip: DNAT to 3 endpoints"
    groups = group([NodeBehaviour("n2", "ok", same), NodeBehaviour("n1", "ok", same),
                    NodeBehaviour("edge-1", "stale", "still sends 1/3 of connections to 10.244.7.77:80")])
    assert [(g.status, g.nodes) for g in groups] == [("stale", ("edge-1",)), ("ok", ("n1", "n2"))]
    assert groups[1].line() == "2 nodes (n1, n2): OK, cluster-ip: DNAT to 3 endpoints"
