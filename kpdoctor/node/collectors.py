"""The fixed list of facts kpdoctor reads from a node, and the per-node plan derived from the cluster.

Every fact is a fixed argv, a fixed file path or an HTTP GET on the node's
loopback, each with its own timeout and byte cap. Nothing derived from a Node,
Service or config ever becomes shell text: the only node- or cluster-derived
values (Service IPs for conntrack, nft table names, kube-proxy ports) are
validated here and travel as separate argv elements; remote transports quote
every element. Commands that could change the node are never run: `ipvsadm`
loads `ip_vs` when it is absent, and `iptables-legacy-save -t TABLE` creates a
legacy table that was not loaded, so both are only run when their proc file
says it is safe.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from kpdoctor.addresses import is_ip

if TYPE_CHECKING:  # only for annotations: importing the cluster model costs ~70 ms of `kpdoctor node` start-up
    from kpdoctor.cluster.state import ClusterState

MiB = 1 << 20

# Tools whose presence decides what is run (probed once per node, on the privileged PATH).
TOOLS = (
    "uname", "cat", "iptables", "iptables-save", "iptables-nft-save", "iptables-legacy-save",
    "ip6tables-save", "ip6tables-nft-save", "ip6tables-legacy-save", "nft", "ipvsadm", "ipset",
    "ip", "sysctl", "conntrack", "journalctl", "timeout",
)  # fmt: skip

SYSCTL_KEYS = (
    "net.ipv4.ip_forward",
    "net.ipv4.conf.all.route_localnet",
    "net.bridge.bridge-nf-call-iptables",
    "net.bridge.bridge-nf-call-ip6tables",
    "net.netfilter.nf_conntrack_max",
    "net.netfilter.nf_conntrack_count",
    "net.netfilter.nf_conntrack_tcp_be_liberal",
    "net.ipv6.conf.all.forwarding",
)

# Tables iptables-nft knows; used for per-table fallback reads when a full save fails.
IPTABLES_TABLES = ("filter", "nat", "mangle", "raw", "security")


@dataclass(frozen=True, slots=True)
class FactSpec:
    key: str  # bundle file name
    kind: str  # cmd | file
    argv: tuple[str, ...] = ()
    path: str = ""
    tool: str = ""  # the binary that must be installed for a cmd
    timeout: float = 10.0
    max_bytes: int = 16 * MiB
    # per-table fallback for iptables dumps: "nft" (any table), "legacy4"/"legacy6" (only loaded tables)
    per_table: str = ""

    @property
    def source(self) -> str:
        return " ".join(self.argv) if self.kind == "cmd" else self.path


def _cmd(key: str, *argv: str, timeout: float = 10.0, max_bytes: int = 16 * MiB, per_table: str = "") -> FactSpec:
    return FactSpec(key, "cmd", tuple(argv), tool=argv[0], timeout=timeout, max_bytes=max_bytes, per_table=per_table)


def _file(key: str, path: str, max_bytes: int = 4 * MiB) -> FactSpec:
    return FactSpec(key, "file", path=path, timeout=CHEAP_TIMEOUT, max_bytes=max_bytes)


RULES_TIMEOUT = 30.0
CHEAP_TIMEOUT = 5.0  # the phase-1 facts: batched over SSH without a `timeout` process each
RULES_MAX = 512 * MiB

# Phase 1: cheap facts that decide what phase 2 may safely run.
PHASE1 = (
    _cmd("uname-r.txt", "uname", "-r", timeout=CHEAP_TIMEOUT),
    _cmd("iptables-version.txt", "iptables", "--version", timeout=CHEAP_TIMEOUT),
    _file("proc-modules.txt", "/proc/modules"),
    _file("proc-net-ip_vs.txt", "/proc/net/ip_vs"),
    _file("ip_tables_names.txt", "/proc/net/ip_tables_names"),
    _file("ip_tables_matches.txt", "/proc/net/ip_tables_matches"),
    _file("ip_tables_targets.txt", "/proc/net/ip_tables_targets"),
    _file("ip6_tables_names.txt", "/proc/net/ip6_tables_names"),
    _cmd("ip-addr.json", "ip", "-j", "addr", timeout=CHEAP_TIMEOUT),
    _cmd("ip-link.json", "ip", "-j", "-d", "link", timeout=CHEAP_TIMEOUT),
    _cmd("sysctl.txt", "sysctl", "-e", *SYSCTL_KEYS, timeout=CHEAP_TIMEOUT),
    _cmd("conntrack-stats.txt", "conntrack", "-S", timeout=CHEAP_TIMEOUT),
)

# Phase 2: the rule dumps (slow on big nodes; each with a timeout and, for iptables, a per-table fallback).
PHASE2 = (
    _cmd("iptables-save.txt", "iptables-save", timeout=RULES_TIMEOUT, max_bytes=RULES_MAX, per_table="default4"),
    _cmd("iptables-nft-save.txt", "iptables-nft-save", timeout=RULES_TIMEOUT, max_bytes=RULES_MAX, per_table="nft"),
    _cmd("iptables-legacy-save.txt", "iptables-legacy-save", timeout=RULES_TIMEOUT, max_bytes=RULES_MAX,
         per_table="legacy4"),
    _cmd("ip6tables-save.txt", "ip6tables-save", timeout=RULES_TIMEOUT, max_bytes=RULES_MAX, per_table="default6"),
    _cmd("ipset-list.txt", "ipset", "list", timeout=RULES_TIMEOUT, max_bytes=RULES_MAX),
)  # fmt: skip

IPVSADM = _cmd("ipvsadm-save.txt", "ipvsadm", "--save", "-n", timeout=RULES_TIMEOUT, max_bytes=RULES_MAX)
# The table names. `nft list flowtables` prints every table (`table <family> <name> {` ... `}`) after loading
# only the table and flowtable caches: 0.01 s on a 15k-chain ruleset where nft 1.0.6's `nft -j list tables`
# loads its whole cache (~1 s, 130 MB). NFT_TABLES (authoritative JSON) is the fallback when that listing fails,
# does not parse, or shows flowtables (a newer nft could print only the tables that hold one).
NFT_TABLE_NAMES = _cmd("nft-ruleset.json", "nft", "list", "flowtables", timeout=10.0)
NFT_TABLES = _cmd("nft-ruleset.json", "nft", "-j", "list", "tables", timeout=10.0)
NFT_TIMEOUT = 30.0
# iptables-nft tables with more rules than this are not listed again in nft-ruleset.json (listing a 15k-chain
# `ip nat` table as JSON takes seconds; its rules are already in iptables-nft-save.txt)
NFT_COMPAT_RELIST_MAX = 2000
# Objects kube-proxy's nftables mode keeps its verdicts in: read one by one when a whole table is too slow.
NFT_KUBE_PROXY_OBJECTS = (
    ("map", "service-ips"),
    ("map", "service-nodeports"),
    ("map", "no-endpoint-services"),
    ("map", "no-endpoint-nodeports"),
    ("map", "firewall-ips"),
    ("set", "cluster-ips"),
    ("set", "nodeport-ips"),
)
JOURNAL = _cmd("kube-proxy/log.txt", "journalctl", "-u", "kube-proxy", "-n", "200", "--no-pager", "-o", "cat",
               timeout=10.0, max_bytes=1 * MiB)  # fmt: skip

CONNTRACK_MAX_LINES = 5000  # entries towards Service IPs kept, at most
CONNTRACK_PER_IP_LIMIT = 32  # up to this many Service IPs: one `conntrack -L -d IP` each; else one capped scan
CONNTRACK_SCAN_BYTES = 64 * MiB  # a capped read of the whole table (about 300k entries)
LOG_MAX_LINES = 200
HTTP_MAX = 32 * MiB

_SAFE_RELEASE = re.compile(r"^[A-Za-z0-9._+~-]{1,128}$")
_SAFE_NFT_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
NFT_FAMILIES = ("ip", "ip6", "inet", "arp", "bridge", "netdev")


def modules_builtin_spec(release: str) -> FactSpec | None:
    """`/lib/modules/<uname -r>/modules.builtin`, only for a release string that is a plain path component."""
    release = release.strip()
    if not _SAFE_RELEASE.match(release) or release in (".", ".."):
        return None
    return _file("modules-builtin.txt", f"/lib/modules/{release}/modules.builtin", max_bytes=8 * MiB)


def safe_nft_name(family: str, name: str) -> bool:
    return family in NFT_FAMILIES and bool(_SAFE_NFT_NAME.match(name))


@dataclass(frozen=True, slots=True)
class HttpTarget:
    key: str
    host: str
    port: int
    path: str


@dataclass(frozen=True)
class CollectPlan:
    """What depends on the cluster: Service IPs for conntrack, where kube-proxy listens, eTP=Local HC ports."""

    service_ips: tuple[str, ...] = ()
    http: tuple[HttpTarget, ...] = ()
    health_check_ports: tuple[int, ...] = ()
    extra: dict[str, str] = field(default_factory=dict)


def _host_port(bind: str, default_port: int) -> tuple[str, int]:
    """Where to connect for a kube-proxy bind address: unspecified binds are reached on loopback."""
    host, _, port_text = bind.rpartition(":")
    if not host and not port_text:
        return "127.0.0.1", default_port
    try:
        port = int(port_text)
    except ValueError:
        return "127.0.0.1", default_port
    host = host.strip("[]")
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1" if host != "::" else "::1"
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return "127.0.0.1", port
    if not 0 < port < 65536:
        return "127.0.0.1", default_port
    return host, port


def kube_proxy_targets(healthz_bind: str = "", metrics_bind: str = "") -> tuple[HttpTarget, ...]:
    """kube-proxy's four surfaces, at the addresses its config gives (defaults: 0.0.0.0:10256, 127.0.0.1:10249)."""
    hz_host, hz_port = _host_port(healthz_bind or "0.0.0.0:10256", 10256)
    m_host, m_port = _host_port(metrics_bind or "127.0.0.1:10249", 10249)
    return (
        HttpTarget("kube-proxy/healthz.json", hz_host, hz_port, "/healthz"),
        HttpTarget("kube-proxy/metrics.txt", m_host, m_port, "/metrics"),
        HttpTarget("kube-proxy/proxyMode.txt", m_host, m_port, "/proxyMode"),
        HttpTarget("kube-proxy/configz.json", m_host, m_port, "/configz"),
    )


def plan_for(cluster: ClusterState | None, node_name: str) -> CollectPlan:
    """The node's collection plan. Without a cluster: default kube-proxy ports and no Service IPs."""
    if cluster is None:
        return CollectPlan(http=kube_proxy_targets())
    ips: set[str] = set()
    hc_ports: set[int] = set()
    for svc in cluster.services:
        if not svc.proxied:
            continue
        ips.update(ip for ip in svc.cluster_ips if is_ip(ip))
        ips.update(ip for ip in svc.external_ips if is_ip(ip))
        ips.update(i.ip for i in svc.load_balancer_ingress if is_ip(i.ip))
        if svc.external_policy_local and 0 < svc.health_check_node_port < 65536:
            hc_ports.add(svc.health_check_node_port)
    found = cluster.proxy_config_for(node_name)
    if found is not None:
        http = kube_proxy_targets(found.config.healthz_bind_address, found.config.metrics_bind_address)
    else:
        http = kube_proxy_targets()
    return CollectPlan(
        service_ips=tuple(sorted(ips, key=_ip_sort_key)),
        http=http,
        health_check_ports=tuple(sorted(hc_ports)),
    )


def _ip_sort_key(text: str) -> tuple[int, int]:
    addr = ipaddress.ip_address(text)
    return addr.version, int(addr)


def conntrack_per_ip_argv(ip: str) -> tuple[str, ...]:
    """`conntrack -L -d IP` (family from the address); the IP was validated by `plan_for`."""
    addr = ipaddress.ip_address(ip)  # re-validate: this value travels to a node
    family = "ipv6" if addr.version == 6 else "ipv4"
    return ("conntrack", "-L", "-f", family, "-d", str(addr))


def original_destination(line: str) -> str | None:
    """The first `dst=` of a `conntrack -L` line: the original direction's destination."""
    pos = line.find(" dst=")
    if pos < 0:
        return None
    end = line.find(" ", pos + 5)
    return line[pos + 5 : end if end >= 0 else None]
