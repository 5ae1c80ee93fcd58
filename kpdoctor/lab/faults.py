"""Break a lab node the way real nodes break, so checks can be tested against a real dataplane.

Each fault is one small, named change inside a lab namespace (never the host):
the classic kube-proxy failure modes (ip_forward off, rules flushed, a Service's
chain gone, a stale DNAT left after an endpoint moved, rules in the other
iptables backend). Tests then collect the namespace and expect kpdoctor to
name the fault.
"""

from __future__ import annotations

import shlex

from kpdoctor.lab.netns import LabError, run, sysctl

IPTABLES = {"nft": "iptables-nft", "legacy": "iptables-legacy"}


def _iptables(backend: str) -> str:
    if backend not in IPTABLES:
        raise LabError(f"unknown iptables backend {backend!r} (nft or legacy)")
    return IPTABLES[backend]


def set_sysctl(netns: str, key: str, value: str) -> None:
    """E.g. net.ipv4.ip_forward=0, net.ipv4.conf.all.route_localnet=0 (per-namespace keys only)."""
    sysctl(netns, key, value)


def flush_table(netns: str, table: str = "nat", *, backend: str = "nft") -> None:
    """`iptables -t TABLE -F`: every rule gone, chains left (what a careless firewall script does)."""
    run([_iptables(backend), "-w", "5", "-t", table, "-F"], netns=netns)


def delete_chain(netns: str, chain: str, table: str = "nat", *, backend: str = "nft") -> None:
    """Remove a chain and every jump to it (a Service whose rules vanished)."""
    binary = _iptables(backend)
    saved = run([f"{binary}-save", "-t", table], netns=netns).stdout
    for line in saved.splitlines():
        if line.startswith("-A ") and line.endswith(f" -j {chain}"):
            delete_rule(netns, line, table, backend=backend)
    run([binary, "-w", "5", "-t", table, "-F", chain], netns=netns)
    run([binary, "-w", "5", "-t", table, "-X", chain], netns=netns)


def _rule_args(line: str) -> list[str]:
    """The match/target words of an iptables-save `-A CHAIN ...` line, quotes honoured."""
    return shlex.split(line)[2:]


def delete_rule(netns: str, rule: str, table: str = "nat", *, backend: str = "nft") -> None:
    """Delete one rule given exactly as iptables-save prints it (`-A CHAIN ...`)."""
    if not rule.startswith("-A "):
        raise LabError(f"not an iptables-save rule line: {rule!r}")
    words = _rule_args(rule)
    run([_iptables(backend), "-w", "5", "-t", table, "-D", rule.split()[1], *words], netns=netns)


def add_stale_dnat(netns: str, service_ip: str, port: int, old_endpoint: str, *, backend: str = "nft") -> None:
    """A DNAT to an endpoint that no longer exists, ahead of kube-proxy's rules (a leftover from a
    previous proxy or a hand fix), so the Service silently points at a dead address."""
    run([_iptables(backend), "-w", "5", "-t", "nat", "-I", "PREROUTING", "1", "-d", f"{service_ip}/32", "-p", "tcp",
         "--dport", str(port), "-j", "DNAT", "--to-destination", old_endpoint], netns=netns)


def delete_nft_table(netns: str, table: str = "kube-proxy", family: str = "ip") -> None:
    run(["nft", "delete", "table", family, table], netns=netns)
