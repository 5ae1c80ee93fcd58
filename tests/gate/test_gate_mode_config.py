"""`config-carried` of the mode-switch gate, on the real kube-proxy v1.36.2 captures B1 and B4
(tests/fixtures/bundles/README.md). Settings the captures do not have (masqueradeAll, a scheduler, IPVS timeouts,
a tuned sync period, tcpBeLiberal) are edited into a copy of the ConfigMap, and each test says which. IPVS is judged
from configuration and recorded facts only: this kernel has no IPVS (no kube-ipvs0 in any capture)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from kpdoctor.gate.mode_config import config_carried
from kpdoctor.gate.mode_nodes import nodes_of
from kpdoctor.gate.sources import from_bundle

ROOT = Path(__file__).resolve().parents[2]
BUNDLES = ROOT / "tests" / "fixtures" / "bundles"
B1 = BUNDLES / "B1-healthy" / "bundle"
B4 = BUNDLES / "B4-ipvs-unavailable" / "bundle"


def condition(bundle: Path, target: str):  # type: ignore[no-untyped-def]
    src = from_bundle(str(bundle))
    return config_carried(src.cluster, nodes_of(src.cluster, src.nodes), target)


def edited(tmp: Path, src: Path, *pairs: tuple[str, str]) -> Path:
    dst = tmp / "bundle"
    shutil.copytree(src, dst)
    path = dst / "cluster" / "configmaps.json"
    doc = json.loads(path.read_text())
    item = next(i for i in doc["items"] if i["metadata"]["name"] == "kube-proxy")
    for old, new in pairs:
        assert old in item["data"]["config.conf"], old
        item["data"]["config.conf"] = item["data"]["config.conf"].replace(old, new, 1)
    path.write_text(json.dumps(doc))
    return dst


def messages(cond, kind: str) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    return [(r.subject, r.message) for r in cond.all_reasons if r.kind == kind]


def test_b1_to_nftables_warns_about_the_invalid_drop_only() -> None:
    """edge-1 runs iptables with nf_conntrack_tcp_be_liberal = 0 (its sysctl.txt); edge-2 is nftables already."""
    cond = condition(B1, "nftables")
    assert cond.status == "pass"
    [(subject, msg)] = messages(cond, "warning")
    assert subject == "Node edge-1" and "INVALID" in msg and "tcpBeLiberal: true" in msg


def test_tcp_be_liberal_removes_the_warning(tmp_path: Path) -> None:
    """B1 with edge-1's ConfigMap conntrack.tcpBeLiberal edited to true."""
    cond = condition(edited(tmp_path, B1, ("tcpBeLiberal: false", "tcpBeLiberal: true")), "nftables")
    assert cond.all_reasons == ()


def test_masquerade_all_not_carried_over_blocks(tmp_path: Path) -> None:
    """B1 with edge-1's ConfigMap iptables.masqueradeAll edited to true (nftables.masqueradeAll stays false)."""
    bundle = edited(tmp_path, B1, ("iptables:\n  localhostNodePorts: null\n  masqueradeAll: false",
                                   "iptables:\n  localhostNodePorts: null\n  masqueradeAll: true"))
    cond = condition(bundle, "nftables")
    blocked = messages(cond, "blocking")
    assert [s for s, _ in blocked] == ["Node edge-1"]
    assert "iptables.masqueradeAll is true but nftables.masqueradeAll is false" in blocked[0][1]
    assert condition(bundle, "ipvs").status == "pass"  # IPVS reads iptables.masqueradeAll too


def test_tuned_sync_period_and_bit_not_carried_over_warn(tmp_path: Path) -> None:
    """B1 with edge-1's iptables.minSyncPeriod edited to 10s and iptables.masqueradeBit to 12."""
    bundle = edited(tmp_path, B1, ("masqueradeBit: null\n  minSyncPeriod: 1s\n  syncPeriod: 30s\nipvs",
                                   "masqueradeBit: 12\n  minSyncPeriod: 10s\n  syncPeriod: 30s\nipvs"))
    warnings = [m for s, m in messages(condition(bundle, "nftables"), "warning") if s == "Node edge-1"]
    assert any("iptables.masqueradeBit is 12" in m for m in warnings)
    assert any("iptables.syncPeriod/minSyncPeriod (30s/10s) are tuned" in m for m in warnings)


def test_from_ipvs_scheduler_timeouts_and_kube_ipvs0(tmp_path: Path) -> None:
    """B4 (ConfigMap mode ipvs) with ipvs.scheduler edited to lc and ipvs.tcpTimeout to 900s."""
    bundle = edited(tmp_path, B4, ('scheduler: ""', "scheduler: lc"), ("tcpTimeout: 0s", "tcpTimeout: 900s"))
    warnings = [m for s, m in messages(condition(bundle, "nftables"), "warning") if s == "Node edge-1"]
    assert any("ipvs.scheduler 'lc' has no nftables equivalent" in m for m in warnings)
    assert any("ipvs tcpTimeout=900s have no nftables equivalent" in m for m in warnings)
    # B4's edge-1 has no kube-ipvs0 (kube-proxy never ran IPVS there): no binding change is claimed
    assert not any("kube-ipvs0" in m for m in warnings)


def test_to_ipvs_warns_about_kube_ipvs0_binding() -> None:
    cond = condition(B1, "ipvs")
    msgs = [m for _, m in messages(cond, "warning")]
    assert len(msgs) == 2 and all("binds every ClusterIP and external IP (7 here) to kube-ipvs0" in m for m in msgs)
