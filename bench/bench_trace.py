"""Benchmark `kpdoctor trace --bundle` on the 10,000-Service dump: end to end (process start, bundle read,
cluster state, parse of the dump, walk, render), best of N runs.

The bundle (bench/out/, gitignored) is synthetic: bench/synth.py's cluster, node-0000's `iptables-save.txt`
rendered by kpdoctor's reference proxier (kube-proxy v1.36 byte-exact). Building it is not timed.
Target (issue 15): <= 1.0 s end to end for one trace.

Also (--matrix-nodes N): `trace --matrix` for one Service over N nodes' dumps. Target: <= 5 s for 100 nodes.

Usage: python3 bench/bench_trace.py [--services 10000] [--endpoints 10] [--runs 3] [--ip-addr] [--compare TREE]
       [--matrix-nodes 100] [--matrix-services 1000] [--synth-pod-ips]
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from childrun import run_child  # noqa: E402
from synth import SynthSpec, synth_objects  # noqa: E402

SYSCTL = "net.ipv4.ip_forward = 1\n"


def ip_addr_json(node_ip: str, pod_cidr: str) -> str:
    """What `ip -j addr` prints on such a node (lo, the InternalIP's interface, the pod bridge), trimmed to the
    fields kpdoctor reads."""
    gateway = pod_cidr.rsplit(".", 1)[0] + ".1" if pod_cidr else ""
    links = [("lo", "127.0.0.1", 8, "host"), ("eth0", node_ip, 24, "global")]
    if gateway:
        links.append(("cni0", gateway, int(pod_cidr.rsplit("/", 1)[1]), "global"))
    return json.dumps([{"ifindex": k + 1, "ifname": name, "addr_info": [
        {"family": "inet", "local": ip, "prefixlen": plen, "scope": scope}]} for k, (name, ip, plen, scope)
        in enumerate(links)]) + "\n"


def place_pods(objs: dict[str, list[dict[str, Any]]]) -> tuple[int, int]:
    """Give each endpoint an address inside its node's podCIDR, as a real cluster's IPAM does (host-local per
    node podCIDR: from .2, .0/.1 are the bridge's); bench/synth.py numbers pods from one range regardless of
    the node. A node whose /24 is full keeps synth's address (outside every podCIDR). (placed, endpoints)."""
    nets = {n["metadata"]["name"]: ipaddress.ip_network(n["spec"]["podCIDR"]) for n in objs["nodes"]}
    used = dict.fromkeys(nets, 2)
    placed = total = 0
    for sl in objs["endpointslices"]:
        for ep in sl["endpoints"]:
            total += 1
            node = ep.get("nodeName")
            if node in nets and used[node] < nets[node].num_addresses - 1:
                ep["addresses"] = [str(nets[node].network_address + used[node])]
                used[node] += 1
                placed += 1
    return placed, total


def build_bundle(services: int, endpoints: int, nodes: int = 1, ip_addr: bool = False,
                 in_podcidr: bool = True) -> tuple[Path, SynthSpec, str]:
    """A bundle with the rendered dumps of the first `nodes` nodes (the cluster has at least 2); `ip_addr`:
    with each node's ip-addr.json (as `kpdoctor collect` gathers it: then the trace knows which addresses are
    the node's own; without it the trace decides from the Nodes' addresses and podCIDRs, and every endpoint
    address outside them forks "local or not"); `in_podcidr`: pod addresses inside their node's podCIDR
    (`place_pods`), else bench/synth.py's (outside every podCIDR). Also: how many pods were placed."""
    from kpdoctor.cluster.snapshot import load_objects
    from kpdoctor.proxier.context import build_input
    from kpdoctor.proxier.render import render

    spec = SynthSpec(services=services, endpoints=endpoints, nodes=max(2, nodes))
    base = HERE / "out" / (f"trace-{services}x{endpoints}" + ("" if nodes == 1 else f"-{nodes}nodes")
                           + ("-ipaddr" if ip_addr else "") + ("-podcidr" if in_podcidr else ""))
    if (base / ".complete").exists():
        return base, spec, (base / ".complete").read_text().strip()
    objs = synth_objects(spec)
    placed, total = place_pods(objs) if in_podcidr else (0, sum(len(s["endpoints"]) for s in objs["endpointslices"]))
    (base / "cluster").mkdir(parents=True, exist_ok=True)
    for kind, items in objs.items():
        with open(base / "cluster" / f"{kind}.json", "w", encoding="utf-8") as handle:
            json.dump({"apiVersion": "v1", "kind": "List", "items": items}, handle)
    cluster = load_objects(((o, f"synth:{kind}") for kind, items in objs.items() for o in items), source="synth")
    for k in range(nodes):
        name = spec.node_name(k)
        node_dir = base / "nodes" / name
        node_dir.mkdir(parents=True, exist_ok=True)
        (node_dir / "iptables-save.txt").write_text(render(build_input(cluster, name)))
        (node_dir / "iptables-version.txt").write_text("iptables v1.8.9 (nf_tables)\n")
        (node_dir / "sysctl.txt").write_text(SYSCTL)
        if ip_addr:
            node = cluster.node_by_name[name]
            (node_dir / "ip-addr.json").write_text(ip_addr_json(node.internal_ips[0], (node.pod_cidrs or [""])[0]))
    layout = f"{placed} of {total} pod addresses inside their node's podCIDR"
    (base / ".complete").write_text(layout + "\n")
    return base, spec, layout


def last_service(bundle: Path) -> str:
    """The Service whose ClusterIP rule comes last in KUBE-SERVICES (the walk's worst case)."""
    dump = (bundle / "nodes").glob("*/iptables-save.txt")
    text = next(dump).read_text()
    last = [line for line in text.splitlines() if line.startswith("-A KUBE-SERVICES ")
            and "cluster IP" in line][-1]
    comment = last.split('--comment "', 1)[1].split('"', 1)[0]  # "ns/name:port cluster IP"
    ns_name, _, port = comment.split(" ", 1)[0].rpartition(":")
    return f"svc/{ns_name}:{port}"


def child_env(tree: Path) -> dict[str, str]:
    """As installed: pip writes __pycache__ at install time, so bytecode is written (by the untimed warm-up
    run) even when this shell sets PYTHONDONTWRITEBYTECODE (which would recompile ~60 modules, ~0.2 s, per run)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = str(tree)
    return env


def timed(argv: list[str], out_file: Path, runs: int, tree: Path = HERE.parent) -> tuple[list[float], list[float]]:
    """Wall and CPU seconds (child's user + sys) of `runs` runs of argv (kpdoctor from `tree`), stdout to
    out_file, after one untimed warm-up run (page cache, __pycache__)."""
    times: list[float] = []
    cpus: list[float] = []
    env = child_env(tree)
    for k in range(runs + 1):
        with open(out_file, "w", encoding="utf-8") as sink:
            run = run_child(argv, env=env, cwd=tree, stdout=sink, stderr=subprocess.DEVNULL)  # -m: cwd first
        if run.returncode != 0:
            raise SystemExit(f"trace failed (exit {run.returncode}): {' '.join(argv)}")
        if k:
            times.append(run.wall)
            cpus.append(run.cpu)  # less disturbed than wall time by other work
    return times, cpus


def _fmt(values: list[float]) -> str:
    return f"best {min(values):.2f} s (all {', '.join(f'{t:.2f}' for t in values)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=10000)
    parser.add_argument("--endpoints", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--matrix-nodes", type=int, default=0, help="also time --matrix over this many nodes")
    parser.add_argument("--matrix-services", type=int, default=1000)
    parser.add_argument("--ip-addr", action="store_true",
                        help="nodes with ip-addr.json (as collected); default without (every endpoint forks)")
    parser.add_argument("--synth-pod-ips", action="store_true",
                        help="keep bench/synth.py's pod addresses (outside every node's podCIDR: the layout of the "
                             "figures before the trace used podCIDRs); default: inside their node's podCIDR")
    parser.add_argument("--compare", type=Path, default=None,
                        help="another kpdoctor tree (e.g. a checkout of main): timed in the same run")
    args = parser.parse_args()
    trees = [HERE.parent] + ([args.compare.resolve()] if args.compare else [])
    in_podcidr = not args.synth_pod_ips
    bundle, spec, layout = build_bundle(args.services, args.endpoints, ip_addr=args.ip_addr, in_podcidr=in_podcidr)
    target = last_service(bundle)
    node = spec.node_name(0)
    with open(bundle / "nodes" / node / "iptables-save.txt", encoding="utf-8") as dump:
        lines = sum(1 for _ in dump)
    argv = [sys.executable, "-m", "kpdoctor", "trace", "--bundle", str(bundle), "--node", node, "--from", "external",
            "--to", target, "-o", "json"]
    print(f"# kpdoctor trace --bundle: {args.services} Services x {args.endpoints} endpoints, {lines} dump lines, "
          f"{os.cpu_count()} cpus, load {os.getloadavg()[0]:.1f}, {time.strftime('%Y-%m-%d %H:%M')}, "
          f"ip-addr.json: {'yes' if args.ip_addr else 'no'}; {layout}")
    for tree in trees:
        out_file = bundle / "trace.json"
        times, cpus = timed(argv, out_file, args.runs, tree)
        result = json.loads(out_file.read_text())
        print(f"[{tree}] target {target}: endpoints {len(result['endpoints'])}, outcomes {len(result['outcomes'])}")
        print(f"[{tree}] one trace, end to end: wall {_fmt(times)}; CPU {_fmt(cpus)}")
    if args.matrix_nodes:
        mbundle, mspec, mlayout = build_bundle(args.matrix_services, args.endpoints, args.matrix_nodes, args.ip_addr,
                                               in_podcidr)
        print(f"# --matrix bundle: {mlayout}")
        svc = last_service(mbundle).split(":")[0]
        margv = [sys.executable, "-m", "kpdoctor", "trace", "--bundle", str(mbundle), "--matrix", "--to", svc,
                 "-o", "json"]
        for tree in trees:
            mtimes, mcpus = timed(margv, mbundle / "matrix.json", args.runs, tree)
            cells = json.loads((mbundle / "matrix.json").read_text())
            print(f"[{tree}] --matrix {svc}: {args.matrix_services} Services x {args.endpoints} endpoints, "
                  f"{args.matrix_nodes} nodes, {len(cells)} cells: wall {_fmt(mtimes)}; CPU {_fmt(mcpus)}")
    print(f"# load after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
