"""Rebuild the demo bundle (`kpdoctor/demo/bundle/`) from the real captures in tests/fixtures/bundles.

    sudo python3 -m kpdoctor.demo.build_demo            # needs root: network namespaces + netfilter

What it does (kpdoctor/demo/README.md explains why):
1. copies B2-stale-endpoint (real kube-apiserver + kube-proxy v1.36.2 capture: kube-proxy on edge-1
   SIGKILLed and crash-looping, so edge-1 still DNATs to a deleted pod IP) as the base;
2. in a fresh network namespace, plants a Docker-style `iptables -P FORWARD DROP` with real
   iptables-nft and sets net.ipv4.ip_forward=0, then dumps what real netfilter holds
   (`nft -j list ruleset`, `iptables-nft-save`, `sysctl net.ipv4.ip_forward`) into edge-2's files:
   the planted nf_tables table is appended to edge-2's captured ruleset, whose kube-proxy tables
   stay byte-for-byte as captured.

The host's own ruleset is never touched: every netfilter command runs under `ip netns exec`.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
SOURCE = REPO / "tests" / "fixtures" / "bundles" / "B2-stale-endpoint" / "bundle"
TARGET = HERE / "bundle"


def _ns(ns: str, *argv: str) -> str:
    proc = subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True, text=True, timeout=60,
                          check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed in {ns}: {proc.stderr.strip()}")
    return proc.stdout


def merge_ruleset(captured: str, planted: str) -> str:
    """The captured `nft -j list ruleset` with the planted namespace's tables appended.

    The kube-proxy tables stay byte-for-byte as captured (loading them back through
    `nft -j -f` would drop their set comments on nft 1.0.6); the planted table is what
    real iptables-nft wrote into real nf_tables, renumbered after the captured tables.
    """
    base = json.loads(captured)
    extra = [x for x in json.loads(planted)["nftables"] if "metainfo" not in x]
    next_handle = 1 + max((x["table"]["handle"] for x in base["nftables"] if "table" in x), default=0)
    offset = next_handle - min((x["table"]["handle"] for x in extra if "table" in x), default=next_handle)
    for item in extra:
        if "table" in item:
            item["table"]["handle"] += offset
    base["nftables"].extend(extra)
    return json.dumps(base, separators=(",", ":")) + "\n"


def build() -> None:
    if not SOURCE.is_dir():
        sys.exit(f"missing {SOURCE}")
    if TARGET.exists():
        shutil.rmtree(TARGET)
    shutil.copytree(SOURCE, TARGET)
    node = TARGET / "nodes" / "edge-2"
    ns = f"kpd-demo-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", ns], check=True, timeout=30)
    try:
        # planted fault 1: Docker-style FORWARD policy DROP, written by real iptables-nft into nf_tables
        _ns(ns, "iptables-nft", "-P", "FORWARD", "DROP")
        # planted fault 2: forwarding off (a node that lost its sysctl.d setting after a reboot)
        _ns(ns, "sysctl", "-q", "-w", "net.ipv4.ip_forward=0")
        planted = _ns(ns, "nft", "-j", "list", "ruleset")
        save = _ns(ns, "iptables-nft-save")
        forward = _ns(ns, "sysctl", "net.ipv4.ip_forward").strip()
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False, timeout=30)
    ruleset = node / "nft-ruleset.json"
    ruleset.write_text(merge_ruleset(ruleset.read_text(), planted))
    (node / "iptables-save.txt").write_text(save)  # `iptables` is the nf_tables backend on this node
    (node / "iptables-nft-save.txt").write_text(save)
    lines = (node / "sysctl.txt").read_text().splitlines()
    (node / "sysctl.txt").write_text(
        "\n".join(forward if line.startswith("net.ipv4.ip_forward ") else line for line in lines) + "\n")
    print(f"demo bundle written to {TARGET}")


if __name__ == "__main__":
    build()
