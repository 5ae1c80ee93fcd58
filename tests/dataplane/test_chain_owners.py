"""One table-aware list of who owns an iptables chain (kpdoctor.dataplane.chain_owners).

The check side (`IptablesDump.kube_chains`, read by KP-LEFTOVER-RULES and KP-BACKEND-SPLIT) and the gate's
cleanup plan (`kpdoctor.gate.cleanup`) used to disagree about KUBE-FIREWALL: the check dropped it in every
table, the gate only in filter. The truth (kubelet pkg/kubelet/kubelet_network_linux.go; kube-proxy
pkg/proxy/ipvs): filter KUBE-FIREWALL is the kubelet's, nat KUBE-FIREWALL is kube-proxy's IPVS chain.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from types import MappingProxyType

import pytest

from kpdoctor.dataplane import chain_owners as co
from kpdoctor.gate.cleanup import kube_proxy_chains as gate_kube_proxy_chains
from kpdoctor.gate.cleanup import node_leftovers
from kpdoctor.node.parsed import ParsedNode, parse_iptables_view
from kpdoctor.node.state import Fact, NodeState
from tests.support.kube_router import KUBE_PROXY_CHAINS, k3s_kube_router_save

DUMPS = Path(__file__).resolve().parents[1] / "fixtures" / "realworld"
# Real: kube-proxy IPVS mode beside an old kubelet, both KUBE-FIREWALL chains (see SOURCE beside it).
TWO_FIREWALLS = DUMPS / "chain-owners" / "ipvs-v1.4.21-two-kube-firewalls" / "dump.txt"
# Real: kubelet's HINT/CANARY in mangle and KUBE-FIREWALL in filter, kube-proxy iptables mode (cut in filter).
KUBELET_AND_IPTABLES = DUMPS / "dumps" / "k8s-128723-nf-tables-v1.8.10" / "dump.txt"


def _node(text: str) -> NodeState:
    return NodeState("n1", "bundle", MappingProxyType({"iptables-save.txt": Fact("iptables-save.txt", text)}))


# table, chain, owner ("-": nobody on the list); chain names as real dumps show them
OWNER_CASES = """
filter KUBE-FIREWALL kubelet
nat KUBE-FIREWALL kube-proxy
mangle KUBE-IPTABLES-HINT kubelet
nat KUBE-KUBELET-CANARY kubelet
filter KUBE-PROXY-FIREWALL kube-proxy
nat KUBE-SVC-ERIFXISQEP7F7OF4 kube-proxy
filter DOCKER-USER Docker
nat cali-nat-outgoing Calico
nat CILIUM_POST_nat Cilium
filter FLANNEL-FWD flannel
filter ufw-user-input ufw
filter f2b-sshd fail2ban
filter INPUT_direct firewalld
filter INPUT -
nat kind-masq-agent -
filter KUBE-ROUTER-INPUT kube-router
filter KUBE-ROUTER-FORWARD kube-router
filter KUBE-ROUTER-OUTPUT kube-router
nat KUBE-ROUTER-SERVICES kube-router
filter KUBE-NWPLCY-DEFAULT kube-router
filter KUBE-NWPLCY-ZZSW4TF5Z4TPKJKX kube-router
filter KUBE-POD-FW-MLN43CE5BLFI7QUX kube-router
"""


@pytest.mark.parametrize("case", OWNER_CASES.strip().splitlines())
def test_owner_is_table_aware(case: str) -> None:
    table, chain, expected = case.split()
    owner = None if expected == "-" else expected
    assert co.owner(table, chain) == owner
    assert co.is_kube_proxy_chain(table, chain) == (owner == co.KUBE_PROXY)


def test_kubelet_chains_are_all_kube_prefixed_and_hint_chains_are_the_kubelets() -> None:
    # the fast filter (`kube_proxy_chains`) relies on every kubelet chain carrying the KUBE- prefix
    for table in ("raw", "mangle", "filter", "nat", "security"):
        assert all(c.startswith("KUBE-") for c in co.kubelet_chains(table))
    assert all(co.owner("mangle", c) == co.KUBELET for c in co.HINT_CHAINS)
    assert co.kubelet_chains("nat") == frozenset(co.HINT_CHAINS)
    assert co.kubelet_chains("filter") == frozenset({*co.HINT_CHAINS, "KUBE-FIREWALL"})


@pytest.mark.parametrize("path", sorted(DUMPS.rglob("dump.txt")), ids=lambda p: p.parent.name)
def test_fast_filter_is_the_owner_list(path: Path) -> None:
    """`kube_proxy_chains` (one set lookup per name) answers as `owner()` does, on every real dump we keep."""
    dump = parse_iptables_view(path.read_text(errors="replace"))
    for table, chains in dump.policies.items():
        assert co.kube_proxy_chains(table, chains) == [c for c in chains if co.owner(table, c) == co.KUBE_PROXY]


def test_check_and_gate_agree_on_both_kube_firewalls() -> None:
    """The chains the check counts as kube-proxy's are exactly those the gate's cleanup plan removes."""
    state = _node(TWO_FIREWALLS.read_text())
    dump = ParsedNode(state).iptables("iptables-save.txt")
    assert dump is not None
    check_side = dump.kube_chains()
    gate_side = gate_kube_proxy_chains(dump)
    assert Counter(c for names in check_side.values() for c in names) == Counter(gate_side)
    assert "KUBE-FIREWALL" in check_side["nat"]  # kube-proxy's IPVS chain
    assert "KUBE-FIREWALL" not in check_side.get("filter", [])  # the kubelet's: stays after kube-proxy is gone
    assert check_side == {
        "filter": ["KUBE-FORWARD"],
        "nat": ["KUBE-FIREWALL", "KUBE-LOAD-BALANCER", "KUBE-MARK-DROP", "KUBE-MARK-MASQ", "KUBE-NODE-PORT",
                "KUBE-POSTROUTING", "KUBE-SERVICES"],
    }
    (item,) = node_leftovers(state).items
    assert item.what.startswith("iptables (default backend): 8 KUBE-* chains (")


def test_kubelet_only_chains_are_no_leftover() -> None:
    """kubelet's HINT/CANARY/filter KUBE-FIREWALL alone: neither side sees kube-proxy state."""
    text = "\n".join(line for line in KUBELET_AND_IPTABLES.read_text().splitlines()
                     if not line.startswith(":KUBE-") or line.split()[0][1:] in ("KUBE-IPTABLES-HINT",
                                                                                 "KUBE-KUBELET-CANARY",
                                                                                 "KUBE-FIREWALL"))
    state = _node(text)
    dump = ParsedNode(state).iptables("iptables-save.txt")
    assert dump is not None and "KUBE-FIREWALL" in dump.chains("filter")
    assert dump.kube_chains() == {}
    assert gate_kube_proxy_chains(dump) == []
    assert node_leftovers(state).items == ()


def test_real_iptables_mode_dump_both_sides() -> None:
    state = _node(KUBELET_AND_IPTABLES.read_text())
    dump = ParsedNode(state).iptables("iptables-save.txt")
    assert dump is not None
    check_side = dump.kube_chains()
    assert check_side["mangle"] == ["KUBE-PROXY-CANARY"]
    assert "KUBE-FIREWALL" not in check_side["filter"] and "KUBE-PROXY-FIREWALL" in check_side["filter"]
    assert Counter(c for names in check_side.values() for c in names) == Counter(gate_kube_proxy_chains(dump))


def test_host_firewall_prefixes_are_derived() -> None:
    from kpdoctor.node.summary import FIREWALL_CHAIN_PREFIXES

    assert set(FIREWALL_CHAIN_PREFIXES) == {"ufw-", "ufw6-", "f2b-", "IN_public", "FWDI_", "INPUT_direct", "cali-"}
    assert all(co.owner("filter", p + "x") in co.HOST_FIREWALL_OWNERS for p in FIREWALL_CHAIN_PREFIXES)


def test_kube_router_chains_are_not_kube_proxys() -> None:
    """k3s' kube-router chains are neither counted by the check side nor removed by the gate's cleanup plan."""
    state = _node(k3s_kube_router_save())  # real k3s dump: kube-router beside kube-proxy
    dump = ParsedNode(state).iptables("iptables-save.txt")
    assert dump is not None and len(dump.chains("filter")) == 21  # 3 built-in + 18 `-N` lines
    check_side = dump.kube_chains()
    assert check_side == {"filter": list(KUBE_PROXY_CHAINS)}
    assert Counter(check_side["filter"]) == Counter(gate_kube_proxy_chains(dump))
    assert co.chains_of(co.KUBE_ROUTER, "filter", dump.policies["filter"]) == [
        "KUBE-NWPLCY-DEFAULT", "KUBE-POD-FW-MLN43CE5BLFI7QUX", "KUBE-POD-FW-PWYWJNCVCCM6XMKB",
        "KUBE-POD-FW-QTYSHUKQZGTBE67I", "KUBE-ROUTER-FORWARD", "KUBE-ROUTER-INPUT", "KUBE-ROUTER-OUTPUT"]
    (item,) = node_leftovers(state).items
    assert item.what.startswith("iptables (default backend): 5 KUBE-* chains (")
    assert "KUBE-ROUTER" not in item.what and "KUBE-POD-FW" not in item.what
    # the by-hand `iptables-save | grep -v KUBE | iptables-restore` would delete kube-router's chains too
    assert item.commands[0] == "kube-proxy --cleanup"
    assert item.commands[1].startswith("# not `iptables-save | grep -v KUBE | iptables-restore`")
    assert "kube-router's 7 chains" in item.commands[1]


def test_without_kube_router_the_by_hand_cleanup_stays() -> None:
    (item,) = node_leftovers(_node(TWO_FIREWALLS.read_text())).items
    assert item.commands[1] == "iptables-save | grep -v KUBE | iptables-restore"


# `ipset list` as ipset prints it; the names are hand-made in the shapes the two sources define (kube-proxy
# pkg/proxy/ipvs/ipset.go: KUBE-CLUSTER-IP, KUBE-LOOP-BACK; kube-router: "KUBE-SRC-"/"KUBE-DST-" + 16 base32)
IPSETS_ROUTER = "Name: KUBE-SRC-MDS4VXHW5BS46X4W\nType: hash:ip\n\nName: KUBE-DST-VT3EM5JBT4XCQ4Y6\nType: hash:ip\n"
IPSETS_BOTH = IPSETS_ROUTER + "\nName: KUBE-CLUSTER-IP\nType: hash:ip,port\n\nName: KUBE-LOOP-BACK\nType: hash:ip,port,ip\n"


def _ipset_node(listing: str) -> NodeState:
    facts = {"ipset-list.txt": Fact("ipset-list.txt", listing), "iptables-save.txt": Fact("iptables-save.txt", "")}
    return NodeState("n1", "bundle", MappingProxyType(facts))


def test_kube_routers_ipsets_are_not_kube_proxys() -> None:
    from kpdoctor.service_proxy import presence

    assert co.kube_proxy_ipsets(["KUBE-SRC-MDS4VXHW5BS46X4W", "KUBE-CLUSTER-IP", "KUBE-DST-X", "cali40all"]) == [
        "KUBE-CLUSTER-IP"]
    router_only = _ipset_node(IPSETS_ROUTER)
    assert node_leftovers(router_only).items == ()
    assert presence(ParsedNode(router_only)).ipvs == ""  # no IPVS evidence: not kube-proxy's
    (item,) = node_leftovers(_ipset_node(IPSETS_BOTH)).items
    assert item.what == "ipset: 2 KUBE-* sets (KUBE-CLUSTER-IP, KUBE-LOOP-BACK)"
    assert item.commands == ("ipset list -n | grep '^KUBE-' | grep -v -e '^KUBE-SRC-' -e '^KUBE-DST-' "
                             "| xargs -r -n1 ipset destroy",)
    assert "2 KUBE-* sets" in presence(ParsedNode(_ipset_node(IPSETS_BOTH))).ipvs


def test_ipset_cleanup_command_spares_kube_routers_sets_only_when_the_node_has_them() -> None:
    # the one pipeline KP-LEFTOVER-RULES, the removal gate and the mode-switch gate print
    assert co.ipset_cleanup_command(["KUBE-CLUSTER-IP"], on="n1") == (
        "ipset list -n | grep '^KUBE-' | xargs -r -n1 ipset destroy   # on n1")
    assert co.ipset_cleanup_command(["KUBE-CLUSTER-IP", "KUBE-DST-VT3EM5JBT4XCQ4Y6"]) == (
        "ipset list -n | grep '^KUBE-' | grep -v -e '^KUBE-SRC-' -e '^KUBE-DST-' | xargs -r -n1 ipset destroy")
