"""What the kernel-proof tests of `kpdoctor trace` share (tests/lab/test_trace_kernel.py: conntrack over
repeated connections; tests/lab/test_trace_nft_monitor.py: the kernel's own `nft monitor trace`): the captured
rulesets, the client addresses, the host firewall added on top, and the packet sender run in a client netns."""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path
from types import MappingProxyType

from kpdoctor.cluster.state import ClusterState
from kpdoctor.lab import netns
from kpdoctor.node.conntrack_text import parse_conntrack_entries
from kpdoctor.node.state import Fact, NodeState
from kpdoctor.trace.addresses import Endpoint
from kpdoctor.trace.run import TraceRequest, TraceResult, endpoint_set, run_trace

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "trace"
REAL_FIREWALLS = Path(__file__).resolve().parents[1] / "fixtures" / "realworld" / "firewalls"
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


# what a kernel-proof module needs on the machine (its root marker and require_root)
KERNEL_TOOLS = ("ip", "iptables-nft-restore", "iptables-nft-save", "iptables-nft", "nft", "conntrack", "nfacct")


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
        try:  # a locally generated packet that a rule rejects fails here (EPERM): the kernel's answer, not an error
            if proto == "tcp":
                s.connect_ex((dst, int(dport)))
            else:
                s.sendto(b"kpdoctor-trace", (dst, int(dport)))
        except OSError:
            pass
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


SPORT_BASE = 41000
POD_SRC, POD_GW = "10.244.250.5", "10.244.250.1"  # a pod address behind the node's pods0 (and its gateway)


def wire_pod_source(node: str, pods: str) -> None:
    """Give the pods namespace a pod address (POD_SRC) that sends through the node's pods0 (gateway POD_GW)."""
    netns.add_address(node, "pods0", f"{POD_GW}/32")
    netns.add_address(pods, "p0", f"{POD_SRC}/32")
    netns.add_route(pods, "default", via=POD_GW, dev="p0", onlink=True)


def kernel_outcome(node: str, sender: str, src: str, dst: str, dport: int, proto: str, count: int) -> list[str]:
    """Send `count` connections from `src` (in namespace `sender`, which may be the node itself) and read the
    node's conntrack table: the DNAT target ("ip:port", "" when not translated) of each confirmed connection.
    No entry: a rule dropped or rejected the packet before conntrack confirmed it."""
    netns.run(["conntrack", "-F"], netns=node, check=False)
    netns.run(["python3", "-c", SENDER, src, dst, str(dport), proto, str(SPORT_BASE), str(count)], netns=sender,
              timeout=30)
    listed = netns.run(["conntrack", "-L", "-p", proto, "--orig-src", src, "--orig-dst", dst], netns=node,
                       check=False).stdout
    out = []
    for e in parse_conntrack_entries(listed):
        if e.dport != dport or not SPORT_BASE <= (e.sport or 0) < SPORT_BASE + count:
            continue
        translated = e.reply_src != dst or e.reply_sport != dport
        out.append(f"{e.reply_src}:{e.reply_sport}" if translated else "")
    return out


def trace_in_lab(mode: str, dump: str, ip_addr: str | None, src: str, dst: str, dport: int, proto: str,
                 iif: str | None, cluster: ClusterState | None = None, node: str = "lab-node",
                 sport: int = SPORT_BASE, ipset_list: str | None = None,
                 ) -> tuple[TraceResult, dict[str, float], set[str]]:
    """Trace one packet on what the namespace's kernel dumped (`iptables-nft-save` or `nft -j list ruleset`) with
    its own `ip -j addr` (None: as if not collected; then `cluster`, the cluster state of Node `node`, is what the
    trace knows of the node's addresses): (the result, endpoint -> probability over branches that assumed
    nothing, every DNAT target ("" when not translated) any accepted branch reaches)."""
    dump_fact = "iptables-nft-save.txt" if mode == "iptables" else "nft-ruleset.json"
    facts = {
        dump_fact: Fact(dump_fact, dump, dump_fact, 0),
        "sysctl.txt": Fact("sysctl.txt", "net.ipv4.ip_forward = 1\n", "sysctl", 0),
        "iptables-version.txt": Fact("iptables-version.txt", "iptables v1.8.9 (nf_tables)\n", "iptables -V", 0),
    }
    if ip_addr is not None:
        facts["ip-addr.json"] = Fact("ip-addr.json", ip_addr, "ip -j addr", 0)
    if ipset_list is not None:
        facts["ipset-list.txt"] = Fact("ipset-list.txt", ipset_list, "ipset list", 0)
    state = NodeState(node, "bundle", MappingProxyType(facts))
    req = TraceRequest(node, Endpoint(src, None, None, "client"), Endpoint(dst, dport, proto, ""), proto,
                       sport=sport, iif=iif)
    result = run_trace(req, state, cluster)
    return result, endpoint_set(result), {leaf.dnat_to for leaf in result.leaves if leaf.verdict == "accept"}


def iptables_s_to_restore(text: str, table: str = "filter") -> str:
    """`iptables -S` output (-P/-N/-A lines of one table) as `iptables-restore --noflush` input: built-in chains
    keep their rules (only the policy is set), user chains are created, rules are appended."""
    head, rules = [f"*{table}"], []
    for line in text.splitlines():
        words = line.split()
        if words[:1] == ["-P"] and len(words) == 3:
            head.append(f":{words[1]} {words[2]} [0:0]")
        elif words[:1] == ["-N"] and len(words) == 2:
            head.append(f":{words[1]} - [0:0]")
        elif words[:1] == ["-A"]:
            rules.append(line)
    return "\n".join([*head, *rules, "COMMIT", ""])


# Local delivery needs a listener: the kernel kills an unconfirmed-reply TCP conntrack entry when the node answers a
# SYN with a RST, so a packet that the rules accepted would look dropped. Bounded: it exits after `seconds`.
LISTENER = textwrap.dedent("""
    import socket, sys, time
    seconds, ports = float(sys.argv[1]), [int(p) for p in sys.argv[2:]]
    socks = []
    for port in ports:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", port))
        s.listen(64)
        socks.append(s)
    print("listening", flush=True)
    time.sleep(seconds)
""")


def start_listener(node: str, ports: list[int], seconds: float = 1200.0) -> subprocess.Popen[str]:
    """TCP listeners on `ports` in namespace `node` (the caller stops the process it gets back, by its PID)."""
    proc = subprocess.Popen(["ip", "netns", "exec", node, "python3", "-c", LISTENER, str(seconds),
                             *map(str, ports)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != "listening":
        proc.kill()
        proc.wait(timeout=10)
        raise RuntimeError(f"listener in {node} did not start (exit {proc.poll()})")
    return proc


UFW_DOCKER = REAL_FIREWALLS / "ufw-docker-iptables-S" / "dump.txt"
DOCKER_NAT = REAL_FIREWALLS / "docker-nat-save" / "dump.txt"


def load_ufw_docker(node: str, pods: str) -> None:
    """The real ufw + Docker filter table and Docker's nat table (tests/fixtures/realworld/firewalls/*/SOURCE),
    restored with `--noflush` after kube-proxy's rules already in `node` (kube-proxy's jumps come first, as on a
    real node); a `docker0` veth into `pods` holds Docker's 172.17.0.0/16."""
    netns.run(["iptables-nft-restore", "--noflush"], netns=node, input=iptables_s_to_restore(UFW_DOCKER.read_text()))
    netns.run(["iptables-nft-restore", "--noflush"], netns=node, input=DOCKER_NAT.read_text())
    netns.veth(node, "docker0", pods, "d0")  # Docker's bridge, here a veth into the pods namespace
    netns.add_route(node, "172.17.0.0/16", dev="docker0")


CALICO_AKS = REAL_FIREWALLS / "calico-aks-kubenet-S" / "dump.txt"
# the node-side veth of the test's pod: a workload interface of the Calico dump (kube-system's konnectivity-agent:
# egress policies, then the kns.kube-system profile, both accept)
CALICO_POD_IF = "cali9d7310e16e7"


def calico_filter_restore(text: str) -> str:
    """The real Calico node's filter table (`iptables -S`) as `iptables-nft-restore --noflush` input without its
    KUBE-* chains: kube-proxy's chains and their rules stay those already loaded (the lab's capture); Calico's
    chains and the built-in chains' rules, in the real node's order, are the dump's."""
    kept = [line for line in text.splitlines()
            if not line.startswith(("-N KUBE-", "-A KUBE-"))]
    return iptables_s_to_restore("\n".join(kept))


CALICO_NAT = REAL_FIREWALLS / "calico-nat-save" / "dump.txt"
# the Calico ipsets the nat table names, with members the test chooses: the lab's pod range is Calico's IP pool
CALICO_IPSETS = {"cali40masq-ipam-pools": ["10.244.0.0/16"], "cali40all-ipam-pools": ["10.244.0.0/16"]}


def calico_nat_restore(text: str) -> str:
    """A real Calico node's nat table (iptables-save) as `iptables-nft-restore --noflush` input without kube-proxy's
    KUBE-* chains (the lab capture's stay) and without comments."""
    return "\n".join(line for line in text.splitlines()
                     if not line.startswith((":KUBE-", "-A KUBE-", "#"))) + "\n"


def load_calico_aks(node: str) -> None:
    """Put a real Calico node's filter table (tests/fixtures/realworld/firewalls/calico-aks-kubenet-S/SOURCE) and
    another real Calico node's nat table (calico-nat-save/SOURCE) in place of the built-in chains of kube-proxy's
    rules already in `node` (kube-proxy's KUBE-* chains stay; Calico's jumps come first, as Calico inserts them),
    create the ipsets Calico's rules name (CALICO_IPSETS), and name the pods veth (pods0) after one of the filter
    table's workload interfaces."""
    for table, chains in (("filter", ("INPUT", "FORWARD", "OUTPUT")), ("nat", ("PREROUTING", "OUTPUT", "POSTROUTING"))):
        for chain in chains:
            netns.run(["iptables-nft", "-t", table, "-F", chain], netns=node)
    for name, members in CALICO_IPSETS.items():
        netns.run(["ipset", "create", name, "hash:net"], netns=node)
        for member in members:
            netns.run(["ipset", "add", name, member], netns=node)
    netns.run(["iptables-nft-restore", "--noflush"], netns=node, input=calico_filter_restore(CALICO_AKS.read_text()))
    netns.run(["iptables-nft-restore", "--noflush"], netns=node, input=calico_nat_restore(CALICO_NAT.read_text()))
    netns.run(["ip", "link", "set", "pods0", "down"], netns=node)
    netns.run(["ip", "link", "set", "pods0", "name", CALICO_POD_IF], netns=node)
    netns.run(["ip", "link", "set", CALICO_POD_IF, "up"], netns=node)
    netns.add_route(node, "10.244.0.0/16", dev=CALICO_POD_IF)
    netns.add_route(node, "default", dev=CALICO_POD_IF)
