"""Benchmark: SSH fan-out over real sshd nodes in network namespaces, and one big node end to end.

Usage (root): python3 bench/bench_ssh_fanout.py [--nodes 50] [--services 5000]

1. N nodes (sshd in a namespace each, small kube-proxy-like ruleset): every node collected alone
   (sequentially) -> per-node median and slowest; then all at once (--concurrency N) -> fan-out wall time,
   compared with the target "<= 1.5x the slowest single node".
2. One node carrying S Services' rules in iptables mode (iptables-nft backend, synthetic kube-proxy-shaped
   chains: KUBE-SERVICES -> KUBE-SVC-* -> 2 x KUBE-SEP-* DNAT) -> `kpdoctor node <name> --transport ssh --facts-json`
   wall time as a subprocess (target <= 2 s).
Prints the figures; copy them into docs/perf/nodes.md.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from kpdoctor.node.collect import CollectOptions, collect_node, collect_nodes  # noqa: E402
from kpdoctor.node.ssh import SshOptions  # noqa: E402
from kpdoctor.node.sshlab import SshLab  # noqa: E402


def chain(prefix: str, text: str) -> str:
    digest = hashlib.sha256(text.encode()).digest()
    import base64

    return prefix + base64.b32encode(digest).decode()[:16]


def ruleset(services: int) -> str:
    """A kube-proxy-shaped iptables-restore input for `services` ClusterIP Services with 2 endpoints each."""
    nat_chains: list[str] = [":KUBE-SERVICES - [0:0]", ":KUBE-MARK-MASQ - [0:0]", ":KUBE-POSTROUTING - [0:0]"]
    rules: list[str] = [
        "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES",
        "-A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES",
        "-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000",
    ]
    for i in range(services):
        name = f"bench/svc-{i}:http"
        ip = f"10.96.{i // 250}.{i % 250 + 1}"
        svc = chain("KUBE-SVC-", name)
        nat_chains.append(f":{svc} - [0:0]")
        rules.append(f"-A KUBE-SERVICES -d {ip}/32 -p tcp -m comment --comment \"{name} cluster IP\" "
                     f"-m tcp --dport 80 -j {svc}")  # fmt: skip
        for e in range(2):
            ep = f"10.244.{(2 * i + e) // 250}.{(2 * i + e) % 250 + 1}"
            sep = chain("KUBE-SEP-", name + ep)
            nat_chains.append(f":{sep} - [0:0]")
            prob = " -m statistic --mode random --probability 0.50000000000" if e == 0 else ""
            rules.append(f"-A {svc} -m comment --comment \"{name} -> {ep}:8080\"{prob} -j {sep}")
            rules.append(f"-A {sep} -s {ep}/32 -m comment --comment \"{name}\" -j KUBE-MARK-MASQ")
            rules.append(f"-A {sep} -p tcp -m comment --comment \"{name}\" -m tcp -j DNAT --to-destination {ep}:8080")
    return "*nat\n" + "\n".join(nat_chains) + "\n" + "\n".join(rules) + "\nCOMMIT\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=50)
    parser.add_argument("--services", type=int, default=5000)
    args = parser.parse_args()
    lab = SshLab.create()
    try:
        t0 = time.monotonic()
        names = [f"node-{i:03d}" for i in range(args.nodes)]
        small = ruleset(20)
        for name in names:
            lab.add_node(name)
            lab.netns_exec(name, "iptables-nft-restore", input_text=small)
        lab.add_node("big")
        big_rules = ruleset(args.services)
        lab.netns_exec("big", "iptables-nft-restore", input_text=big_rules, timeout=600)
        print(f"lab: {args.nodes} sshd nodes + 1 big node ({args.services} Services, "
              f"{big_rules.count(chr(10))} lines) built in {time.monotonic() - t0:.1f}s")  # fmt: skip
        ssh = SshOptions(user=lab.user, key_files=(str(lab.user_key),), known_hosts=str(lab.known_hosts))

        class Cluster:
            node_by_name = {n: _Node(lab.nodes[n].address) for n in names}
            services = ()

            def proxy_config_for(self, name: str) -> None:
                return None

        singles = []
        for name in names:
            start = time.monotonic()
            state = collect_node(name, cluster=Cluster(), options=CollectOptions(transport="ssh", ssh=ssh, timeout=60))
            singles.append(time.monotonic() - start)
            assert state.reachable, state.error
        rss = _sshd_rss(lab)
        start = time.monotonic()
        states = collect_nodes(names, cluster=Cluster(),
                               options=CollectOptions(transport="ssh", ssh=ssh, timeout=60, concurrency=args.nodes))  # fmt: skip
        wall = time.monotonic() - start
        failed = [n for n, s in states.items() if s.error]
        print(f"single node (sequential, {len(singles)} nodes): median {statistics.median(singles):.3f}s, "
              f"slowest {max(singles):.3f}s, fastest {min(singles):.3f}s")  # fmt: skip
        print(f"fan-out all {args.nodes} at once (--concurrency {args.nodes}): wall {wall:.3f}s = "
              f"{wall / max(singles):.2f}x the slowest single node (target <= 1.5x); failed: {len(failed)}")  # fmt: skip
        for conc in (8, 16):
            start = time.monotonic()
            collect_nodes(names, cluster=Cluster(), options=CollectOptions(transport="ssh", ssh=ssh, timeout=60,
                                                                           concurrency=conc))  # fmt: skip
            print(f"fan-out with --concurrency {conc}: wall {time.monotonic() - start:.3f}s")
        print(f"sshd unshared memory (RSS sum of the {len(lab.procs)} listeners): {rss / 1024:.1f} MiB")

        env = dict(os.environ, PYTHONPATH=str(REPO))
        argv = [sys.executable, "-m", "kpdoctor", "node", "big", "--transport", "ssh", "--address",
                lab.nodes["big"].address, "--ssh-user", lab.user, "--ssh-key", str(lab.user_key),
                "--known-hosts", str(lab.known_hosts), "--facts-json"]  # fmt: skip
        times = []
        size = 0
        for _ in range(3):
            start = time.monotonic()
            out = subprocess.run(argv, capture_output=True, timeout=120, env=env)
            times.append(time.monotonic() - start)
            assert out.returncode == 0, out.stderr.decode()
            size = len(out.stdout)
        print(f"kpdoctor node big ({args.services} Services, iptables-nft) over SSH end to end: "
              f"{', '.join(f'{t:.2f}s' for t in times)} (median {statistics.median(times):.2f}s, target <= 2 s); "
              f"JSON {size / 1e6:.1f} MB")  # fmt: skip
        state = collect_node("big", options=CollectOptions(transport="ssh", address=lab.nodes["big"].address,
                                                           ssh=ssh, timeout=60))  # fmt: skip
        slow = sorted(state.facts.values(), key=lambda f: -f.duration)[:5]
        print("slowest facts on big: " + ", ".join(f"{f.key} {f.duration:.2f}s" for f in slow))
        print(f"machine: {os.cpu_count()} cores, kernel {platform.release()}, "
              f"{datetime.now(UTC).date().isoformat()}")  # fmt: skip
    finally:
        lab.close()


class _Node:
    def __init__(self, address: str) -> None:
        self.address = address

    def address_of(self, kind: str) -> str | None:
        return self.address if kind == "InternalIP" else None


def _sshd_rss(lab: SshLab) -> int:
    total = 0
    for proc in lab.procs.values():
        try:
            for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
                if line.startswith(("RssAnon:",)):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


if __name__ == "__main__":
    main()
