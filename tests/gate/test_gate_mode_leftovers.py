"""The old mode's leftovers after a switch, from real dumps (lab captures of kube-proxy v1.36.3,
tests/fixtures/mode-switch/README.md); IPVS from the recorded shapes of tests/fixtures/ipvs (this kernel has
no IPVS, said in that README)."""

from __future__ import annotations

from pathlib import Path

from kpdoctor.gate.mode_leftovers import old_mode_leftovers
from kpdoctor.node.state import Fact, NodeState

ROOT = Path(__file__).resolve().parents[2]
SWITCH = ROOT / "tests" / "fixtures" / "mode-switch"
N0 = "kpk-71f1d6-n0"


def node(bundle: str, *extra: tuple[str, Path]) -> NodeState:
    folder = SWITCH / bundle / "nodes" / N0
    facts = {p.name: Fact(key=p.name, content=p.read_text()) for p in folder.iterdir() if p.is_file()}
    for key, path in extra:
        facts[key] = Fact(key=key, content=path.read_text())
    return NodeState(N0, "bundle", facts)


def test_iptables_rules_left_after_a_switch_to_nftables() -> None:
    """1-iptables's n0 is what a node looks like if kube-proxy did not clean its iptables mode."""
    left = old_mode_leftovers(node("1-iptables"), "iptables", "nftables")
    assert left.missing == ""
    whats = [i.what for i in left.items]
    assert any(w.startswith("iptables-nft: ") and "KUBE-SERVICES" in w for w in whats), whats
    assert any(w.startswith("ip6tables") for w in whats), whats
    cmds = [c for i in left.items for c in i.commands]
    assert not any("--cleanup" in c for c in cmds)
    assert "iptables-nft-save | grep -v KUBE | iptables-nft-restore" in "\n".join(cmds)


def test_after_a_switch_to_ipvs_only_the_per_service_chains_are_listed() -> None:
    left = old_mode_leftovers(node("1-iptables"), "iptables", "ipvs")
    cmds = "\n".join(c for i in left.items for c in i.commands)
    assert "grep -v -E 'KUBE-(SVC|SEP|EXT|FW|SVL)-'" in cmds and "grep -v KUBE |" not in cmds
    assert all("KUBE-SERVICES" not in i.what for i in left.items)


def test_real_switch_to_nftables_leaves_only_the_localnet_guard() -> None:
    left = old_mode_leftovers(node("3-nftables"), "iptables", "nftables")
    assert left.items == () and left.missing == ""
    assert len(left.guards) == 1 and "route_localnet=1" in left.guards[0].what
    assert left.guards[0].commands[0].startswith("sysctl -w net.ipv4.conf.all.route_localnet=0")


def test_nft_tables_left_after_a_switch_to_iptables() -> None:
    """3-nftables's n0 is what a node looks like if kube-proxy did not remove its nft tables."""
    left = old_mode_leftovers(node("3-nftables"), "nftables", "iptables")
    assert [c for i in left.items for c in i.commands] == ["nft delete table ip kube-proxy",
                                                           "nft delete table ip6 kube-proxy"]
    assert old_mode_leftovers(node("4-iptables"), "nftables", "iptables").items == ()


def test_ipvs_leftovers_from_recorded_shapes() -> None:
    """IPVS: recorded shapes (tests/fixtures/ipvs/v2-kpnode1, not captured from a kernel: this one has no IPVS)."""
    ipvs = ROOT / "tests" / "fixtures" / "ipvs" / "v2-kpnode1"
    state = node("4-iptables", ("ipvsadm-save.txt", ipvs / "ipvsadm-save.txt"),
                 ("ipset-list.txt", ipvs / "ipset-list.txt"))
    left = old_mode_leftovers(state, "ipvs", "iptables")
    whats = [i.what for i in left.items]
    assert whats[0].startswith("IPVS: ") and any(w.startswith("ipset: ") for w in whats), whats
    assert left.missing == ""


def test_missing_facts_cannot_prove() -> None:
    state = NodeState(N0, "bundle", {})
    assert old_mode_leftovers(state, "nftables", "iptables").missing == "nft-ruleset.json"
    assert old_mode_leftovers(state, "ipvs", "nftables").missing == "ipvsadm-save.txt"
    assert old_mode_leftovers(state, "iptables", "iptables").missing == ""
