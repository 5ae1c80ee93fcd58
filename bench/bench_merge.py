"""Benchmark the central merge of 1,000 nodes' results (issue 14 item 4): what the central process does
when every node's checks ran beside the node (a collector pod) and only its findings came back.

1. A synthetic 10,000-Service cluster (bench/synth.py, 10 endpoints each) with 1,000 Node objects.
2. VARIANTS real per-node analyses: node dumps rendered by the reference proxier (kube-proxy v1.36,
   iptables), each with its own planted faults (see FAULTS), checked by the real node checks
   (run_checks on that one node, as a collector would), encoded with kpdoctor.noderesult.encode. Their
   wall time and size are printed: the per-node analysis cost at this size, measured here, not in a pod.
3. 1,000 node result files: node i gets variant i % VARIANTS's result with its own name substituted (so
   VARIANTS distinct fault sets over 1,000 nodes, not 1,000 distinct ones).
4. The central merge, as a subprocess measured with wait4 (wall, CPU, peak RSS): load the cluster
   snapshot, run the cluster checks, read and decode (hostile-input checks) the 1,000 files, merge, build
   the report, write it as JSON.

    python3 bench/bench_merge.py --nodes 1000 --services 10000
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

from bench_scan import _init, _render_node  # noqa: E402
from childrun import run_child  # noqa: E402
from synth import SynthSpec, write_snapshot  # noqa: E402

OUT = HERE / "out"


def _fault(node_dir: Path, variant: int) -> str:
    """Plant variant's faults the way they look on a node (its files), and say which."""
    dump = node_dir / "iptables-save.txt"
    if variant == 1:
        sysctl = node_dir / "sysctl.txt"
        sysctl.write_text(sysctl.read_text().replace("ip_forward = 1", "ip_forward = 0"))
        return "net.ipv4.ip_forward=0"
    if variant == 2:  # kube-proxy stopped syncing: 200 Services' endpoint chains missing from the dump
        lines = dump.read_text().splitlines(keepends=True)
        drop = {ln.split()[1] for ln in lines if ln.startswith("-A KUBE-SVC-") and "-j KUBE-SEP-" in ln}
        keep = sorted(drop)[:200]
        text = "".join(ln for ln in lines if not (ln.startswith("-A KUBE-SVC-") and ln.split()[1] in keep))
        dump.write_text(text)
        (node_dir / "iptables-nft-save.txt").write_text(text)
        return "200 KUBE-SVC chains emptied"
    if variant == 3:  # leftovers of the other backend
        (node_dir / "iptables-legacy-save.txt").write_text(
            "*nat\n:KUBE-SERVICES - [0:0]\n-A KUBE-SERVICES -j KUBE-MARK-MASQ\nCOMMIT\n")
        return "KUBE-* chains in iptables-legacy too"
    return "none"


def build(services: int, nodes: int, variants: int, min_severity: str) -> Path:
    base = OUT / f"merge-{services}svc-{nodes}nodes-{variants}v-{min_severity or 'all'}"
    if (base / ".complete").exists():
        return base
    spec = SynthSpec(services=services, endpoints=10, nodes=nodes)
    write_snapshot(spec, base / "bundle" / "cluster")
    _init(spec)
    from kpdoctor.engine import run_checks
    from kpdoctor.findings import Severity
    from kpdoctor.noderesult import encode
    from kpdoctor.registry import discover
    from kpdoctor.scanner import open_bundle

    names = [spec.node_name(k) for k in range(variants)]
    faults = {}
    for v, name in enumerate(names):
        _render_node((name, str(base / "bundle")))
        faults[name] = _fault(base / "bundle" / "nodes" / name, v)
    cluster, source = open_bundle(base / "bundle")
    node_checks = [c for c in discover().select() if c.scope == "node"]
    texts = []
    print("| variant node | faults planted | node checks wall s | result KiB | findings |")
    print("|---|---|---|---|---|")
    for name in names:
        t0 = time.perf_counter()
        result = run_checks(node_checks, cluster, nodes=[source.load(name)])
        text = json.dumps(encode(result, name, min_severity=Severity.parse(min_severity) if min_severity else None))
        wall = time.perf_counter() - t0
        texts.append(text)
        sent = len(json.loads(text)["findings"])
        print(f"| {name} | {faults[name]} | {wall:.2f} | {len(text) / 1024:.0f} | {len(result.findings)} ({sent} sent) |", flush=True)
    results = base / "results"
    results.mkdir(exist_ok=True)
    for i in range(nodes):
        src = names[i % variants]
        (results / f"{spec.node_name(i)}.json").write_text(texts[i % variants].replace(src, spec.node_name(i)))
    (base / ".complete").write_text("ok\n")
    return base


def merge_main(base: Path, profile: Path | None = None) -> None:
    """The measured part (run in its own process); with `profile`, under cProfile (its stats written there)."""
    if profile is not None:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
        try:
            merge_main(base)
        finally:
            profiler.disable()
            profiler.dump_stats(str(profile))
        return
    from kpdoctor.engine import run_checks
    from kpdoctor.noderesult import Interner, decode, merge
    from kpdoctor.registry import discover
    from kpdoctor.report.json_report import write_json
    from kpdoctor.report.model import SourceInfo, build_report
    from kpdoctor.scanner import open_bundle

    t0 = time.perf_counter()
    checks = discover().select()
    cluster, _ = open_bundle(base / "bundle")
    central = run_checks([c for c in checks if c.scope == "cluster"], cluster, nodes=[])
    t1 = time.perf_counter()
    files = sorted((base / "results").iterdir())
    strings = Interner()
    node_results = [decode(json.loads(f.read_text()), str(f), strings) for f in files]
    merged = merge(checks, central, node_results)
    report = build_report(merged, source=SourceInfo("merge", str(base), "pod"), fail_on=None, exit_code=0)
    with (base / "report.json").open("w", encoding="utf-8") as out:
        write_json(report, out)
    t2 = time.perf_counter()
    print(json.dumps({"central_s": t1 - t0, "merge_s": t2 - t1, "nodes": len(merged.nodes),
                      "omitted": merged.options.node_findings_omitted,
                      "findings": len(merged.findings), "groups": report["summary"]["groups"],
                      "report_mib": (base / "report.json").stat().st_size / 2**20}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=10000)
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--variants", type=int, default=4)
    parser.add_argument("--min-severity", default="", help="node side: count, not send, findings below this")
    parser.add_argument("--profile", type=Path, help="write the merge's cProfile stats here (slower; not a timing run)")
    parser.add_argument("--merge", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.merge:
        merge_main(args.merge, args.profile)
        return
    base = build(args.services, args.nodes, args.variants, args.min_severity)
    profile = ["--profile", str(args.profile.resolve())] if args.profile else []
    run = run_child([sys.executable, __file__, "--merge", str(base), *profile], stdout=subprocess.PIPE, stderr=None)
    if run.returncode != 0:
        raise SystemExit(f"merge failed: {run.stdout}")
    parts = json.loads(run.stdout)
    print(f"\n# central merge, {os.cpu_count()} cpus, load {os.getloadavg()[0]:.1f}, {time.strftime('%Y-%m-%d')}")
    print("| services | nodes | node side sends | wall s | CPU s | peak RSS MiB | of which cluster load+checks s | decode+merge+report s "
          "| findings (+ counted, not sent) | groups | report MiB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    print(f"| {args.services} | {parts['nodes']} | {args.min_severity or 'all'} | {run.wall:.1f} | {run.cpu:.1f} | "
          f"{run.max_rss_mib:.0f} | {parts['central_s']:.1f} | {parts['merge_s']:.1f} | {parts['findings']} (+{parts['omitted']}) | "
          f"{parts['groups']} | {parts['report_mib']:.1f} |")


if __name__ == "__main__":
    main()
