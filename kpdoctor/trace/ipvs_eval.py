"""IPVS in a trace: the virtual-server lookup at the input hook (priority 98, NF_IP_PRI_NAT_SRC - 2, where
the kernel's ip_vs_in runs for packets to a local VIP) and the choice of real server.

Input is `kpdoctor.dataplane.ipvs.parse_ipvsadm` (no second parser). A hit forks once per real server
with its share of the total weight (rr/wrr/lc/sh/mh... all spread new connections over servers with
weight > 0; which one a given connection gets depends on state the dump does not show, so the share is
the weight's); a virtual server with no usable real server rejects (ip_vs_leave: ICMP port unreachable,
NF_DROP). The chosen packet is DNATed and sent on by IPVS through the output and postrouting hooks
(ip_vs_nat_xmit -> LOCAL_OUT), which the walker then runs.

A packet the node itself sends is scheduled earlier, at the output hook (ip_vs_local_request4, priority
NF_IP_PRI_NAT_DST + 2 = -98, after nat OUTPUT): it is DNATed there and rerouted to the real server, so it never
reaches the input hook and its filter rules. The IPVS kernel proof (tests/lab/test_trace_ipvs_kernel.py) showed
it: the node's own connection to a LoadBalancer with loadBalancerSourceRanges reached a real server, while the
trace, scheduling at input, had it dropped by KUBE-SOURCE-RANGES-FIREWALL in filter INPUT.
"""

from __future__ import annotations

from kpdoctor.dataplane.ipvs import IPVSTable, VirtualServer
from kpdoctor.trace.ipnet import ip_int, join_host_port
from kpdoctor.trace.model import Branch

IPVS_PRIORITY = 98
IPVS_LOCAL_OUT_PRIORITY = -98


def _same(a: str, b: str) -> bool:
    return a == b or (ip_int(a) is not None and ip_int(a) == ip_int(b))


class IpvsRunner:
    def __init__(self, table: IPVSTable, source: str) -> None:
        self.table = table
        self.source = source

    def lookup(self, branch: Branch) -> VirtualServer | None:
        pkt = branch.packet
        for vs in self.table.virtual_servers:
            if vs.fwmark:
                if pkt.mark == vs.fwmark:
                    return vs
                continue
            if vs.protocol.lower() == pkt.proto and vs.port == pkt.dport and _same(vs.address, pkt.dst):
                return vs
        return None

    def run_local_out(self, branch: Branch) -> list[tuple[Branch, str]]:
        """The output hook: only a packet generated on the node (no input interface), not yet taken by IPVS."""
        if branch.ipvs or branch.packet.iif != "":
            return [(branch, "accept")]
        return self.run(branch)

    def run(self, branch: Branch) -> list[tuple[Branch, str]]:
        if branch.ipvs:  # already scheduled (at the output hook, or before)
            return [(branch, "accept")]
        vs = self.lookup(branch)
        where = "ipvs"
        if vs is None:
            return [(branch, "accept")]
        text = f"{vs.service_arg} -s {vs.scheduler}" + (f" -p {vs.persistent}" if vs.persistent else "")
        servers = [rs for rs in vs.real_servers if rs.weight > 0]
        if not servers:
            branch.verdict_by = branch.add("ipvs", where, text, self.source,
                                           "no real server with weight > 0: ICMP port unreachable (reject)")
            return [(branch, "reject")]
        total = sum(rs.weight for rs in servers)
        out = []
        for rs in servers:
            share = rs.weight / total
            b = branch.fork(share, f"IPVS persistence ({vs.persistent}s): a client returning within it keeps its "
                                   "earlier server" if vs.persistent else None)
            b.add("branch", where, f"real server {rs.key} weight {rs.weight} of {total}", self.source,
                  f"p={share:.4g}")
            pkt = b.packet
            b.packet = pkt.evolve(dst=rs.address, dport=rs.port, dnat=True, orig_dst=pkt.orig_dst or pkt.dst,
                                  orig_dport=pkt.orig_dport or pkt.dport)
            b.dnat_to = join_host_port(rs.address, rs.port)
            b.add("nat", where, text, self.source, f"DNAT to {b.dnat_to} (IPVS {rs.forward}, scheduler "
                                                   f"{vs.scheduler})")
            b.ipvs = True
            out.append((b, "accept"))
        return out
