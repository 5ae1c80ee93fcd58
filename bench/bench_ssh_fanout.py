"""Benchmark: SSH fan-out over real sshd nodes in network namespaces, and one big node end to end.

Usage (root): python3 bench/bench_ssh_fanout.py [--nodes 50] [--services 5000] [--repeat 3]

1. N nodes (sshd in a namespace each, small kube-proxy-like ruleset), `--repeat` rounds of: every node
   collected alone (sequentially) -> per-node median and slowest; then all at once (--concurrency N) ->
   fan-out wall time, compared with the target "<= 1.5x the slowest single node" of the SAME round.
   Each pass also reports the CPU it cost: the collector's own (getrusage) and the nodes' (CPU of every
   process the sshd listeners forked: sessions, shells, tools), because on this machine the nodes and the
   collector share the same cores, which bounds the fan-out at (collector CPU + node CPU) / cores.
2. One node carrying the rules the reference proxier writes for S Services (bench/synth.py's realistic mix,
   2 endpoints each, iptables mode, iptables-nft backend) -> end-to-end wall time of, as subprocesses:
   `kpdoctor node NAME --transport ssh --address ...` (the documented command: collect + rich summary; no
   cluster given, so no checks), the same with `--facts-json` (NodeState as JSON), and with `--snapshot` of
   the S-Service cluster (collect + the node checks, the full pipeline). Target <= 2 s.
Prints the figures with the load average at the time; copy them into docs/perf/nodes.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from kpdoctor.node.collect import CollectOptions, collect_node, collect_nodes  # noqa: E402
from kpdoctor.node.ssh import SshOptions  # noqa: E402
from kpdoctor.node.sshlab import SshLab  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def small_ruleset(services: int) -> str:
    """A kube-proxy-shaped iptables-restore input for `services` ClusterIP Services with 2 endpoints each."""
    import base64
    import hashlib

    def chain(prefix: str, text: str) -> str:
        return prefix + base64.b32encode(hashlib.sha256(text.encode()).digest()).decode()[:16]

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


def reference_ruleset(services: int, snapshot: Path) -> tuple[str, str]:
    """(node name, the iptables rules kube-proxy writes on it) for a synthetic S-Service cluster (snapshot written)."""
    from synth import SynthSpec, synth_cluster, write_snapshot

    from kpdoctor.proxier.context import build_input
    from kpdoctor.proxier.iptables import render_iptables

    spec = SynthSpec(services=services, endpoints=2, nodes=3)
    write_snapshot(spec, snapshot)
    name = spec.node_name(0)
    return name, render_iptables(build_input(synth_cluster(spec), name))


def load() -> str:
    return f"load {os.getloadavg()[0]:.2f}"


def own_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def nodes_cpu(lab: SshLab) -> float:
    """CPU of everything the sshd listeners forked and reaped (connections, sessions, shells, tools)."""
    total = 0
    for proc in lab.procs.values():
        with open(f"/proc/{proc.pid}/stat", encoding="ascii") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        total += int(fields[13]) + int(fields[14])  # cutime + cstime
    return total / TICK


def measured(lab: SshLab, fn: Callable[[], Any]) -> tuple[float, float, float, Any]:
    """(wall, collector CPU, node CPU) of fn; waits briefly so the nodes' sshd children are reaped."""
    c0, n0, t0 = own_cpu(), nodes_cpu(lab), time.monotonic()
    out = fn()
    wall = time.monotonic() - t0
    time.sleep(0.5)
    return wall, own_cpu() - c0, nodes_cpu(lab) - n0, out


def fmt(values: list[float]) -> str:
    return f"best {min(values):.2f}s, median {statistics.median(values):.2f}s"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=50)
    parser.add_argument("--services", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    lab = SshLab.create()
    snap = Path(tempfile.mkdtemp(prefix="kpd-bench-snap-"))
    try:
        t0 = time.monotonic()
        names = [f"node-{i:03d}" for i in range(args.nodes)]
        small = small_ruleset(20)
        for name in names:
            lab.add_node(name)
            lab.netns_exec(name, "iptables-nft-restore", input_text=small)
        big, big_rules = reference_ruleset(args.services, snap)
        lab.add_node(big)
        for counter in ("ct_state_invalid_dropped_pkts", "localhost_nps_accepted_pkts"):  # kube-proxy creates them
            lab.netns_exec(big, "nfacct", "add", counter)
        lab.netns_exec(big, "iptables-nft-restore", input_text=big_rules, timeout=600)
        print(f"lab: {args.nodes} sshd nodes + 1 big node {big} ({args.services} Services from bench/synth.py, "
              f"reference iptables rules: {big_rules.count(chr(10))} lines) built in {time.monotonic() - t0:.1f}s")  # fmt: skip
        ssh = SshOptions(user=lab.user, key_files=(str(lab.user_key),), known_hosts=str(lab.known_hosts))

        class Cluster:
            node_by_name = {n: _Node(lab.nodes[n].address) for n in names}
            services = ()

            def proxy_config_for(self, name: str) -> None:
                return None

        def one(name: str) -> float:
            start = time.monotonic()
            state = collect_node(name, cluster=Cluster(), options=CollectOptions(transport="ssh", ssh=ssh, timeout=60))
            assert state.reachable, state.error
            return time.monotonic() - start

        def everything(conc: int) -> dict[str, Any]:
            return collect_nodes(names, cluster=Cluster(),
                                 options=CollectOptions(transport="ssh", ssh=ssh, timeout=60, concurrency=conc))  # fmt: skip

        one(names[0])  # warm-up: imports, first handshake
        ratios: list[float] = []
        walls: list[float] = []
        for rnd in range(args.repeat):
            s_wall, s_ccpu, s_ncpu, singles = measured(lab, lambda: [one(n) for n in names])
            s_load = load()
            wall, ccpu, ncpu, states = measured(lab, lambda: everything(args.nodes))
            failed = [n for n, s in states.items() if s.error]
            ratio = wall / max(singles)
            ratios.append(ratio)
            walls.append(wall)
            k = len(names)
            print(f"round {rnd + 1}: single node (sequential, {k} nodes): median {statistics.median(singles):.3f}s, "
                  f"slowest {max(singles):.3f}s, fastest {min(singles):.3f}s; CPU per node: collector "
                  f"{s_ccpu / k * 1000:.0f} ms + nodes {s_ncpu / k * 1000:.0f} ms ({s_load})")  # fmt: skip
            print(f"round {rnd + 1}: fan-out all {k} at once (--concurrency {k}): wall {wall:.3f}s = {ratio:.2f}x the "
                  f"slowest single node (target <= 1.5x); CPU: collector {ccpu:.2f}s + nodes {ncpu:.2f}s = "
                  f"{ccpu + ncpu:.2f}s -> {(ccpu + ncpu) / (os.cpu_count() or 1):.2f}s on {os.cpu_count()} cores "
                  f"(lower bound of the wall time); failed: {len(failed)} ({load()})")  # fmt: skip
        print(f"fan-out over {args.repeat} rounds: wall {fmt(walls)}; ratio best {min(ratios):.2f}x, "
              f"median {statistics.median(ratios):.2f}x")  # fmt: skip
        for conc in (8, 16):
            wall, _, _, _ = measured(lab, lambda conc=conc: everything(conc))  # type: ignore[misc]
            print(f"fan-out with --concurrency {conc}: wall {wall:.3f}s ({load()})")
        print(f"sshd unshared memory (RSS sum of the {len(lab.procs)} listeners): {_sshd_rss(lab) / 1024:.1f} MiB")

        env = dict(os.environ, PYTHONPATH=str(REPO))
        base = [sys.executable, "-m", "kpdoctor", "node", big, "--transport", "ssh", "--address",
                lab.nodes[big].address, "--ssh-user", lab.user, "--ssh-key", str(lab.user_key),
                "--known-hosts", str(lab.known_hosts)]  # fmt: skip
        variants = [("`kpdoctor node` (collect + summary, no cluster)", [], (0,)),
                    ("`kpdoctor node --facts-json`", ["--facts-json"], (0,)),
                    ("`kpdoctor node --snapshot` (collect + node checks)", ["--snapshot", str(snap)], (0, 1))]  # fmt: skip
        for label, extra, codes in variants:
            times = []
            size = 0
            loads = []
            for _ in range(max(3, args.repeat)):
                start = time.monotonic()
                out = subprocess.run([*base, *extra], capture_output=True, timeout=300, env=env, cwd=tempfile.gettempdir())
                times.append(time.monotonic() - start)
                loads.append(os.getloadavg()[0])
                assert out.returncode in codes, out.stderr.decode()
                size = len(out.stdout)
            print(f"{label} on {big} ({args.services} Services) over SSH end to end: "
                  f"{', '.join(f'{t:.2f}s' for t in times)} ({fmt(times)}, target <= 2 s); output {size / 1e6:.1f} MB "
                  f"(load {min(loads):.2f}-{max(loads):.2f})")  # fmt: skip
        state = collect_node(big, options=CollectOptions(transport="ssh", address=lab.nodes[big].address,
                                                         ssh=ssh, timeout=60))  # fmt: skip
        slow = sorted(state.facts.values(), key=lambda f: -f.duration)[:5]
        print("slowest facts on the big node: " + ", ".join(f"{f.key} {f.duration:.2f}s" for f in slow))
        print(f"machine: {os.cpu_count()} cores, kernel {platform.release()}, "
              f"{datetime.now(UTC).date().isoformat()}")  # fmt: skip
    finally:
        lab.close()
        import shutil

        shutil.rmtree(snap, ignore_errors=True)


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
