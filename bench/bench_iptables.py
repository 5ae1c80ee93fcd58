"""Benchmark: the iptables reference proxier and the iptables-save parser at scale.

Measures, in one run, on a synthetic cluster (bench/synth.py):
  1. endpoint selection + iptables render for one node, 10,000 Services x 10 endpoints
     (in-process, best of N: the machine is shared, the minimum is the least disturbed run);
  2. end-to-end `kpdoctor proxier render --snapshot DIR` wall time and peak RSS (child process);
  3. parsing that ruleset's `iptables-save` dump, and a >= 1,000,000-line dump;
  4. `iptables-restore` / `iptables-save` wall time for the same ruleset inside a throwaway
     network namespace, on the legacy and the nf_tables backend (needs root; each with a timeout,
     since iptables-nft-restore grows super-linearly and iptables-nft-save has crashed at this size).

Targets (issue 2): render <= 1 s and <= 300 MB peak RSS; parse the 10k dump <= 1 s; a 1M-line dump <= 2 s.

Usage: python3 bench/bench_iptables.py [--services 10000] [--endpoints 10] [--runs 3]
       [--big-lines 1000000] [--restore-timeout 300] [--skip-netns] [--nft-services 1000]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from synth import SynthSpec, synth_cluster, write_snapshot  # noqa: E402

NFACCT_COUNTERS = ("ct_state_invalid_dropped_pkts", "localhost_nps_accepted_pkts")


def best_of(runs: int, fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """(min wall s, min cpu s, last result) over `runs` calls."""
    walls, cpus = [], []
    result = None
    for _ in range(runs):
        w0, c0 = time.perf_counter(), time.process_time()
        result = fn()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return min(walls), min(cpus), result


def render_once(cluster: Any, node: str) -> tuple[float, float, str]:
    """(seconds for endpoint selection alone, seconds for a full render from a fresh input, text)."""
    from kpdoctor.gcpause import gc_paused
    from kpdoctor.proxier.context import build_input
    from kpdoctor.proxier.iptables import render_iptables

    inp = build_input(cluster, node)
    t0 = time.perf_counter()
    with gc_paused():
        inp.service_ports()
    selection = time.perf_counter() - t0
    del inp
    inp = build_input(cluster, node)
    t1 = time.perf_counter()
    text = render_iptables(inp)  # selection + rules + text, as `kpdoctor proxier render` does
    return selection, time.perf_counter() - t1, text


class Netns:
    """A throwaway network namespace (unique name, always deleted)."""

    def __init__(self) -> None:
        self.name = f"kpd-bench-{uuid.uuid4().hex[:8]}"

    def __enter__(self) -> Netns:
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        for counter in NFACCT_COUNTERS:
            subprocess.run(["ip", "netns", "exec", self.name, "nfacct", "add", counter], check=True,
                           capture_output=True)
        return self

    def __exit__(self, *exc: object) -> None:
        subprocess.run(["ip", "netns", "del", self.name], check=False)

    def run(self, argv: list[str], stdin: str | None = None, timeout: float = 300) -> tuple[float, str, str]:
        """(wall seconds, stdout, status) of a command inside the namespace; status 'ok' / 'timeout' / error."""
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(["ip", "netns", "exec", self.name, *argv], input=stdin, capture_output=True,
                                  text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return time.perf_counter() - t0, "", f"timeout after {timeout:.0f} s"
        wall = time.perf_counter() - t0
        status = "ok" if proc.returncode == 0 else f"exit {proc.returncode}: {proc.stderr.strip()[:200]}"
        return wall, proc.stdout, status


def kernel_round_trip(ruleset: str, backend: str, timeout: float) -> dict[str, Any]:
    restore = "iptables-legacy-restore" if backend == "legacy" else "iptables-nft-restore"
    save = "iptables-legacy-save" if backend == "legacy" else "iptables-nft-save"
    out: dict[str, Any] = {"backend": backend}
    if shutil.which(restore) is None or shutil.which(save) is None:
        out["status"] = f"{restore}/{save} not installed"
        return out
    with Netns() as ns:
        wall, _, status = ns.run([restore], stdin=ruleset, timeout=timeout)
        out["restore_s"], out["restore_status"] = wall, status
        if status != "ok":
            return out
        wall, dump, status = ns.run([save], timeout=timeout)
        out["save_s"], out["save_status"] = wall, status
        out["dump"] = dump
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="iptables reference proxier / parser benchmark")
    ap.add_argument("--services", type=int, default=10_000)
    ap.add_argument("--endpoints", type=int, default=10)
    ap.add_argument("--nodes", type=int, default=10)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--big-lines", type=int, default=1_000_000)
    ap.add_argument("--restore-timeout", type=float, default=300.0)
    ap.add_argument("--nft-services", type=int, default=1000,
                    help="also round-trip a smaller ruleset on iptables-nft (the full one may not finish)")
    ap.add_argument("--skip-netns", action="store_true")
    args = ap.parse_args(argv)

    from kpdoctor.dataplane.iptables_save import parse_iptables_save

    print(f"# machine: {os.cpu_count()} cores, {platform.platform()}, python {platform.python_version()}, "
          f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
    spec = SynthSpec(services=args.services, endpoints=args.endpoints, nodes=args.nodes)
    t0 = time.perf_counter()
    cluster = synth_cluster(spec)
    print(f"synthetic cluster: {spec.services} Services x {spec.endpoints} endpoints x {spec.nodes} nodes "
          f"(generate+load {time.perf_counter() - t0:.2f} s)")
    node = spec.node_name(0)

    # 1. in-process endpoint selection + render, best of N
    sel, ren = [], []
    text = ""
    for _ in range(args.runs):
        s, r, text = render_once(cluster, node)
        sel.append(s)
        ren.append(r)
    lines = text.count("\n")
    print(f"render (in-process, best of {args.runs}): {min(ren):.3f} s for endpoint selection + rules + text "
          f"(selection alone {min(sel):.3f} s)  [{lines} lines, {len(text) / 1e6:.1f} MB]")
    print(f"  all runs: render {[round(x, 3) for x in ren]}, selection {[round(x, 3) for x in sel]}")

    # 2. end-to-end CLI in a child process: wall time and peak RSS
    with tempfile.TemporaryDirectory(prefix="kpd-bench-") as tmp:
        snap = write_snapshot(spec, Path(tmp) / "snap")
        out_file = Path(tmp) / "rules.txt"
        cmd = [sys.executable, "-c", "from kpdoctor.cli import main; main()", "proxier", "render", "--snapshot",
               str(snap), "--node", node, "--output-file", str(out_file)]
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True)
        wall = time.perf_counter() - t0
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        print(f"kpdoctor proxier render (CLI, child process, snapshot load included): {wall:.2f} s wall, "
              f"peak RSS {peak / 1024:.0f} MB" + ("" if peak > before else " (max of earlier children)"))

    # 3. parsing
    wall, cpu, dump = best_of(args.runs, lambda: parse_iptables_save(text, "render"))
    print(f"parse rendered ruleset ({lines} lines, {dump.rule_count()} rules): {wall:.3f} s (cpu {cpu:.3f} s)")
    from kpdoctor.dataplane.iptables_semantic import semantic_view

    wall, cpu, view = best_of(args.runs, lambda: semantic_view(dump))
    print(f"semantic view of that dump ({len(view.frontends)} frontends): {wall:.3f} s (cpu {cpu:.3f} s)")

    big_spec = SynthSpec(services=max(1, int(args.services * args.big_lines / max(lines, 1)) + 1),
                         endpoints=args.endpoints, nodes=args.nodes)
    from kpdoctor.proxier.context import build_input
    from kpdoctor.proxier.iptables import render_iptables

    big_text = render_iptables(build_input(synth_cluster(big_spec), node))
    big_lines = big_text.count("\n")
    wall, cpu, _ = best_of(args.runs, lambda: parse_iptables_save(big_text, "big"))
    print(f"parse {big_lines}-line dump ({big_spec.services} Services): {wall:.3f} s (cpu {cpu:.3f} s)")

    # 4. real netfilter in a throwaway namespace
    if args.skip_netns or os.geteuid() != 0:
        print("netns round trip: skipped (needs root; --skip-netns)")
        return 0
    for backend in ("legacy", "nft"):
        res = kernel_round_trip(text, backend, args.restore_timeout)
        line = f"iptables-{backend}: restore {res.get('restore_s', 0):.2f} s ({res.get('restore_status', res.get('status'))})"
        if "save_s" in res:
            line += f", save {res['save_s']:.2f} s ({res['save_status']})"
        if res.get("dump"):
            saved: str = res["dump"]

            def parse_saved(saved: str = saved) -> object:
                return parse_iptables_save(saved, "save")

            w, _, _ = best_of(args.runs, parse_saved)
            line += f"; parse of its iptables-save output ({saved.count(chr(10))} lines): {w:.3f} s"
        print(f"{spec.services} Services: {line}")
    if args.nft_services and args.nft_services < args.services:
        small = SynthSpec(services=args.nft_services, endpoints=args.endpoints, nodes=args.nodes)
        small_text = render_iptables(build_input(synth_cluster(small), node))
        for backend in ("legacy", "nft"):
            res = kernel_round_trip(small_text, backend, args.restore_timeout)
            line = f"restore {res.get('restore_s', 0):.2f} s ({res.get('restore_status', res.get('status'))})"
            if "save_s" in res:
                line += f", save {res['save_s']:.2f} s ({res['save_status']})"
            print(f"{small.services} Services ({small_text.count(chr(10))} lines) iptables-{backend}: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
