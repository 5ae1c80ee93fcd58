"""Benchmark `kpdoctor scan --bundle` on synthetic clusters: N Services x 10 endpoints, K nodes' dumps.

Each node's `iptables-save.txt` is what the reference proxier renders for that node (kube-proxy v1.36
iptables mode; it differs per node where eTP=Local Services have local endpoints), so the scan's
stale-endpoint comparison really parses and compares a full dump per node. Bundles are cached under
bench/out/ (gitignored); building the 10,000-Service / 100-node one takes a while (rendering, not timed).

The scan runs as a subprocess exactly as a user runs it; wall time and peak RSS (ru_maxrss of that
process) and its CPU time (user + sys) are measured; per-check times come from the JSON report.

    python3 bench/bench_scan.py --services 1000,5000,10000 --nodes 100
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from multiprocessing import get_context
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from childrun import run_child  # noqa: E402
from synth import SynthSpec, synth_cluster, write_snapshot  # noqa: E402

OUT = HERE / "out"
_SPEC: SynthSpec | None = None
_CLUSTER = None

SYSCTL = ("net.ipv4.ip_forward = 1\nnet.ipv4.conf.all.route_localnet = 0\n"
          "net.netfilter.nf_conntrack_max = 262144\nnet.netfilter.nf_conntrack_count = 100\n")


def _init(spec: SynthSpec) -> None:
    global _SPEC, _CLUSTER
    _SPEC = spec
    _CLUSTER = synth_cluster(spec)


def _render_node(args: tuple[str, str]) -> str:
    from kpdoctor.proxier.context import build_input
    from kpdoctor.proxier.render import render

    name, base = args
    node_dir = Path(base) / "nodes" / name
    node_dir.mkdir(parents=True, exist_ok=True)
    dump = render(build_input(_CLUSTER, name))  # type: ignore[arg-type]
    (node_dir / "iptables-save.txt").write_text(dump)
    (node_dir / "iptables-nft-save.txt").write_text(dump)
    (node_dir / "iptables-legacy-save.txt").write_text("")
    (node_dir / "iptables-version.txt").write_text("iptables v1.8.9 (nf_tables)\n")
    (node_dir / "sysctl.txt").write_text(SYSCTL)
    (node_dir / "uname-r.txt").write_text(platform.release() + "\n")
    return name


def build_bundle(services: int, nodes: int, endpoints: int, workers: int) -> Path:
    base = OUT / f"scan-{services}x{endpoints}-{nodes}nodes"
    stamp = base / ".complete"
    if stamp.exists():
        return base
    spec = SynthSpec(services=services, endpoints=endpoints, nodes=nodes)
    write_snapshot(spec, base / "cluster")
    names = [spec.node_name(k) for k in range(nodes)]
    t0 = time.perf_counter()
    with get_context("fork").Pool(workers, initializer=_init, initargs=(spec,)) as pool:
        for done, _ in enumerate(pool.imap_unordered(_render_node, [(n, str(base)) for n in names]), 1):
            if done % 10 == 0:
                print(f"  rendered {done}/{nodes} nodes ({time.perf_counter() - t0:.0f}s)", file=sys.stderr)
    stamp.write_text("ok\n")
    return base


def run_scan(bundle: Path) -> tuple[float, float, int, dict]:
    report = bundle / "report.json"
    run = run_child([sys.executable, "-m", "kpdoctor", "scan", "--bundle", str(bundle), "-o", "json",
                     "--output-file", str(report), "--fail-on", "critical"])
    if run.returncode not in (0, 1):
        raise SystemExit(f"scan failed ({run.returncode}): {run.stderr}")
    # CPU time is less sensitive than wall time to other work sharing the cores; peak RSS in bytes
    return run.wall, run.cpu, run.max_rss_kib * 1024, json.loads(report.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", default="1000,5000,10000")
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--endpoints", type=int, default=10)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()
    print(f"# kpdoctor scan --bundle: {os.cpu_count()} cpus, kernel {platform.release()}, "
          f"{time.strftime('%Y-%m-%d')}")
    print("| services | endpoints | nodes | dump lines/node | wall s | CPU s | node checks s/node | rest s "
          "| peak RSS MiB | load avg | slowest checks (s) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for services in (int(s) for s in args.services.split(",")):
        bundle = build_bundle(services, args.nodes, args.endpoints, args.workers)
        with open(bundle / "nodes" / "node-0000" / "iptables-save.txt", encoding="utf-8") as dump:
            lines = sum(1 for _ in dump)
        load_before = os.getloadavg()[0]
        wall, cpu, rss, report = run_scan(bundle)
        load = f"{load_before:.1f}-{os.getloadavg()[0]:.1f}"
        slow = sorted(report["checks"], key=lambda c: -c["duration_ms"])[:3]
        slowest = ", ".join(f"{c['id']} {c['duration_ms'] / 1000:.1f}" for c in slow)
        # Per-node cost measured, not extrapolated: the node checks' summed time over the nodes they ran on;
        # "rest" is everything else (loading the cluster snapshot, reading node files, cluster checks, report).
        node_s = sum(c["duration_ms"] for c in report["checks"] if c["scope"] == "node") / 1000
        per_node = node_s / max(1, args.nodes)
        print(f"| {services} | {services * args.endpoints} | {args.nodes} | {lines} | {wall:.1f} | {cpu:.1f} | "
              f"{per_node:.2f} | {wall - node_s:.1f} | {rss / 2**20:.0f} | {load} | {slowest} |", flush=True)


if __name__ == "__main__":
    main()
