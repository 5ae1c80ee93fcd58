"""ServiceCIDRs end to end: live loader -> bundle -> snapshot -> `proxier render --mode nftables`.

kube-proxy's nftables mode adds `ip daddr { <ServiceCIDRs> } drop comment "Drop traffic to unallocated
ClusterIPs"` to `cluster-ips-check` when it knows the cluster's ServiceCIDRs (networking.k8s.io/v1). The
golden capture (real kube-apiserver + kube-proxy v1.36.2, --service-cluster-ip-range=10.96.0.0/16) has that
rule, but its recorded cluster/ holds no ServiceCIDR objects. The ServiceCIDR objects used here are therefore
hand-written in the shape the apiserver serves its default `kubernetes` ServiceCIDR (no kube-apiserver can run
here); the live-loader tests drive the REAL kubernetes client against a loopback replay server (recorded B1
objects + these ServiceCIDRs, real limit/continue pagination), and the root test applies the CLI's output
with the real `nft -f` in a throwaway network namespace.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from kpdoctor.cluster.live import load_live
from kpdoctor.cluster.snapshot import load_snapshot
from kpdoctor.node.bundle import read_bundle
from tests.support.nft import GOLDEN, apply_and_list, normalize
from tests.support.replay_api import Replay, serve_replay

V1 = GOLDEN / "V1-basic-clusterip"
V1_NFT_NODE = "kpnode2"
GOLDEN_RULE = 'ip daddr 10.96.0.0/16 drop comment "Drop traffic to unallocated ClusterIPs"'
RENDERED_RULE = ('add rule ip kube-proxy cluster-ips-check ip daddr { 10.96.0.0/16 } drop '
                 'comment "Drop traffic to unallocated ClusterIPs"')
SERVICECIDRS_PATH = "/apis/networking.k8s.io/v1/servicecidrs"
KPDOCTOR = shutil.which("kpdoctor")  # no skip without it: `pip install -e .` provides it


def service_cidr(name: str, *cidrs: str) -> dict[str, Any]:
    """A ServiceCIDR as the apiserver serves it (list items carry no `kind`; the loader sets it)."""
    return {
        "metadata": {"name": name, "uid": f"00000000-0000-4000-8000-{zlib.crc32(name.encode()):012d}",
                     "resourceVersion": "42", "creationTimestamp": "2026-11-26T07:50:00Z",
                     "finalizers": ["networking.k8s.io/service-cidr-finalizer"]},
        "spec": {"cidrs": list(cidrs)},
        "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "",
                                   "lastTransitionTime": "2026-11-26T07:50:00Z",
                                   "message": "Kubernetes Service CIDR is ready"}]},
    }  # fmt: skip


def run(*args: str) -> subprocess.CompletedProcess[str]:
    assert KPDOCTOR is not None, "the kpdoctor console script is not installed (pip install -e .)"
    return subprocess.run([KPDOCTOR, *args], capture_output=True, text=True, timeout=120)


def render_v1(snapshot: Path, *extra: str) -> str:
    proc = run("proxier", "render", "--snapshot", str(snapshot), "--node", V1_NFT_NODE, "--mode", "nftables", *extra)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def snapshot_with(tmp_path: Path, *objects: dict[str, Any]) -> Path:
    """A copy of V1's recorded cluster/ plus a servicecidrs.json List holding `objects`."""
    snap = tmp_path / "cluster"
    shutil.copytree(V1 / "cluster", snap)
    items = [{"apiVersion": "networking.k8s.io/v1", "kind": "ServiceCIDR", **o} for o in objects]
    (snap / "servicecidrs.json").write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
    return snap


# ---- proxier render ------------------------------------------------------------------------------


def test_golden_has_the_rule_the_flag_adds() -> None:
    """The rule we expect is really in what kube-proxy v1.36.2 left on the node (ip table only: IPv4 range)."""
    golden = (V1 / "nftables" / "nft-ruleset.txt").read_text()
    ip_table, ip6_table = golden.split("table ip6 kube-proxy", 1)
    assert GOLDEN_RULE in ip_table and "unallocated" not in ip6_table


def test_flag_adds_the_drop_rule_and_without_it_the_rule_is_omitted() -> None:
    with_flag = render_v1(V1 / "cluster", "--service-cidr", "10.96.0.0/16")
    assert with_flag.count("Drop traffic to unallocated ClusterIPs") == 1
    assert RENDERED_RULE in with_flag.splitlines()
    without = render_v1(V1 / "cluster")
    assert "unallocated" not in without
    # the flag changes exactly that one line
    assert [line for line in with_flag.splitlines() if line not in without.splitlines()] == [RENDERED_RULE]


def test_help_says_the_rule_is_omitted_without_servicecidrs() -> None:
    proc = run("proxier", "render", "--help")
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())
    assert "--service-cidr" in text and "unallocated ClusterIPs" in text and "omitted" in text


def test_snapshot_servicecidr_object_gives_the_same_output_as_the_flag(tmp_path: Path) -> None:
    snap = snapshot_with(tmp_path, service_cidr("kubernetes", "10.96.0.0/16"))
    assert load_snapshot(snap).service_cidrs == ("10.96.0.0/16",)
    assert render_v1(snap) == render_v1(V1 / "cluster", "--service-cidr", "10.96.0.0/16")


def test_flag_overrides_the_snapshot_and_families_are_split(tmp_path: Path) -> None:
    snap = snapshot_with(tmp_path, service_cidr("kubernetes", "10.96.0.0/16"))
    out = render_v1(snap, "--service-cidr", "10.100.0.0/16,fd00:10:96::/112", "--service-cidr", "10.100.0.0/16")
    lines = [line for line in out.splitlines() if "unallocated" in line]
    assert lines == [
        'add rule ip kube-proxy cluster-ips-check ip daddr { 10.100.0.0/16 } drop '
        'comment "Drop traffic to unallocated ClusterIPs"',
        'add rule ip6 kube-proxy cluster-ips-check ip6 daddr { fd00:10:96::/112 } drop '
        'comment "Drop traffic to unallocated ClusterIPs"',
    ]  # fmt: skip


def test_several_servicecidr_objects_and_duplicates(tmp_path: Path) -> None:
    """kube-proxy keeps ServiceCIDRs in a set: a range listed by two objects is one element."""
    snap = snapshot_with(tmp_path, service_cidr("kubernetes", "10.96.0.0/16"),
                         service_cidr("extra", "10.97.0.0/16", "10.96.0.0/16"))  # fmt: skip
    lines = [line for line in render_v1(snap).splitlines() if "unallocated" in line]
    assert lines == ['add rule ip kube-proxy cluster-ips-check ip daddr { 10.96.0.0/16, 10.97.0.0/16 } drop '
                     'comment "Drop traffic to unallocated ClusterIPs"']  # fmt: skip


def test_bad_service_cidr_is_one_line_exit_2() -> None:
    for bad in ("10.96.0.0", "10.96.0.0/33", "not-a-cidr"):
        proc = run("proxier", "render", "--snapshot", str(V1 / "cluster"), "--node", V1_NFT_NODE,
                   "--mode", "nftables", "--service-cidr", bad)  # fmt: skip
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
        assert proc.stderr.startswith("kpdoctor: error: --service-cidr") and repr(bad) in proc.stderr


def test_malformed_servicecidr_in_the_snapshot_is_one_line_exit_2(tmp_path: Path) -> None:
    snap = snapshot_with(tmp_path, service_cidr("kubernetes", "10.96.0.0/16", "ten-ninety-six"))
    proc = run("proxier", "render", "--snapshot", str(snap), "--node", V1_NFT_NODE, "--mode", "nftables")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1
    assert f"kpdoctor: error: {snap}: ServiceCIDR spec.cidrs holds 'ten-ninety-six'" in proc.stderr
    # the flag overrides the snapshot's ServiceCIDRs, so the bad value is not read then
    assert RENDERED_RULE in render_v1(snap, "--service-cidr", "10.96.0.0/16").splitlines()


@pytest.mark.root("nft")
def test_applied_cluster_ips_check_equals_the_golden(tmp_path: Path) -> None:
    """From a snapshot carrying the ServiceCIDR: nft -f + nft list gives the golden `cluster-ips-check` chains."""
    snap = snapshot_with(tmp_path, service_cidr("kubernetes", "10.96.0.0/16"))
    listed, _ = apply_and_list(render_v1(snap))
    want = normalize((V1 / "nftables" / "nft-ruleset.txt").read_text())
    got = normalize(listed)
    for table in ("table ip kube-proxy {", "table ip6 kube-proxy {"):
        key = (table, "chain cluster-ips-check {")
        assert got[key] == want[key], (key, got.get(key), want.get(key))
    assert GOLDEN_RULE in got[("table ip kube-proxy {", "chain cluster-ips-check {")]


# ---- live loader and collect ---------------------------------------------------------------------


class CIDRReplay(Replay):
    """The B1 replay of test_live_loader plus a paginated ServiceCIDR list (None: path not served -> 404)."""

    cidr_items: list[dict[str, Any]] | None = None

    def do_GET(self) -> None:  # noqa: N802
        url = urlparse(self.path)
        if url.path != SERVICECIDRS_PATH or self.cidr_items is None or self.status_all or url.path in self.forbidden:
            super().do_GET()
            return
        self.seen.append(self.path)
        query = parse_qs(url.query)
        limit = int(query.get("limit", ["500"])[0])
        start = int(query.get("continue", ["0"])[0])
        token = str(start + limit) if start + limit < len(self.cidr_items) else ""
        body = {"kind": "ServiceCIDRList", "apiVersion": "networking.k8s.io/v1",
                "metadata": {"resourceVersion": "42", "continue": token},
                "items": self.cidr_items[start : start + limit]}  # fmt: skip
        self._send(200, json.dumps(body).encode())


@pytest.fixture()
def api(tmp_path: Path) -> Iterator[tuple[Path, type[CIDRReplay]]]:
    handler = type("H", (CIDRReplay,), {"forbidden": set(), "status_all": None, "seen": [], "cidr_items": None})
    with serve_replay(handler, tmp_path) as kubeconfig:
        yield kubeconfig, handler


def test_live_lists_servicecidrs_paginated(api: tuple[Path, type[CIDRReplay]], monkeypatch: pytest.MonkeyPatch) -> None:
    kubeconfig, handler = api
    handler.cidr_items = [service_cidr("kubernetes", "10.96.0.0/16", "fd00:10:96::/112"),
                          service_cidr("extra", "10.97.0.0/16")]  # fmt: skip
    monkeypatch.setattr("kpdoctor.cluster.live.PAGE", 1)
    result = load_live(str(kubeconfig), with_logs=False)
    assert result.state.service_cidrs == ("10.96.0.0/16", "fd00:10:96::/112", "10.97.0.0/16")
    assert result.gaps == [] and [o["kind"] for o in result.objects["servicecidrs"]] == ["ServiceCIDR"] * 2
    cidr_requests = [p for p in handler.seen if p.startswith(SERVICECIDRS_PATH)]
    assert len(cidr_requests) == 2 and "continue=1" in cidr_requests[1] and "limit=1" in cidr_requests[0]


def test_live_forbidden_servicecidrs_is_a_gap(api: tuple[Path, type[CIDRReplay]]) -> None:
    kubeconfig, handler = api
    handler.cidr_items = [service_cidr("kubernetes", "10.96.0.0/16")]
    handler.forbidden.add(SERVICECIDRS_PATH)
    result = load_live(str(kubeconfig), with_logs=False)
    assert [(g.kind, "403" in g.reason) for g in result.state.gaps] == [("ServiceCIDR", True)]
    assert result.state.service_cidrs == () and len(result.state.services) == 7
    assert "servicecidrs" not in result.objects


def test_live_cluster_without_the_api_has_none(api: tuple[Path, type[CIDRReplay]]) -> None:
    """A cluster older than 1.33 answers 404 on the path: no ServiceCIDRs, no gap (kube-proxy sees none too)."""
    kubeconfig, handler = api
    result = load_live(str(kubeconfig), with_logs=False)
    assert result.state.service_cidrs == () and result.gaps == []
    assert result.objects["servicecidrs"] == []
    assert any(p.startswith(SERVICECIDRS_PATH) for p in handler.seen)


def test_collect_writes_servicecidrs_and_render_uses_them(api: tuple[Path, type[CIDRReplay]], tmp_path: Path) -> None:
    kubeconfig, handler = api
    handler.cidr_items = [service_cidr("kubernetes", "10.96.0.0/16")]
    out = tmp_path / "bundle"
    proc = run("collect", "-f", str(out), "--no-nodes", "--kubeconfig", str(kubeconfig))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((out / "cluster" / "servicecidrs.json").read_text())
    assert [(i["kind"], i["metadata"]["name"], i["spec"]["cidrs"]) for i in doc["items"]] == [
        ("ServiceCIDR", "kubernetes", ["10.96.0.0/16"])]
    manifest = json.loads((out / "manifest.json").read_text())
    assert "servicecidrs.json" in manifest["cluster"]["files"]
    assert read_bundle(out).cluster_state().service_cidrs == ("10.96.0.0/16",)


def test_collect_with_forbidden_servicecidrs_records_the_gap(api: tuple[Path, type[CIDRReplay]],
                                                             tmp_path: Path) -> None:  # fmt: skip
    kubeconfig, handler = api
    handler.forbidden.add(SERVICECIDRS_PATH)
    out = tmp_path / "bundle"
    proc = run("collect", "-f", str(out), "--no-nodes", "--kubeconfig", str(kubeconfig))
    assert proc.returncode == 0, proc.stderr
    assert not (out / "cluster" / "servicecidrs.json").exists()
    gaps = json.loads((out / "manifest.json").read_text())["cluster"]["gaps"]
    assert [g["kind"] for g in gaps] == ["ServiceCIDR"] and "403" in gaps[0]["reason"]


def test_collect_from_snapshot_keeps_servicecidrs_only_when_present(tmp_path: Path) -> None:
    snap = snapshot_with(tmp_path, service_cidr("kubernetes", "10.96.0.0/16"))
    proc = run("collect", "-f", str(tmp_path / "with"), "--no-nodes", "--snapshot", str(snap))
    assert proc.returncode == 0, proc.stderr
    assert read_bundle(tmp_path / "with").cluster_state().service_cidrs == ("10.96.0.0/16",)
    proc = run("collect", "-f", str(tmp_path / "without"), "--no-nodes", "--snapshot", str(V1 / "cluster"))
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "without" / "cluster" / "servicecidrs.json").exists()
    assert (tmp_path / "without" / "cluster" / "services.json").exists()
