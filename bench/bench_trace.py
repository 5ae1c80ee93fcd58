"""Benchmark `kpdoctor trace --bundle` on the 10,000-Service dump: end to end (process start, bundle read,
cluster state, parse of the dump, walk, render), best of N runs.

The bundle (bench/out/, gitignored) is synthetic: bench/synth.py's cluster, node-0000's `iptables-save.txt`
rendered by kpdoctor's reference proxier (kube-proxy v1.36 byte-exact). Building it is not timed.
Target (issue 15): <= 1.0 s end to end for one trace.

Usage: python3 bench/bench_trace.py [--services 10000] [--endpoints 10] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from synth import SynthSpec, synth_cluster, write_snapshot  # noqa: E402

SYSCTL = "net.ipv4.ip_forward = 1\n"


def build_bundle(services: int, endpoints: int) -> tuple[Path, SynthSpec]:
    from kpdoctor.proxier.context import build_input
    from kpdoctor.proxier.render import render

    spec = SynthSpec(services=services, endpoints=endpoints, nodes=2)
    base = HERE / "out" / f"trace-{services}x{endpoints}"
    if (base / ".complete").exists():
        return base, spec
    write_snapshot(spec, base / "cluster")
    name = spec.node_name(0)
    node_dir = base / "nodes" / name
    node_dir.mkdir(parents=True, exist_ok=True)
    (node_dir / "iptables-save.txt").write_text(render(build_input(synth_cluster(spec), name)))
    (node_dir / "iptables-version.txt").write_text("iptables v1.8.9 (nf_tables)\n")
    (node_dir / "sysctl.txt").write_text(SYSCTL)
    (base / ".complete").write_text("ok\n")
    return base, spec


def last_service(bundle: Path) -> str:
    """The Service whose ClusterIP rule comes last in KUBE-SERVICES (the walk's worst case)."""
    dump = (bundle / "nodes").glob("*/iptables-save.txt")
    text = next(dump).read_text()
    last = [line for line in text.splitlines() if line.startswith("-A KUBE-SERVICES ")
            and "cluster IP" in line][-1]
    comment = last.split('--comment "', 1)[1].split('"', 1)[0]  # "ns/name:port cluster IP"
    ns_name, _, port = comment.split(" ", 1)[0].rpartition(":")
    return f"svc/{ns_name}:{port}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=10000)
    parser.add_argument("--endpoints", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    bundle, spec = build_bundle(args.services, args.endpoints)
    target = last_service(bundle)
    node = spec.node_name(0)
    with open(bundle / "nodes" / node / "iptables-save.txt", encoding="utf-8") as dump:
        lines = sum(1 for _ in dump)
    argv = [sys.executable, "-m", "kpdoctor", "trace", "--bundle", str(bundle), "--node", node, "--from", "external",
            "--to", target, "-o", "json"]
    times: list[float] = []
    cpus: list[float] = []
    out_file = bundle / "trace.json"
    for _ in range(args.runs):
        t0 = time.perf_counter()
        with open(out_file, "w", encoding="utf-8") as sink:
            proc = subprocess.Popen(argv, stdout=sink, stderr=subprocess.DEVNULL)
            _, status, usage = os.wait4(proc.pid, 0)
        times.append(time.perf_counter() - t0)
        cpus.append(usage.ru_utime + usage.ru_stime)  # less disturbed than wall time by other work on the cores
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"trace failed (exit {os.waitstatus_to_exitcode(status)}): {' '.join(argv)}")
    out = out_file.read_text()
    result = json.loads(out)
    print(f"# kpdoctor trace --bundle: {args.services} Services x {args.endpoints} endpoints, {lines} dump lines, "
          f"{os.cpu_count()} cpus, load {os.getloadavg()[0]:.1f}, {time.strftime('%Y-%m-%d %H:%M')}")
    print(f"target {target}: endpoints {len(result['endpoints'])}, outcomes {len(result['outcomes'])}")
    print(f"end to end: wall best {min(times):.2f} s (all {', '.join(f'{t:.2f}' for t in times)}); "
          f"CPU best {min(cpus):.2f} s (all {', '.join(f'{t:.2f}' for t in cpus)})")


if __name__ == "__main__":
    main()
