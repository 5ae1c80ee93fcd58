"""What the kernel-proof tests of `kpdoctor trace` share (tests/lab/test_trace_kernel.py: conntrack over
repeated connections; tests/lab/test_trace_nft_monitor.py: the kernel's own `nft monitor trace`): the captured
rulesets, the client addresses, the host firewall added on top, and the packet sender run in a client netns."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from kpdoctor.lab import netns

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "trace"
RULES = FIXTURES / "edge-1-iptables-nft-save.txt"
NFT_RULES = FIXTURES / "edge-2-nft-ruleset.json"
NODE_IPS = {"iptables": "10.81.0.2", "nftables": "10.82.0.2"}  # each node's InternalIP in the capture
CLIENT_NET = "203.0.113"  # TEST-NET-3
GOOD_CLIENT, BLOCKED_CLIENT, REJECTED_CLIENT = f"{CLIENT_NET}.10", f"{CLIENT_NET}.66", f"{CLIENT_NET}.77"
# host firewall on top of kube-proxy (what ufw / an admin adds): inserted first in their chains
FIREWALL = (
    ["-I", "FORWARD", "1", "-s", f"{BLOCKED_CLIENT}/32", "-j", "DROP"],
    ["-I", "INPUT", "1", "-s", f"{REJECTED_CLIENT}/32", "-p", "tcp", "-j", "REJECT", "--reject-with", "tcp-reset"],
)
NFT_FIREWALL = f"""
table inet kpd-hostfw {{
    chain hostfw-forward {{ type filter hook forward priority 0; policy accept; ip saddr {BLOCKED_CLIENT} drop; }}
    chain hostfw-input {{ type filter hook input priority 0; policy accept; ip saddr {REJECTED_CLIENT} meta l4proto tcp reject with tcp reset; }}
}}
"""


def kube_proxy_table_only(text: str) -> str:
    """The `ip kube-proxy` table's objects of an `nft -j list ruleset` dump, as an `nft -j -f` input."""

    def ours(kind: str, body: object) -> bool:
        if not isinstance(body, dict) or body.get("family") != "ip":
            return False
        return body.get("name" if kind == "table" else "table") == "kube-proxy"

    doc = [o for o in json.loads(text)["nftables"] if "metainfo" in o or any(ours(k, v) for k, v in o.items())]
    order = {"metainfo": 0, "table": 1, "chain": 2, "set": 3, "map": 3, "rule": 4}  # maps name chains: chains first
    return json.dumps({"nftables": sorted(doc, key=lambda o: order.get(next(iter(o)), 5))})


SENDER = textwrap.dedent("""
    import socket, sys, time
    src, dst, dport, proto, base, count = sys.argv[1:7]
    socks = []
    for i in range(int(count)):
        kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
        s = socket.socket(socket.AF_INET, kind)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((src, int(base) + i))
        s.setblocking(False)
        if proto == "tcp":
            s.connect_ex((dst, int(dport)))
        else:
            s.sendto(b"kpdoctor-trace", (dst, int(dport)))
        socks.append(s)
    time.sleep(0.3)
    for s in socks:
        s.close()
""")


def wire_trace_lab(node: str, client: str, pods: str, node_ip: str) -> None:
    """Create the three namespaces of a kernel trace lab: a client (good, blocked and rejected source addresses)
    on a veth to the node (`node_ip`), and the pods behind a second veth from the node: a forwarded packet leaves
    the node there (after POSTROUTING, where conntrack confirms it); nothing answers, so no connection completes.
    The caller removes the namespaces."""
    netns.create(node)
    netns.create(client)
    netns.veth(client, "c0", node, "n0")
    netns.add_address(client, "c0", f"{GOOD_CLIENT}/24")
    for extra in (BLOCKED_CLIENT, REJECTED_CLIENT):
        netns.add_address(client, "c0", f"{extra}/32")
    netns.add_address(node, "n0", f"{CLIENT_NET}.1/24")
    netns.add_address(node, "n0", f"{node_ip}/32")
    netns.add_route(client, "10.0.0.0/8", via=f"{CLIENT_NET}.1")
    netns.create(pods)
    netns.veth(node, "pods0", pods, "p0")
    netns.add_route(node, "10.244.0.0/16", dev="pods0")
    netns.add_route(node, "default", dev="pods0")  # a real node has a default route
    netns.sysctl(node, "net.ipv4.ip_forward", "1")
