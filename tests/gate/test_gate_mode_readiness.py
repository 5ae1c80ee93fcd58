"""`userland-ready` of `kpdoctor gate mode-switch`: nft >= 1.0.1, ipset, strictARP with MetalLB/kube-vip, conntrack.

B1 is the real kube-proxy v1.36.2 capture (tests/fixtures/bundles/README.md). The shapes it lacks are added to a
copy and said so: an old nft version, a kube-vip DaemonSet in ARP mode (the shape `kube-vip manifest
daemonset --services --inCluster --arp` writes, as in kube-vip's docs: DaemonSet `kube-vip-ds` in `kube-system`,
image `ghcr.io/kube-vip/kube-vip`, env `vip_arp: "true"`), `ipvs.strictARP: true`. IPVS itself is judged from recorded facts only: this kernel has no IPVS.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from kpdoctor.gate.mode_nodes import nodes_of
from kpdoctor.gate.mode_readiness import l2_announcers, userland_ready
from kpdoctor.gate.mode_switch import run_mode_switch
from kpdoctor.gate.sources import from_bundle

ROOT = Path(__file__).resolve().parents[2]
B1 = ROOT / "tests" / "fixtures" / "bundles" / "B1-healthy" / "bundle"
KUBE_VIP = {"apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "kube-vip-ds", "namespace": "kube-system",
                         "labels": {"app.kubernetes.io/name": "kube-vip-ds"}},
            "spec": {"selector": {"matchLabels": {"app.kubernetes.io/name": "kube-vip-ds"}},
                     "template": {"metadata": {"labels": {"app.kubernetes.io/name": "kube-vip-ds"}},
                                  "spec": {"hostNetwork": True, "containers": [
                                      {"name": "kube-vip", "image": "ghcr.io/kube-vip/kube-vip:v0.8.0",
                                       "args": ["manager"],
                                       "env": [{"name": "vip_arp", "value": "true"},
                                               {"name": "svc_enable", "value": "true"}]}]}}},
            "status": {}}


def copy_b1(tmp: Path) -> Path:
    dst = tmp / "bundle"
    shutil.copytree(B1, dst)
    return dst


def condition(bundle: Path, target: str):  # type: ignore[no-untyped-def]
    src = from_bundle(str(bundle))
    return userland_ready(src.cluster, nodes_of(src.cluster, src.nodes), target)


def test_b1_nft_106_and_conntrack_pass() -> None:
    cond = condition(B1, "nftables")
    assert cond.status == "pass" and cond.all_reasons == ()
    assert any("nft 1.0.6" in e for e in cond.evidence) and any("conntrack -S" in e for e in cond.evidence)


def test_old_nft_blocks(tmp_path: Path) -> None:
    """B1 with edge-1's nft-ruleset.json metainfo version edited to 0.9.8."""
    bundle = copy_b1(tmp_path)
    path = bundle / "nodes" / "edge-1" / "nft-ruleset.json"
    path.write_text(path.read_text().replace('"version": "1.0.6"', '"version": "0.9.8"', 1))
    cond = condition(bundle, "nftables")
    assert cond.status == "fail"
    assert [(r.subject, r.kind) for r in cond.all_reasons] == [("Node edge-1", "blocking")]
    assert "nft 0.9.8 is older than the 1.0.1" in cond.all_reasons[0].message


def test_unknown_nft_and_missing_conntrack_are_not_evaluated_warnings(tmp_path: Path) -> None:
    """B1 with edge-1's nft-ruleset.json and conntrack-stats.txt removed."""
    bundle = copy_b1(tmp_path)
    (bundle / "nodes" / "edge-1" / "nft-ruleset.json").unlink()
    (bundle / "nodes" / "edge-1" / "conntrack-stats.txt").unlink()
    cond = condition(bundle, "nftables")
    kinds = [(r.subject, r.kind) for r in cond.all_reasons]
    assert kinds == [("Node edge-1", "warning"), ("Node edge-1", "warning")]
    assert cond.all_reasons[0].message.startswith("not evaluated: the nft version was not collected")


def test_kube_vip_arp_with_ipvs_needs_strict_arp(tmp_path: Path) -> None:
    bundle = copy_b1(tmp_path)
    path = bundle / "cluster" / "daemonsets.json"
    doc = json.loads(path.read_text())
    doc["items"].append(KUBE_VIP)
    path.write_text(json.dumps(doc))
    src = from_bundle(str(bundle))
    assert l2_announcers(src.cluster) == ["DaemonSet kube-system/kube-vip-ds (kube-vip)"]
    cond = condition(bundle, "ipvs")
    blocked = [r for r in cond.all_reasons if r.kind == "blocking"]
    assert {r.subject for r in blocked} == {"Node edge-1", "Node edge-2"}
    assert "strictARP: true" in blocked[0].message
    assert run_mode_switch(src.cluster, src.nodes, target="ipvs").exit_code == 1
    # strictARP set in both ConfigMaps: proven
    cm = bundle / "cluster" / "configmaps.json"
    text = cm.read_text()
    assert text.count("strictARP: false") == 2
    cm.write_text(text.replace("strictARP: false", "strictARP: true"))
    cond = condition(bundle, "ipvs")
    assert [r for r in cond.all_reasons if r.kind == "blocking"] == []
    assert sum("ipvs.strictARP: true" in e for e in cond.evidence) == 2


def test_no_announcer_seen_warns_for_loadbalancers() -> None:
    """B1 has a LoadBalancer Service (storefront/gateway) and strictARP false: said, not blocking."""
    cond = condition(B1, "ipvs")
    assert cond.status == "pass"
    assert {r.subject for r in cond.all_reasons if "strictARP is false" in r.message} == {"Node edge-1",
                                                                                          "Node edge-2"}
    assert any("ipset list" in e for e in cond.evidence)


def test_kube_vip_in_bgp_mode_is_not_an_arp_announcer(tmp_path: Path) -> None:
    """The same kube-vip DaemonSet with vip_arp "false" (BGP): no strict ARP needed."""
    bundle = copy_b1(tmp_path)
    path = bundle / "cluster" / "daemonsets.json"
    doc = json.loads(path.read_text())
    vip = json.loads(json.dumps(KUBE_VIP))
    vip["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"] = "false"
    doc["items"].append(vip)
    path.write_text(json.dumps(doc))
    assert l2_announcers(from_bundle(str(bundle)).cluster) == []
