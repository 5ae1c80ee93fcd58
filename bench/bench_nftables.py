"""Benchmark: nftables reference proxier render, real `nft -f` apply, and nft dump parsing at scale.

Usage (root, nft and iproute2 installed for the apply/dump part):
    python3 bench/bench_nftables.py [--services 10000] [--endpoints 10] [--repeat 3]

Targets (issue 3): render 10,000 Services x 10 endpoints <= 1 s; parse `nft -j list ruleset`
of that ruleset <= 2 s; the `nft -f` apply time of the same ruleset is recorded alongside as
the reference of what the kernel side costs. The apply happens in a throwaway network
namespace (never the host's ruleset), which is deleted afterwards.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # repo root: kpdoctor and bench.synth

from kpdoctor.cluster.config import KubeProxyConfig  # noqa: E402
from kpdoctor.cluster.snapshot import load_objects  # noqa: E402
from kpdoctor.cluster.state import ClusterState  # noqa: E402
from kpdoctor.dataplane.nft import parse_nft_json, parse_nft_text  # noqa: E402
from kpdoctor.dataplane.nft_semantic import semantic_view  # noqa: E402
from kpdoctor.proxier.context import build_input  # noqa: E402
from kpdoctor.proxier.nftables import render_nftables  # noqa: E402


def synth_cluster(services: int, endpoints: int) -> tuple[ClusterState, str, str]:
    """(cluster, node name, cluster CIDR) from the shared generator bench/synth.py (realistic mix:
    NodePort/LoadBalancer/eTP=Local/ClientIP affinity/externalIPs), or a minimal local one."""
    try:
        from bench.synth import SynthSpec
        from bench.synth import synth_cluster as shared
    except ImportError:
        return _minimal_cluster(services, endpoints), "bench-node", "10.128.0.0/9"
    spec = SynthSpec(services=services, endpoints=endpoints, nodes=10)
    return shared(spec), spec.node_name(0), spec.cluster_cidr


def _minimal_cluster(services: int, endpoints: int) -> ClusterState:
    node = "bench-node"
    objs: list[tuple[dict[str, Any], str]] = [(
        {"apiVersion": "v1", "kind": "Node", "metadata": {"name": node},
         "status": {"addresses": [{"type": "InternalIP", "address": "10.77.0.2"}]}}, "synth")]
    for i in range(services):
        ns, name = f"ns{i % 50}", f"svc-{i}"
        ip = f"10.96.{i // 250}.{i % 250 + 1}"
        port: dict[str, Any] = {"name": "http", "port": 80, "protocol": "TCP"}
        spec: dict[str, Any] = {"type": "ClusterIP", "clusterIP": ip, "clusterIPs": [ip], "ports": [port]}
        if i % 10 == 0:
            spec["type"] = "NodePort"
            port["nodePort"] = 30000 + i // 10
        objs.append(({"apiVersion": "v1", "kind": "Service", "metadata": {"namespace": ns, "name": name},
                      "spec": spec}, "synth"))
        eps = [{"addresses": [f"10.{128 + (i * endpoints + j) // 65536}.{(i * endpoints + j) // 256 % 256}."
                              f"{(i * endpoints + j) % 256}"],
                "conditions": {"ready": True}, "nodeName": node if j == 0 and i % 7 == 0 else f"n{j}"}
               for j in range(endpoints)]
        objs.append(({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                      "metadata": {"namespace": ns, "name": f"{name}-1", "labels": {"kubernetes.io/service-name": name}},
                      "addressType": "IPv4", "endpoints": eps,
                      "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}, "synth"))
    return load_objects(objs, source="synth")


CPU: list[float] = []  # CPU seconds of the last `timed` call (median), printed next to wall time


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """Median wall time; the median CPU time goes to CPU[-1] (other load on a shared box inflates wall time)."""
    times, cpu, result = [], [], None
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        result = fn()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    CPU.append(statistics.median(cpu))
    return statistics.median(times), result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--services", type=int, default=10000)
    ap.add_argument("--endpoints", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    t0 = time.perf_counter()
    cluster, NODE, cidr = synth_cluster(args.services, args.endpoints)
    print(f"synthetic cluster: {args.services} Services x {args.endpoints} endpoints, node {NODE} "
          f"(built in {time.perf_counter() - t0:.2f} s)")
    config = KubeProxyConfig(mode="nftables", cluster_cidr=cidr)

    def full() -> str:
        inp = build_input(cluster, NODE, config=config, version=(1, 36))
        return render_nftables(inp, service_cidrs=("10.96.0.0/16",))

    inp = build_input(cluster, NODE, config=config, version=(1, 36))
    inp.service_ports()
    t_render_only, _ = timed(lambda: render_nftables(inp, service_cidrs=("10.96.0.0/16",)), args.repeat)
    cpu_render_only = CPU[-1]
    t_full, text = timed(full, args.repeat)
    print(f"render (endpoint selection + nft text), median of {args.repeat}: {t_full:.3f} s (cpu {CPU[-1]:.3f})  "
          f"[{len(text.splitlines())} lines, {len(text) / 1e6:.1f} MB]")
    print(f"render (nft text only, endpoints pre-categorized):      {t_render_only:.3f} s (cpu {cpu_render_only:.3f})")

    if os.geteuid() != 0 or shutil.which("nft") is None or shutil.which("ip") is None:
        print("apply/parse of the kernel dump skipped: needs root, nft and ip")
        return
    ns = "kpd-bench-" + uuid.uuid4().hex[:8]
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        t0 = time.perf_counter()
        r = subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=text, text=True, capture_output=True)
        t_apply = time.perf_counter() - t0
        if r.returncode:
            raise SystemExit(f"nft -f failed: {r.stderr[:2000]}")
        print(f"nft -f apply (fresh netns, one transaction):             {t_apply:.3f} s")
        t0 = time.perf_counter()
        dump_json = subprocess.run(["ip", "netns", "exec", ns, "nft", "-j", "list", "ruleset"], text=True,
                                   capture_output=True, check=True).stdout
        t_dump_json = time.perf_counter() - t0
        t0 = time.perf_counter()
        dump_text = subprocess.run(["ip", "netns", "exec", ns, "nft", "list", "ruleset"], text=True,
                                   capture_output=True, check=True).stdout
        t_dump_text = time.perf_counter() - t0
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
    print(f"nft -j list ruleset: {t_dump_json:.3f} s ({len(dump_json) / 1e6:.1f} MB); "
          f"nft list ruleset: {t_dump_text:.3f} s ({len(dump_text) / 1e6:.1f} MB)")
    t_pj, rs = timed(lambda: parse_nft_json(dump_json), args.repeat)
    print(f"parse nft -j JSON (median):                              {t_pj:.3f} s (cpu {CPU[-1]:.3f})")
    t_pt, _ = timed(lambda: parse_nft_text(dump_text), args.repeat)
    print(f"parse nft text (median):                                 {t_pt:.3f} s (cpu {CPU[-1]:.3f})")
    t_sem, view = timed(lambda: semantic_view(rs), args.repeat)
    print(f"semantic view from the parsed JSON (median):             {t_sem:.3f} s (cpu {CPU[-1]:.3f})  "
          f"[{len(view.frontends)} frontends]")
    load = os.getloadavg()[0]
    print(f"load average during the run: {load:.1f} (2 cores: anything above 2 inflates wall times)")
    print(f"machine: {os.cpu_count()} cpus, kernel {platform.release()}, python {platform.python_version()}, "
          f"{time.strftime('%Y-%m-%d')}")


if __name__ == "__main__":
    main()
