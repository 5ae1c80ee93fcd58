"""The kernel requirements of a proxier mode: one definition (kpdoctor.kernel_requirements) that
KP-KERNEL-MODULES and the mode-switch gate both read, judged on the B1 bundle's real node facts."""

from __future__ import annotations

from pathlib import Path

import kpdoctor.checks.kernel_modules as check_module
from kpdoctor import kernel_requirements as kr
from kpdoctor.node.bundle import read_bundle
from kpdoctor.node.parsed import ParsedNode

B1 = Path(__file__).parent / "fixtures" / "bundles" / "B1-healthy"


def _edge1() -> ParsedNode:
    return ParsedNode(read_bundle(B1).node_state("edge-1"))


def test_check_uses_the_shared_definition() -> None:
    assert check_module.requirements is kr.requirements
    assert check_module.evaluate is kr.evaluate


def test_requirements_per_mode() -> None:
    p = _edge1()
    ipvs = kr.requirements("ipvs", p, "")
    assert [r.modules[0] for r in ipvs] == ["ip_vs", "ip_vs_rr", "nf_conntrack", "ip_set"]
    assert kr.requirements("ipvs", p, "lc")[1].modules == ("ip_vs_lc",)
    nft = kr.requirements("nftables", p, "")
    assert [r.modules[0] for r in nft] == ["nf_tables", "nf_conntrack", "nft_nat", "nft_numgen", "nft_ct"]
    ipt = kr.requirements("iptables", p, "")
    assert ipt[0].what == "nf_tables (iptables-nft backend)"  # B1's iptables -V says nf_tables
    assert kr.CONNTRACK in ipt and all(x in ipt for x in kr.IPTABLES_EXTENSIONS)


def test_evaluate_reads_the_real_node_facts() -> None:
    p = _edge1()
    by_what = {r.what: kr.evaluate(r, p) for r in kr.requirements("iptables", p, "")}
    assert by_what["connection tracking"] == "sysctl.txt: net.netfilter.nf_conntrack_max exists"
    assert by_what["nf_tables (iptables-nft backend)"].startswith("nft-ruleset.json: ")
    assert by_what["iptables match comment"] == "ip_tables_matches.txt: lists comment"
    # IPVS: B1 collected no ipvsadm/ip_vs facts and no module lists, so nothing proves ip_vs
    assert kr.evaluate(kr.requirements("ipvs", p, "")[0], p) == ""
