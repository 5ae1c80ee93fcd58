"""`kpdoctor proxier render --mode nftables` through the real console script: families and versions.

Golden data: what REAL kube-proxy v1.36.2 (nftables mode, dual-stack as it always is on Linux) left on
its node, tests/fixtures/kube-proxy-v1.36/*/nftables/nft-ruleset.txt: both `ip` and `ip6` tables, even on
IPv4-only nodes. The root test applies the CLI's output with the real `nft -f` in a fresh network
namespace and compares `nft list ruleset` with the golden text after tests/support/nft.py's normalization.
No kube-proxy 1.31-1.35 output is stored here: the version tests check the layout differences that
kpdoctor/proxier/nftables.py documents (read from upstream source/tests) and that the real `nft` accepts them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from kpdoctor.proxier.nftables import render_nftables, render_nftables_families
from tests.support.nft import (
    GOLDEN,
    GOLDEN_SERVICE_CIDRS,
    apply_and_list,
    assert_golden,
    nft_scenarios,
    normalize,
    scenario_inputs,
)

KPDOCTOR = shutil.which("kpdoctor")  # no skip without it: `pip install -e .` provides it
SCENARIOS = nft_scenarios()
V1 = GOLDEN / "V1-basic-clusterip"
V2 = GOLDEN / "V2-nodeport-lb"
CIDR_FLAGS = [a for c in GOLDEN_SERVICE_CIDRS for a in ("--service-cidr", c)]


def nft_node(scenario: Path) -> str:
    return next(line.split()[1] for line in (scenario / "node.txt").read_text().splitlines()
                if line.startswith("nftables "))  # fmt: skip


def run(*args: str) -> subprocess.CompletedProcess[str]:
    assert KPDOCTOR is not None, "the kpdoctor console script is not installed (pip install -e .)"
    return subprocess.run([KPDOCTOR, *args], capture_output=True, text=True, timeout=120)


def render(snapshot: Path, node: str, *extra: str) -> str:
    proc = run("proxier", "render", "--snapshot", str(snapshot), "--node", node, "--mode", "nftables", *extra)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def tables(text: str) -> list[str]:
    return [line.split(" {")[0] for line in text.splitlines() if line.startswith("add table ")]


# ---- families --------------------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", [V1, V2], ids=lambda p: p.name)
def test_default_is_both_families_like_the_library(scenario: Path) -> None:
    """Default output == render_nftables_families over IPv4 + IPv6 (what the golden test renders)."""
    out = render(scenario / "cluster", nft_node(scenario), *CIDR_FLAGS)
    assert tables(out) == ["add table ip kube-proxy", "add table ip6 kube-proxy"]
    assert out == render_nftables_families(scenario_inputs(scenario), service_cidrs=GOLDEN_SERVICE_CIDRS)
    assert render(scenario / "cluster", nft_node(scenario), *CIDR_FLAGS, "--family", "both") == out


def test_single_family_still_works() -> None:
    node = nft_node(V1)
    v4 = render(V1 / "cluster", node, *CIDR_FLAGS, "--family", "IPv4")
    v6 = render(V1 / "cluster", node, *CIDR_FLAGS, "--family", "IPv6")
    assert tables(v4) == ["add table ip kube-proxy"] and tables(v6) == ["add table ip6 kube-proxy"]
    inp4, inp6 = scenario_inputs(V1)
    assert v4 == render_nftables(inp4, service_cidrs=GOLDEN_SERVICE_CIDRS)
    assert v6 == render_nftables(inp6, service_cidrs=GOLDEN_SERVICE_CIDRS)
    assert v4 + v6 == render(V1 / "cluster", node, *CIDR_FLAGS)


def test_both_is_refused_outside_nftables_mode() -> None:
    proc = run("proxier", "render", "--snapshot", str(V1 / "cluster"), "--node", "kpnode1", "--mode", "iptables",
               "--family", "both")  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("kpdoctor: error: --family both: only nftables mode")
    proc = run("proxier", "render", "--snapshot", str(V1 / "cluster"), "--node", "kpnode1", "--family", "IPv7")
    assert proc.returncode == 2 and "--family 'IPv7'" in proc.stderr


def test_iptables_default_is_still_one_family() -> None:
    proc = run("proxier", "render", "--snapshot", str(V1 / "cluster"), "--node", "kpnode1", "--mode", "iptables")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("*nat\n") == 1 and "IPv4" in proc.stdout.splitlines()[0]


@pytest.mark.root("nft")
@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda p: p.name)
def test_cli_output_applied_equals_the_golden(scenario: Path) -> None:
    """CLI (default families) -> nft -f in a fresh netns -> nft list ruleset == real kube-proxy v1.36.2's."""
    listed, _ = apply_and_list(render(scenario / "cluster", nft_node(scenario), *CIDR_FLAGS))
    assert_golden(scenario, listed)


# ---- --kube-proxy-version ----------------------------------------------------------------------------


def chains(text: str) -> set[str]:
    return {line.split()[4] for line in text.splitlines() if line.startswith("add chain ")}


def test_version_selects_the_layout() -> None:
    """1.32 (filter-prerouting layout) vs 1.36 (golden layout), as documented in proxier/nftables.py."""
    node = nft_node(V1)
    old = render(V1 / "cluster", node, "--kube-proxy-version", "1.32")
    new = render(V1 / "cluster", node, "--kube-proxy-version", "1.36")
    assert new == render(V1 / "cluster", node)  # no image tag in this snapshot: the default is 1.36
    old_chains, new_chains = chains(old), chains(new)
    # 1.31-1.32: filter chains at dstnat-10, filter-output-post-dnat, a mark-for-masquerade chain
    assert {"filter-prerouting", "filter-output-post-dnat", "mark-for-masquerade"} <= old_chains
    assert "add chain ip kube-proxy filter-input { type filter hook input priority -110 ; }" in old  # dstnat-10
    assert "add chain ip kube-proxy filter-output-post-dnat { type filter hook output priority -90 ; }" in old
    inline_mark = "meta mark set meta mark | 0x00004000"
    # 1.32: the mark is set only inside mark-for-masquerade; the ClusterIP masquerade rule sits in the
    # service chain with a port match; endpoint chains carry the hairpin `ip saddr <ep> jump` rule
    assert [line for line in old.splitlines() if inline_mark in line] == [
        "add rule ip kube-proxy mark-for-masquerade meta mark set meta mark | 0x00004000",
        "add rule ip6 kube-proxy mark-for-masquerade meta mark set meta mark | 0x00004000",
    ]
    assert ("add rule ip kube-proxy service-2QRHZV4L-default/kubernetes/tcp/https ip daddr 10.96.0.1 tcp dport 443 "
            "ip saddr != 10.244.0.0/16 jump mark-for-masquerade") in old.splitlines()
    assert ("add rule ip kube-proxy endpoint-ALDJ6Y52-default/kubernetes/tcp/https__10.77.0.1/6443 "
            "ip saddr 10.77.0.1 jump mark-for-masquerade") in old.splitlines()
    assert "hairpin-connections" not in old and "@cluster-ips ip saddr" not in old
    # 1.36: pre-dnat chains, other filter chains at 0, no mark-for-masquerade chain (inline mark), the
    # ClusterIP masquerade rule in `services` on @cluster-ips, hairpin set, inline numgen DNAT
    assert {"filter-prerouting-pre-dnat", "filter-output-pre-dnat"} <= new_chains
    assert "add chain ip kube-proxy filter-input { type filter hook input priority 0 ; }" in new
    assert not {"filter-prerouting", "filter-output-post-dnat", "mark-for-masquerade"} & new_chains
    assert "jump mark-for-masquerade" not in new and "hairpin-connections" in new
    assert ("add rule ip kube-proxy services ip daddr @cluster-ips ip saddr != 10.244.0.0/16 " + inline_mark
            + ' comment "masquerade clusterIP traffic from outside cluster"') in new.splitlines()
    assert "dnat ip to numgen random mod" in new and "dnat ip to numgen random mod" not in old
    # 1.32 keeps per-endpoint chains with the hairpin rule; 1.36 has endpoint chains only for affinity (none in V1)
    assert any(c.startswith("endpoint-") for c in old_chains)
    assert not any(c.startswith("endpoint-") for c in new_chains)


def test_version_1_33_is_the_middle_layout() -> None:
    mid = render(V1 / "cluster", nft_node(V1), "--kube-proxy-version", "v1.33.4")
    assert {"filter-prerouting-pre-dnat", "mark-for-masquerade"} <= chains(mid)
    assert "filter-output-post-dnat" not in chains(mid) and "hairpin-connections" not in mid


def _with_kube_proxy_image(tmp_path: Path, image: str) -> Path:
    """V1's cluster/ plus a kube-proxy DaemonSet (kubeadm's shape) running `image`."""
    snap = tmp_path / f"cluster-{image.rsplit(':', 1)[-1]}"
    shutil.copytree(V1 / "cluster", snap)
    ds: dict[str, Any] = {
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "kube-proxy", "namespace": "kube-system", "labels": {"k8s-app": "kube-proxy"}},
        "spec": {"selector": {"matchLabels": {"k8s-app": "kube-proxy"}}, "template": {
            "metadata": {"labels": {"k8s-app": "kube-proxy"}},
            "spec": {"containers": [{"name": "kube-proxy", "image": image,
                                     "command": ["/usr/local/bin/kube-proxy",
                                                 "--config=/var/lib/kube-proxy/config.conf",
                                                 "--hostname-override=$(NODE_NAME)"],
                                     "volumeMounts": [{"name": "kube-proxy", "mountPath": "/var/lib/kube-proxy"}]}],
                     "volumes": [{"name": "kube-proxy", "configMap": {"name": "kube-proxy"}}]}}},
    }  # fmt: skip
    (snap / "daemonsets.json").write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": [ds]}))
    return snap


def test_default_version_comes_from_the_kube_proxy_image_tag(tmp_path: Path) -> None:
    node = nft_node(V1)
    snap = _with_kube_proxy_image(tmp_path, "registry.k8s.io/kube-proxy:v1.32.7")
    from_image = render(snap, node)
    assert from_image == render(snap, node, "--kube-proxy-version", "1.32")
    assert "filter-output-post-dnat" in chains(from_image)
    # the flag wins over the image
    assert render(snap, node, "--kube-proxy-version", "1.36") == render(V1 / "cluster", node)


def test_too_old_image_is_a_clear_error(tmp_path: Path) -> None:
    snap = _with_kube_proxy_image(tmp_path, "registry.k8s.io/kube-proxy:v1.29.3")
    proc = run("proxier", "render", "--snapshot", str(snap), "--node", nft_node(V1), "--mode", "nftables")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "v1.31 and later, not v1.29" in proc.stderr
    proc = run("proxier", "render", "--snapshot", str(V1 / "cluster"), "--node", nft_node(V1), "--mode", "nftables",
               "--kube-proxy-version", "latest")  # fmt: skip
    assert proc.returncode == 2 and "--kube-proxy-version 'latest'" in proc.stderr


@pytest.mark.root("nft")
def test_1_32_cli_output_applies() -> None:
    """The real nft accepts the 1.32 layout from the CLI, both families, and lists its base chains."""
    listed, _ = apply_and_list(render(V1 / "cluster", nft_node(V1), *CIDR_FLAGS, "--kube-proxy-version", "1.32"))
    got = normalize(listed)
    for table in ("table ip kube-proxy {", "table ip6 kube-proxy {"):
        assert (table, "chain filter-output-post-dnat {") in got and (table, "chain mark-for-masquerade {") in got
