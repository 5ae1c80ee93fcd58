"""Golden fidelity of the iptables reference proxier against REAL kube-proxy v1.36.2 output.

Each scenario under tests/fixtures/kube-proxy-v1.36/ holds the cluster objects a real
kube-apiserver served and the `iptables-save` / `ip6tables-save` dumps a real kube-proxy left in
its node's namespace (iptables-nft backend; V1 also on iptables-legacy). We render for the same
node, restore the rendering into a fresh namespace with the real `iptables-restore` (after
creating kube-proxy's nfacct counters), dump it with the real `iptables-save`, and require
equality after `normalize()` (header comments, counters, table order and the Go-map order of
per-service rules removed; nothing else).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kpdoctor.dataplane.iptables_save import (
    load_iptables_save,
    normalize,
    normalize_text,
    parse_iptables_save,
)
from kpdoctor.dataplane.iptables_semantic import address_kinds_of, semantic_view
from kpdoctor.dataplane.semantic import diff
from kpdoctor.proxier.expected import expected_view
from kpdoctor.proxier.iptables import render_iptables
from tests.support.iptables import iptables_scenarios, kernel_round_trip, scenario_input

SCENARIOS = iptables_scenarios()
IDS = [p.name for p in SCENARIOS]
LEGACY = [p for p in SCENARIOS if (p / "iptables-legacy" / "iptables-legacy-save.txt").is_file()]


def test_every_scenario_is_covered() -> None:
    assert [p.name.split("-")[0] for p in SCENARIOS] == ["V1", "V2", "V3", "V4", "V5", "V6"]
    assert [p.name for p in LEGACY] == ["V1-basic-clusterip"]


def _kernel_saved(scenario: Path, family: str) -> str:
    """Our render for `family`, restored into a real kernel and saved back, normalized."""
    return normalize_text(kernel_round_trip(render_iptables(scenario_input(scenario, family)), family=family), "kernel")


def _golden(scenario: Path, name: str) -> str:
    return normalize_text((scenario / "iptables" / name).read_text(), "golden")


@pytest.mark.root("iptables-nft-restore", "iptables-nft-save", "nfacct")
@pytest.mark.parametrize("scenario", SCENARIOS, ids=IDS)
def test_render_restore_save_equals_real_kube_proxy_ipv4(scenario: Path) -> None:
    assert _kernel_saved(scenario, "IPv4") == _golden(scenario, "iptables-save.txt")


@pytest.mark.root("ip6tables-nft-restore", "ip6tables-nft-save", "nfacct")
@pytest.mark.parametrize("scenario", SCENARIOS, ids=IDS)
def test_render_restore_save_equals_real_kube_proxy_ipv6(scenario: Path) -> None:
    """kube-proxy ran dual-stack (primary IPv4); its IPv6 side has no Services but all base rules."""
    assert _kernel_saved(scenario, "IPv6") == _golden(scenario, "ip6tables-save.txt")


@pytest.mark.root("iptables-legacy-restore", "iptables-legacy-save", "ip6tables-legacy-restore", "nfacct")
@pytest.mark.parametrize("scenario", LEGACY, ids=[p.name for p in LEGACY])
def test_render_restore_save_equals_real_kube_proxy_legacy(scenario: Path) -> None:
    for family, dump in (("IPv4", "iptables-legacy-save.txt"), ("IPv6", "ip6tables-legacy-save.txt")):
        rendered = render_iptables(scenario_input(scenario, family, mode="iptables-legacy"))
        saved = kernel_round_trip(rendered, family=family, legacy=True)
        golden = (scenario / "iptables-legacy" / dump).read_text()
        assert normalize_text(saved, "kernel") == normalize_text(golden, "golden"), family


@pytest.mark.parametrize("scenario", SCENARIOS, ids=IDS)
def test_semantic_view_of_real_dump_equals_expected_view(scenario: Path) -> None:
    """What stale-endpoint detection stands on: the parsed real dump means exactly the expectation."""
    inp = scenario_input(scenario, "IPv4")
    expected = expected_view(inp)
    actual = semantic_view(load_iptables_save(str(scenario / "iptables" / "iptables-save.txt")),
                           address_kinds=address_kinds_of(expected))
    assert diff(expected, actual) == []
    assert actual == expected
    assert len(expected.frontends) >= 7


@pytest.mark.parametrize("scenario", SCENARIOS, ids=IDS)
def test_semantic_view_of_rendering_equals_expected_view(scenario: Path) -> None:
    inp = scenario_input(scenario, "IPv4")
    expected = expected_view(inp)
    actual = semantic_view(parse_iptables_save(render_iptables(inp), "render"),
                           address_kinds=address_kinds_of(expected))
    assert actual == expected


def test_ipv6_views_are_empty_like_the_real_dumps() -> None:
    for scenario in SCENARIOS:
        assert expected_view(scenario_input(scenario, "IPv6")).frontends == {}
        assert semantic_view(load_iptables_save(str(scenario / "iptables" / "ip6tables-save.txt"))).frontends == {}


def test_rendering_is_deterministic_and_parses() -> None:
    scenario = SCENARIOS[1]
    first = render_iptables(scenario_input(scenario))
    assert first == render_iptables(scenario_input(scenario))
    dump = parse_iptables_save(first, "render")
    assert set(dump.tables) == {"mangle", "filter", "nat"}
    # normalize() of our own text is stable
    assert normalize(dump) == normalize(parse_iptables_save(normalize(dump), "again"))


def test_large_cluster_mode_drops_per_endpoint_comments() -> None:
    """V5 has 1,130 endpoints (> 1000): SEP and SVC->SEP rules carry no comments, as in the real dump."""
    text = render_iptables(scenario_input(next(p for p in SCENARIOS if p.name.startswith("V5"))))
    sep_rules = [line for line in text.splitlines() if line.startswith("-A KUBE-SEP-")]
    assert sep_rules and not any("--comment" in line for line in sep_rules)
    svc_jumps = [line for line in text.splitlines() if line.startswith("-A KUBE-SVC-") and "KUBE-SEP-" in line]
    assert svc_jumps and not any("--comment" in line for line in svc_jumps)
