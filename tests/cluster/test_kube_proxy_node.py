"""kpdoctor.cluster.kube_proxy_node: a node's kube-proxy mode from its config, and from its log."""

from __future__ import annotations

from pathlib import Path

from kpdoctor.cluster.config import KubeProxyConfig
from kpdoctor.cluster.kube_proxy_node import (
    PROXY_MODES,
    configured_mode,
    is_proxy_mode,
    logged_mode,
    resolve_mode,
)
from kpdoctor.cluster.state import NodeProxyConfig

LOGS = Path(__file__).resolve().parents[1] / "fixtures" / "bundles" / "B1-healthy" / "bundle" / "cluster" / "logs" / "kube-system"


def test_proxy_modes_are_kube_proxys_three() -> None:
    assert PROXY_MODES == ("iptables", "nftables", "ipvs")


def test_is_proxy_mode_accepts_only_the_three() -> None:
    assert all(is_proxy_mode(m) for m in PROXY_MODES)
    # "" is the default (resolved by resolve_mode first); userspace/kernelspace are gone or Windows-only
    assert not any(is_proxy_mode(m) for m in ("", "userspace", "kernelspace", "IPVS", None))


def test_resolve_mode_default_depends_on_version() -> None:
    assert resolve_mode("nftables", (1, 33)) == ("nftables", 'mode: "nftables"')
    mode, why = resolve_mode("", (1, 31))
    assert mode == "iptables" and "v1.31" in why
    mode, why = resolve_mode("", None)
    assert mode == "iptables" and "assumed" in why
    mode, why = resolve_mode("", (1, 37))
    assert mode == "iptables" and "confirm with /proxyMode" in why


def test_configured_mode_unpacks_and_names_its_source() -> None:
    assert configured_mode(None, (1, 36)) is None
    source = NodeProxyConfig(KubeProxyConfig(mode="ipvs"), "ConfigMap kube-system/kube-proxy")
    found = configured_mode(source, (1, 36))
    assert found is not None
    mode, why, origin = found
    assert (mode, why, origin) == ("ipvs", 'mode: "ipvs"', source) and found.source is source


def test_logged_mode_reads_the_last_using_line_of_real_logs() -> None:
    ipt = (LOGS / "kube-proxy-fn2sb.log").read_text(encoding="utf-8")
    nft = (LOGS / "kube-proxy-nftables-2vwpn.log").read_text(encoding="utf-8")
    assert logged_mode(ipt) is not None and logged_mode(ipt)[0] == "iptables"  # type: ignore[index]
    assert logged_mode(nft) is not None and logged_mode(nft)[0] == "nftables"  # type: ignore[index]
    both = ipt + "\n" + nft
    assert logged_mode(both)[0] == "nftables"  # type: ignore[index]
    assert logged_mode("") is None and logged_mode(None) is None and logged_mode("no mode here") is None
