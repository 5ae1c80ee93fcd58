"""Parsers of node facts on the real files of the bundles and golden captures (kube-proxy v1.36.2)."""

from __future__ import annotations

import math

from kpdoctor.node.conntrack_text import parse_conntrack_entries, parse_conntrack_stats
from kpdoctor.node.kube_proxy_http import parse_configz, parse_healthz, parse_metrics
from kpdoctor.node.parsed import (
    parse_ip_addr,
    parse_iptables_version,
    parse_iptables_view,
    parse_kernel_release,
    parse_modules_builtin,
    parse_nft_structure,
    parse_proc_modules,
    parse_sysctl,
)
from tests.support.checks import BUNDLES, GOLDEN

E1 = BUNDLES / "B1-healthy" / "bundle" / "nodes" / "edge-1"
E2 = BUNDLES / "B1-healthy" / "bundle" / "nodes" / "edge-2"


def test_sysctl_and_kernel_and_iptables_version() -> None:
    s = parse_sysctl((E1 / "sysctl.txt").read_text())
    assert s["net.ipv4.ip_forward"] == "1" and s["net.netfilter.nf_conntrack_max"] == "262144"
    assert parse_sysctl("/proc/sys/net/ipv4/ip_forward: 0\n") == {"net.ipv4.ip_forward": "0"}
    assert parse_kernel_release((E1 / "uname-r.txt").read_text()) == (6, 18, 44)
    v = parse_iptables_version((E1 / "iptables-version.txt").read_text())
    assert v is not None and v.version == (1, 8, 9) and v.backend == "nf_tables"
    assert parse_iptables_version("iptables v1.8.7 (legacy)\n").backend == "legacy"  # type: ignore[union-attr]
    assert parse_iptables_version("iptables v1.6.1\n").backend == "legacy"  # type: ignore[union-attr]
    assert parse_iptables_version("") is None


def test_modules() -> None:
    loaded = parse_proc_modules("ip_vs_rr 12288 1 - Live 0x0\nip_vs 200704 3 ip_vs_rr, Live 0x0\nnf-nat 1 0 - Live\n")
    assert loaded == {"ip_vs_rr", "ip_vs", "nf_nat"}
    builtin = parse_modules_builtin("kernel/net/netfilter/ipvs/ip_vs.ko\nkernel/net/netfilter/xt_comment.ko.zst\n")
    assert builtin == {"ip_vs", "xt_comment"}


def test_kube_proxy_metrics_real() -> None:
    m = parse_metrics((E2 / "kube-proxy" / "metrics.txt").read_text())
    assert m.value("kubeproxy_sync_proxy_rules_no_local_endpoints_total", traffic_policy="external",
                   ip_family="IPv4") == 1
    last = m.get("kubeproxy_sync_proxy_rules_last_timestamp_seconds", ip_family="IPv4")
    assert len(last) == 1 and math.isclose(last[0].value, 1.7956839033732343e09)
    p99 = m.histogram_quantile(0.99, "kubeproxy_sync_proxy_rules_duration_seconds")
    assert p99 is not None and 0.032 < p99 <= 0.064  # both samples in the (0.032, 0.064] bucket
    assert m.value("kubeproxy_sync_proxy_rules_iptables_restore_failures_total") is None  # absent, not 0
    lenient = parse_metrics('x{a="q\\"uoted,comma",b="2"} 3\nx{a="z"} NaN\ny +Inf\n# HELP z\n')
    assert lenient.get("x", b="2")[0].labels["a"] == 'q"uoted,comma'
    assert math.isinf(lenient.value("y") or 0)


def test_healthz_configz_real() -> None:
    hz = parse_healthz((E1 / "kube-proxy" / "healthz.json").read_text())
    assert hz is not None and hz.healthy is True and hz.node_eligible is True
    assert hz.age_seconds is not None and abs(hz.age_seconds) < 1
    assert set(hz.families) == {"IPv4", "IPv6"}
    assert parse_healthz("not json") is None
    cfg = parse_configz((E2 / "kube-proxy" / "configz.json").read_text())
    assert cfg is not None and cfg.mode == "nftables" and cfg.nftables_sync.min_sync_period == 1.0
    golden = parse_configz((GOLDEN / "V2-nodeport-lb" / "iptables" / "configz.json").read_text())
    assert golden is not None and golden.mode == "iptables"


def test_conntrack_stats_and_entries() -> None:
    stats = parse_conntrack_stats((E1 / "conntrack-stats.txt").read_text())
    assert stats["drop"] == 0 and "found" in stats
    line = ("udp      17 29 src=10.81.0.2 dst=10.96.150.14 sport=40125 dport=8125 [UNREPLIED] src=10.244.51.51 "
            "dst=10.81.0.2 sport=8125 dport=40125 mark=0 use=1")
    (e,) = parse_conntrack_entries(line + "\nconntrack v1.4.7 (conntrack-tools): 1 flow entries have been shown.\n")
    assert (e.protocol, e.dst, e.dport, e.dnat_target, e.flags) == ("udp", "10.96.150.14", 8125,
                                                                    "10.244.51.51:8125", ("UNREPLIED",))
    tcp = parse_conntrack_entries("tcp      6 431999 ESTABLISHED src=1.1.1.1 dst=2.2.2.2 sport=1 dport=2 "
                                  "src=3.3.3.3 dst=1.1.1.1 sport=2 dport=1 [ASSURED] mark=0 use=1\n")
    assert tcp[0].state == "ESTABLISHED" and tcp[0].reply_src == "3.3.3.3"


def test_ip_addr_iptables_dump_nft_real() -> None:
    ifaces = parse_ip_addr((E1 / "ip-addr.json").read_text())
    assert [i.name for i in ifaces] == ["lo", "eth0"]
    assert ("10.81.0.2", 24, "global") in ifaces[1].addresses
    dump = parse_iptables_view((E1 / "iptables-save.txt").read_text())
    assert dump.policies["filter"]["FORWARD"] == "ACCEPT"
    assert "KUBE-SERVICES" in dump.kube_chains()["nat"] and "KUBE-FIREWALL" not in dump.kube_chains()["filter"]
    assert dump.chain_rules("filter", "FORWARD")[1].target == "KUBE-FORWARD"
    nft = parse_nft_structure((E2 / "nft-ruleset.json").read_text())
    assert nft is not None and nft.has_table("ip", "kube-proxy") and nft.version == "1.0.6"
    e1 = parse_nft_structure((E1 / "nft-ruleset.json").read_text())
    assert e1 is not None and ("ip", "nat") in e1.xt_tables and not e1.has_table("ip", "kube-proxy")
    assert parse_nft_structure("{") is not None and not parse_nft_structure("{").valid  # type: ignore[union-attr]


def test_node_summary_reads_nft_tables_through_the_one_light_reader() -> None:
    """`NodeSummary.nft_tables` comes from `parse_nft_structure` (no third nft JSON reader); hostile JSON
    (malformed, absurdly deep, not an object) gives no tables rather than an error."""
    from kpdoctor.node.state import Fact, NodeState
    from kpdoctor.node.summary import summarize

    for node_dir in (E1, E2):
        text = (node_dir / "nft-ruleset.json").read_text()
        state = NodeState("n", "bundle", {"nft-ruleset.json": Fact(key="nft-ruleset.json", content=text)})
        nft = parse_nft_structure(text)
        assert nft is not None and nft.tables
        assert summarize(state).nft_tables == tuple(f"{f} {n}" for f, n in nft.tables)
    for hostile in ("{", "[" * 100000 + "]" * 100000, '"nftables"', '{"nftables": {"table": 1}}', ""):
        state = NodeState("n", "bundle", {"nft-ruleset.json": Fact(key="nft-ruleset.json", content=hostile)})
        assert summarize(state).nft_tables == ()
        found = parse_nft_structure(hostile)
        assert found is not None and found.tables == ()
