"""The IPVS kernel proof's lab (tests/lab/test_trace_ipvs_kernel.py), run inside a User-Mode-Linux guest
(`kpdoctor.lab.uml`) because the host kernel has no IPVS.

In the guest: the root namespace is the node. It gets the reference proxier's IPVS-mode state for one node of a
recorded cluster (kube-ipvs0 and its addresses, the ipsets, the virtual servers, the iptables rules, restored with
iptables-legacy: this UML kernel has no nft_chain_nat), kube-proxy's IPVS sysctls, a "client" namespace on a veth
(the sources) and a "pods" namespace on a second veth holding every real server's address with TCP listeners.
The dumps the trace reads are taken inside the guest after the rules are loaded (`iptables-legacy-save`,
`ipvsadm --save -n`, `ipset list`, `ip -j addr`); then the client opens real TCP connections, case after case,
and the guest records each one's fate (client side: open / refused / timeout), the node's conntrack table and
IPVS's own connection table (`ipvsadm -Lnc`).
"""

from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass, field
from types import MappingProxyType

from kpdoctor.dataplane.ipvs import parse_ipvsadm_save
from kpdoctor.lab.uml import GuestRun, run_in_guest
from kpdoctor.node.conntrack_text import parse_conntrack_entries
from kpdoctor.node.state import Fact, NodeState
from kpdoctor.proxier.ipvs import SECTION_ADDRESSES, SECTION_IPSET, SECTION_IPTABLES, SECTION_IPVSADM

CLIENT_NET = "203.0.113"  # TEST-NET-3: the client veth
NODE_ON_CLIENT_NET = f"{CLIENT_NET}.1"
CLIENT_MAIN = f"{CLIENT_NET}.10"
NODE_ON_PODS = "169.254.1.1"  # the node's address toward the pods namespace (a masqueraded source shows it)
# ports the node itself listens on: a packet delivered locally connects, so a REJECT or DROP rule is visible
NODE_PORTS = (81, 31999, 32100, 32101)
CONNECT_SECONDS = 3.0  # a connection neither open nor refused by then was dropped (generous: a busy machine)
SETTLE_SECONDS = 0.3  # the longest a case waits for its answers before the next case starts

# Bounded: every listener exits after LISTEN_SECONDS; the guest's script is bounded by kpdoctor.lab.uml.
LISTENER = textwrap.dedent("""
    import selectors, socket, struct, sys, time
    IP_PKTINFO = 8  # linux/in.h (Python 3.11 has no constant)
    seconds, ports = float(sys.argv[1]), sys.argv[2:]  # proto:port
    sel = selectors.DefaultSelector()
    for spec in ports:
        proto, _, port = spec.partition(":")
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", int(port)))
        if proto == "tcp":
            s.listen(128)
        else:  # answer from the address the datagram was sent to (the namespace holds many)
            s.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
        sel.register(s, selectors.EVENT_READ, proto)
    print("listening", flush=True)
    end = time.monotonic() + seconds
    while time.monotonic() < end:  # TCP: accept and close (a full accept queue would drop SYNs); UDP: echo
        for key, _ in sel.select(timeout=0.2):
            if key.data == "tcp":
                conn, _ = key.fileobj.accept()
                conn.close()
            else:
                data, anc, _, peer = key.fileobj.recvmsg(2048, socket.CMSG_SPACE(12))
                info = next(d for lvl, typ, d in anc if lvl == socket.IPPROTO_IP and typ == IP_PKTINFO)
                _, _, to = struct.unpack("I4s4s", info[:12])  # ifindex, local address, header destination
                reply = struct.pack("I4s4s", 0, to, bytes(4))
                key.fileobj.sendmsg([data], [(socket.IPPROTO_IP, IP_PKTINFO, reply)], 0, peer)
""")

# The client: each case's connections from (src, sport_base + i), non-blocking, all in flight together (TCP: a SYN;
# UDP: one datagram, answered by the echo listener). The next case starts once this one's connections are all
# answered or after SETTLE seconds (so a dropped case costs no wall time: the first packets of the cases still go
# out in order, which is what rr schedules by); a connection still unanswered CONNECT_SECONDS after its case
# started was dropped. Output: one JSON object per case.
CLIENT = textwrap.dedent("""
    import errno, json, select, socket, sys, time
    cases, deadline_s, settle_s = json.load(open(sys.argv[1])), float(sys.argv[2]), float(sys.argv[3])
    fates, pending, poller = {}, {}, select.poll()  # fates: (case id, sport) -> fate; pending: fd -> (key, sock, udp, t0)

    def step(timeout_ms):
        for fd, _ in poller.poll(timeout_ms):
            key, s, udp, _ = pending.pop(fd)
            poller.unregister(fd)
            err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if udp and err == 0:
                try:  # the echo came back
                    s.recv(2048)
                except OSError as exc:
                    err = exc.errno
            fates[key] = "open" if err == 0 else ("refused" if err == errno.ECONNREFUSED else errno.errorcode.get(err, str(err)))
            s.close()
        now = time.monotonic()
        for fd, (key, s, _, t0) in list(pending.items()):
            if now - t0 > deadline_s:
                del pending[fd]
                poller.unregister(fd)
                fates[key] = "timeout"
                s.close()

    for case in cases:
        udp = case["proto"] == "udp"
        t0 = time.monotonic()
        mine = []
        for i in range(case["count"]):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM if udp else socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((case["src"], case["sport"] + i))
            s.setblocking(False)
            s.connect_ex((case["dst"], case["dport"]))
            if udp:
                s.send(b"kpdoctor")
            pending[s.fileno()] = ((case["id"], case["sport"] + i), s, udp, t0)
            poller.register(s.fileno(), (select.POLLIN if udp else select.POLLOUT) | select.POLLERR | select.POLLHUP)
            mine.append((case["id"], case["sport"] + i))
        while any(k not in fates for k in mine) and time.monotonic() - t0 < settle_s:
            step(20)
    while pending:
        step(50)
    out = {}
    for (cid, sport), fate in fates.items():
        out.setdefault(cid, {})[str(sport)] = fate
    json.dump([{"id": cid, "fates": f} for cid, f in out.items()], sys.stdout)
""")

GUEST_SCRIPT = textwrap.dedent("""
    set -e
    modprobe ip_vs
    # what kube-proxy's IPVS proxier sets (pkg/proxy/ipvs/proxier.go)
    sysctl -qw net.ipv4.vs.conntrack=1 net.ipv4.vs.expire_nodest_conn=1 net.ipv4.vs.expire_quiescent_template=1
    sysctl -qw net.ipv4.ip_forward=1
    # every rejected connection gets its ICMP answer: the node's ICMP rate limit is state no dump shows (with it,
    # a burst of rejects from one client turns some into silent drops)
    sysctl -qw net.ipv4.icmp_ratelimit=0 net.ipv4.icmp_msgs_per_sec=100000
    sh ./wiring.sh
    sh ./addresses.sh
    ipset restore < ipset.txt
    ipvsadm -R < ipvsadm.txt
    iptables-legacy-restore < iptables.txt
    iptables-legacy-save > "$KPD_OUT/iptables-legacy-save.txt"
    ipvsadm --save -n > "$KPD_OUT/ipvsadm-save.txt"
    ipset list > "$KPD_OUT/ipset-list.txt"
    ip -j addr > "$KPD_OUT/ip-addr.json"
    sysctl net.ipv4.ip_forward > "$KPD_OUT/sysctl.txt"
    ip netns exec pods python3 -S listener.py 40 {pod_ports} > pods-listener.txt &
    PODS=$!
    PODC=""
    for ns in $(ip netns list | awk '/^podc/ {{print $1}}'); do
        ip netns exec "$ns" python3 -S listener.py 40 {pod_ports} > "$ns-listener.txt" &
        PODC="$PODC $!"
    done
    python3 -S listener.py 40 {node_ports} > node-listener.txt &
    NODE=$!
    for i in $(seq 100); do
        [ "$(cat ./*-listener.txt 2>/dev/null | grep -c listening)" = "$(ls ./*-listener.txt | wc -l)" ] && break
        sleep 0.1
    done
    ip netns exec client python3 -S client.py cases.json {deadline} {settle} > "$KPD_OUT/client.json"
    python3 -S client.py node-cases.json {deadline} {settle} > "$KPD_OUT/node-client.json"
    i=0
    for case_file in podc-*.json; do
        [ -e "$case_file" ] || continue
        ip netns exec "podc$i" python3 -S client.py "$case_file" {deadline} {settle} > "$KPD_OUT/pods-client-$i.json"
        i=$((i + 1))
    done
    conntrack -L > "$KPD_OUT/conntrack.txt" 2>/dev/null
    ipvsadm -Lnc > "$KPD_OUT/ipvs-connections.txt"
    kill $PODS $PODC $NODE
""")


def sections(render: str) -> dict[str, str]:
    """The four `#### <section>` parts of `kpdoctor proxier render --mode ipvs`."""
    out: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in render.splitlines(keepends=True):
        if line.startswith("#### "):
            current = out.setdefault(line[5:].strip(), [])
        elif current is not None:
            current.append(line)
    return {name: "".join(lines) for name, lines in out.items()}


def wiring(node_ips: tuple[str, ...], real_servers: set[str], sources: tuple[str, ...],
           pod_sources: tuple[str, ...]) -> dict[str, str]:
    """The guest's namespaces (as `as_batches` files): client (every source address) --veth-- node --veth-- pods (every real server but
    the sending ones), and node --veth podcN-- podcN for each real server that also sends (a namespace of its own,
    as a pod has: the other real servers' replies come back through the node)."""
    lines = [
        "set -e",
        "ip link set lo up",
        "ip netns add client", "ip netns add pods",
        "ip link add c0 netns client type veth peer name n0",
        "ip link add p0 netns pods type veth peer name pods0",
        "ip link set n0 up", "ip link set pods0 up",
        "ip -n client link set lo up", "ip -n client link set c0 up",
        "ip -n pods link set lo up", "ip -n pods link set p0 up",
        f"ip addr add {NODE_ON_CLIENT_NET}/24 dev n0",
        *(f"ip addr add {ip}/32 dev n0" for ip in node_ips),
        f"ip -n client addr add {CLIENT_MAIN}/24 dev c0",
        f"ip addr add {NODE_ON_PODS}/32 dev pods0",
        f"ip -n pods route add {NODE_ON_PODS} dev p0",
        f"ip -n pods route add default via {NODE_ON_PODS} dev p0",
        "ip -n client route add default via " + NODE_ON_CLIENT_NET,
    ]
    for src in sources:
        if src != CLIENT_MAIN:
            lines.append(f"ip -n client addr add {src}/32 dev c0")
            lines.append(f"ip route add {src}/32 via {CLIENT_MAIN} dev n0")
    for i, src in enumerate(pod_sources):
        ns = f"podc{i}"
        lines += [f"ip netns add {ns}", f"ip link add q0 netns {ns} type veth peer name {ns}", f"ip link set {ns} up",
                  f"ip -n {ns} link set lo up", f"ip -n {ns} link set q0 up", f"ip addr add {NODE_ON_PODS}/32 dev {ns}",
                  f"ip -n {ns} route add {NODE_ON_PODS} dev q0", f"ip -n {ns} route add default via {NODE_ON_PODS} dev q0",
                  f"ip -n {ns} addr add {src}/32 dev q0", f"ip route add {src}/32 dev {ns}"]
    for rs in sorted(real_servers - set(pod_sources)):
        lines.append(f"ip -n pods addr add {rs}/32 dev p0")
        lines.append(f"ip route add {rs}/32 dev pods0")
    return as_batches(lines[1:], "wiring")


def as_batches(commands: list[str], name: str) -> dict[str, str]:
    """`ip` commands as one `ip -batch` file per namespace (a UML guest starts a process slowly: one `ip` per
    namespace instead of one per command) and `NAME.sh`, which runs the node's batch first (it creates the
    namespaces and links), then each namespace's."""
    batches: dict[str, list[str]] = {}
    for command in commands:
        words = command.split()
        assert words[0] == "ip", command
        ns = words[2] if words[1] == "-n" else ""
        batches.setdefault(ns, []).append(" ".join(words[3:] if ns else words[1:]))
    files = {f"{name}-{ns or 'node'}.ip": "\n".join(lines) + "\n" for ns, lines in batches.items()}
    runs = [f"ip {'-n ' + ns + ' ' if ns else ''}-batch {name}-{ns or 'node'}.ip" for ns in sorted(batches, key=bool)]
    files[f"{name}.sh"] = "set -e\n" + "\n".join(runs) + "\n"
    return files


@dataclass(frozen=True)
class Case:
    id: int
    src: str
    dst: str
    dport: int
    count: int
    sport: int  # the first source port; the case uses sport .. sport + count - 1
    origin: str = "client"  # the sender's namespace: client, node (the node itself) or pods (a real server's address)
    proto: str = "tcp"  # tcp | udp


@dataclass
class Seen:
    """What the kernel did with one case's connections."""

    fates: dict[int, str]  # source port -> open | refused | timeout | errno name
    real_server: dict[int, str] = field(default_factory=dict)  # source port -> "ip:port" (ipvsadm -Lnc)
    conntrack_target: dict[int, str] = field(default_factory=dict)  # source port -> reply source "ip:port"
    masqueraded: dict[int, bool] = field(default_factory=dict)  # source port -> reply dst != original source


@dataclass
class GuestLab:
    run: GuestRun
    facts: dict[str, str]  # the dumps taken inside the guest, by the fact name the trace reads
    seen: dict[int, Seen]


def _ipvs_connections(text: str) -> dict[tuple[str, str, int], str]:
    """`ipvsadm -Lnc`: (protocol, source ip, source port) -> destination "ip:port"."""
    out = {}
    for line in text.splitlines():
        words = line.split()
        if len(words) == 6 and words[0] in ("TCP", "UDP", "SCTP"):
            src, _, sport = words[3].rpartition(":")
            out[(words[0].lower(), src, int(sport))] = words[5]
    return out


def run_lab(render: str, node_ips: tuple[str, ...], cases: list[Case], timeout: float = 90.0) -> GuestLab:
    parts = sections(render)
    table = parse_ipvsadm_save(parts[SECTION_IPVSADM])
    real_servers = {rs.address for vs in table.virtual_servers for rs in vs.real_servers}
    sources = tuple(sorted({c.src for c in cases if c.origin == "client"}))
    pod_sources = tuple(sorted({c.src for c in cases if c.origin == "pods"}))
    pod_ports = sorted({f"{vs.protocol.lower()}:{rs.port}" for vs in table.virtual_servers for rs in vs.real_servers})
    script = GUEST_SCRIPT.format(pod_ports=" ".join(map(str, pod_ports)), node_ports=" ".join(f"tcp:{p}" for p in NODE_PORTS),
                                 deadline=CONNECT_SECONDS, settle=SETTLE_SECONDS)
    inputs = {
        **wiring(node_ips, real_servers, sources, pod_sources),
        **as_batches([line for line in parts[SECTION_ADDRESSES].splitlines() if line.strip()], "addresses"),
        "ipset.txt": parts[SECTION_IPSET],
        "ipvsadm.txt": parts[SECTION_IPVSADM],
        "iptables.txt": parts[SECTION_IPTABLES],
        "listener.py": LISTENER,
        "client.py": CLIENT,
        "cases.json": json.dumps([c.__dict__ for c in cases if c.origin == "client"]),
        "node-cases.json": json.dumps([c.__dict__ for c in cases if c.origin == "node"]),
        **{f"podc-{i}.json": json.dumps([c.__dict__ for c in cases if c.origin == "pods" and c.src == src])
           for i, src in enumerate(pod_sources)},
    }
    run = run_in_guest(script, inputs, timeout=timeout)
    if run.returncode != 0 or "node-client.json" not in run.files:
        raise AssertionError(f"guest script failed (rc {run.returncode}, timed out: {run.timed_out}):\n"
                             f"{run.output[-3000:]}\n--- console ---\n{run.console[-3000:]}")
    ipvs_conns = _ipvs_connections(run.files["ipvs-connections.txt"])
    conntrack = {(e.protocol, e.src, e.sport): e for e in parse_conntrack_entries(run.files["conntrack.txt"])}
    by_id = {c.id: c for c in cases}
    seen: dict[int, Seen] = {}
    names = ["client", "node-client", *(f"pods-client-{i}" for i in range(len(pod_sources)))]
    answers = [json.loads(run.files[f"{name}.json"]) for name in names]
    for entry in [e for part in answers for e in part]:
        case = by_id[entry["id"]]
        s = Seen({int(p): f for p, f in entry["fates"].items()})
        for sport in s.fates:
            if (case.proto, case.src, sport) in ipvs_conns:
                s.real_server[sport] = ipvs_conns[(case.proto, case.src, sport)]
            ct = conntrack.get((case.proto, case.src, sport))
            if ct is not None and ct.dst == case.dst and ct.dport == case.dport:
                s.conntrack_target[sport] = ct.dnat_target
                s.masqueraded[sport] = ct.reply_dst != case.src
        seen[case.id] = s
    facts = {name: run.files[name] for name in
             ("iptables-legacy-save.txt", "ipvsadm-save.txt", "ipset-list.txt", "ip-addr.json", "sysctl.txt")}
    return GuestLab(run, facts, seen)


def node_state(node: str, facts: dict[str, str]) -> NodeState:
    """The guest's dumps as a node's facts (what `kpdoctor scan` would have collected there)."""
    all_facts = {name: Fact(name, text, name, 0) for name, text in facts.items()}
    all_facts["iptables-version.txt"] = Fact("iptables-version.txt", "iptables v1.8.9 (legacy)\n", "iptables -V", 0)
    all_facts["kube-proxy/proxyMode.txt"] = Fact("kube-proxy/proxyMode.txt", "ipvs\n", "curl", 0)
    return NodeState(node, "bundle", MappingProxyType(all_facts))
