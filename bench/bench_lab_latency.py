"""New-connection latency through kube-proxy's rules on this kernel (issue 3's packet-cost figures).

Runs the same code as `kpdoctor lab bench` (kpdoctor.lab.bench.measure_case):
for each Service count and variant, a fresh lab (node + 2 pods + client
namespaces), the reference proxier's rules for that many Services, and the
median connect() time from a pod to the first and last Service of nat
KUBE-SERVICES and to a pod IP. Needs root. Prints one line per case and a
Markdown table for docs/perf/lab.md.

Defaults keep the run bounded on a 2-core box: iptables-legacy and nftables
at 1k/5k/10k, iptables-nft at 1k/5k only (`--nft-backend-limit`).

    python3 bench/bench_lab_latency.py [--services 1000,5000,10000] [--rounds 20] [--per-round 50]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

from kpdoctor.lab.bench import VARIANTS, BenchCase, BenchResult, measure_case, plan


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--services", default="1000,5000,10000")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--per-round", type=int, default=50)
    parser.add_argument("--nft-backend-limit", type=int, default=5000)
    parser.add_argument("--from", dest="client", default="pod", choices=("pod", "node"))
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("bench_lab_latency: needs root (network namespaces)", file=sys.stderr)
        return 2
    counts = [int(x) for x in args.services.split(",") if x.strip()]
    variants = [v for v in args.variants.split(",") if v.strip()]
    print(f"# kernel {platform.release()}, {os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d %H:%M %Z')}, "
          f"load average before {os.getloadavg()[0]:.2f}; {args.rounds} x {args.per_round} connects per target, "
          f"client: {args.client}")
    results: list[BenchResult] = []
    for case, reason in plan(counts, variants, nft_backend_limit=args.nft_backend_limit):
        if reason:
            results.append(BenchResult(case.variant, case.services, skipped=reason))
            print(f"{case.variant:16} {case.services:6}  skipped: {reason}", flush=True)
            continue
        load = os.getloadavg()[0]
        r = measure_case(BenchCase(case.variant, case.services), rounds=args.rounds, per_round=args.per_round,
                         client=args.client)
        r.extra["load_average"] = load
        results.append(r)
        print(f"{r.variant:16} {r.services:6}  lines {r.rules_lines:7}  render {r.render_seconds:5.2f}s  "
              f"load {r.apply_seconds:6.2f}s  first {_fmt(r.first_us):>6}us  last {_fmt(r.last_us):>6}us  "
              f"delta {_fmt(r.delta_us):>6}us  pod-ip {_fmt(r.direct_us):>6}us  "
              f"p10 first/last {_fmt(r.extra.get('first_p10_us'))}/{_fmt(r.extra.get('last_p10_us'))}us  "
              f"failures {r.failures}  "
              f"(loadavg {load:.2f})", flush=True)
    print()
    print("| variant | Services | rule lines | load (s) | first (µs) | last (µs) | last - first (µs) | pod IP (µs) "
          "| p10 first / last (µs) | load avg |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        if r.skipped:
            print(f"| {r.variant} | {r.services} | - | - | - | - | - | - | - | skipped |")
        else:
            print(f"| {r.variant} | {r.services} | {r.rules_lines} | {r.apply_seconds:.2f} | {_fmt(r.first_us)} | "
                  f"{_fmt(r.last_us)} | {_fmt(r.delta_us)} | {_fmt(r.direct_us)} | "
                  f"{_fmt(r.extra.get('first_p10_us'))} / {_fmt(r.extra.get('last_p10_us'))} | "
                  f"{r.extra.get('load_average', 0):.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
