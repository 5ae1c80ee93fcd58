"""Benchmark: IPVS reference proxier render and the ipvsadm / ipset parsers at scale.

Usage:
    python3 bench/bench_ipvs.py [--services 10000] [--endpoints 10] [--repeat 5] [--no-kernel]

Measured (10,000 Services x 10 endpoints from bench/synth.py, one node, IPv4):
- `render_ipvs` with endpoint selection, and with the endpoints pre-categorized;
- `parse_ipvsadm_save` on the rendered `ipvsadm --save -n` section and `parse_ipvsadm_list` on the
  same table printed as `ipvsadm -Ln`;
- `parse_ipset_list` on `ipset list` text and `parse_ipset_save` on the rendered `ipset save` section;
- the semantic view from the parsed table + sets + iptables rules, and `parse_ipvs_document`.

The kernel side of IPVS (virtual/real servers: `ipvsadm --restore`, what kube-proxy programs over
netlink) cannot be measured here: this kernel has no IPVS (no /proc/net/ip_vs). The ipset and
iptables halves of IPVS mode do not need IPVS, so with root (and unless --no-kernel) they are applied
into a throwaway network namespace as a reference: `ipset restore` of the sets, the REAL kernel's
`ipset list` of them (which is then parsed too, so the parser sees genuine kernel output), and
`iptables-restore` (iptables-nft) of the IPVS-mode chains. The namespace is deleted afterwards.

Every step prints all runs as wall/CPU pairs (`time.perf_counter` / `time.process_time`), best and
median, and the load average at start and end (shared 2-core box: wall is inflated by other load).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # repo root: kpdoctor and bench.*

from bench.bench_nftables import Timing, loadavg, timed  # noqa: E402
from bench.synth import SynthSpec, synth_cluster  # noqa: E402
from kpdoctor.cluster.config import KubeProxyConfig  # noqa: E402
from kpdoctor.dataplane.ipset import IPSets, parse_ipset_list, parse_ipset_save  # noqa: E402
from kpdoctor.dataplane.ipvs import parse_ipvsadm_list, parse_ipvsadm_save  # noqa: E402
from kpdoctor.dataplane.ipvs_document import parse_ipvs_document, split_ipvs_document
from kpdoctor.dataplane.ipvs_format import format_ipset_list, format_ipvsadm_list
from kpdoctor.dataplane.ipvs_semantic import ipvs_semantic_view  # noqa: E402
from kpdoctor.proxier.context import build_input  # noqa: E402
from kpdoctor.proxier.ipvs import ipvs_state, render_ipvs  # noqa: E402


def _mem_total() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 2**20:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def _run_ns(ns: str, argv: list[str], stdin: str | None = None, timeout: float = 600) -> tuple[float, str]:
    """Run argv in `ns`; (wall seconds, stdout). Raises SystemExit with stderr on failure."""
    t0 = time.perf_counter()
    r = subprocess.run(["ip", "netns", "exec", ns, *argv], input=stdin, text=True, capture_output=True,
                       timeout=timeout)  # fmt: skip
    wall = time.perf_counter() - t0
    if r.returncode:
        raise SystemExit(f"{' '.join(argv)} failed in {ns}: {r.stderr[:2000]}")
    return wall, r.stdout


def kernel_reference(ipset_save: str, iptables: str, repeat: int) -> str | None:
    """Apply the ipset/iptables halves in a throwaway netns; return the real `ipset list` text."""
    from kpdoctor.lab.apply import ensure_nfacct

    missing = [t for t in ("ip", "ipset", "iptables-nft-restore", "nfacct") if shutil.which(t) is None]
    if os.geteuid() != 0 or missing:
        print(f"kernel reference skipped: needs root and {', '.join(missing) or 'root'}")
        return None
    ns = "kpd-bench-" + uuid.uuid4().hex[:8]
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        t_restore, _ = _run_ns(ns, ["ipset", "restore"], stdin=ipset_save)
        print(f"{'ipset restore of the sets (fresh netns), once':<52} wall {t_restore:6.3f} s", flush=True)
        listed = Timing("ipset list (real kernel output), wall only")
        text = ""
        for _ in range(repeat):
            wall, text = _run_ns(ns, ["ipset", "list"])
            listed.wall.append(wall)
            listed.cpu.append(0.0)
        print(f"{listed.label:<52} best wall {min(listed.wall):6.3f} s  "
              f"(runs: {'  '.join(f'{w:.3f}' for w in listed.wall)}; {len(text) / 1e6:.1f} MB)", flush=True)
        ensure_nfacct(ns)
        t_ipt, _ = _run_ns(ns, ["iptables-nft-restore"], stdin=iptables)
        print(f"{'iptables-nft-restore of the IPVS-mode chains, once':<52} wall {t_ipt:6.3f} s", flush=True)
        return text
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--services", type=int, default=10000)
    ap.add_argument("--endpoints", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=5, help="runs per step (best and median are reported)")
    ap.add_argument("--no-kernel", action="store_true", help="skip the ipset/iptables apply in a netns")
    args = ap.parse_args()
    print(f"machine: {os.cpu_count()} cpus, {_mem_total()} RAM, kernel {platform.release()}, "
          f"python {platform.python_version()}, {time.strftime('%Y-%m-%d %H:%M')}")
    print(f"load average at start: {loadavg()}  ({os.cpu_count()} cpus: above that, wall times are inflated)")
    ipvs_present = Path("/proc/net/ip_vs").exists()
    print(f"/proc/net/ip_vs present: {ipvs_present}"
          + ("" if ipvs_present else "  -> IPVS kernel side (virtual/real servers) NOT measurable here"))

    t0 = time.perf_counter()
    spec = SynthSpec(services=args.services, endpoints=args.endpoints, nodes=10)
    cluster = synth_cluster(spec)
    node = spec.node_name(0)
    print(f"synthetic cluster: {args.services} Services x {args.endpoints} endpoints, node {node} "
          f"(built in {time.perf_counter() - t0:.2f} s)")
    config = KubeProxyConfig(mode="ipvs", cluster_cidr=spec.cluster_cidr)

    def full() -> str:
        return render_ipvs(build_input(cluster, node, config=config, version=(1, 36)))

    t_full, text = timed("render_ipvs: endpoint selection + all sections", full, args.repeat)
    inp = build_input(cluster, node, config=config, version=(1, 36))
    inp.service_ports()
    timed("render_ipvs: endpoints pre-categorized", lambda: render_ipvs(inp), args.repeat)
    parts = split_ipvs_document(text)
    save_text, ipset_save, iptables = parts["ipvsadm --save -n"], parts["ipset save"], parts["iptables-restore"]
    print(f"  [document {len(text.splitlines())} lines / {len(text) / 1e6:.1f} MB; ipvsadm --save "
          f"{len(save_text.splitlines())} lines; ipset save {len(ipset_save.splitlines())} lines; iptables "
          f"{len(iptables.splitlines())} lines; kube-ipvs0 {len(parts['kube-ipvs0 addresses'].splitlines())} lines]")

    _, table = timed("parse_ipvsadm_save (ipvsadm --save -n)", lambda: parse_ipvsadm_save(save_text), args.repeat)
    n_real = sum(len(vs.real_servers) for vs in table.virtual_servers)
    print(f"  [{len(table.virtual_servers)} virtual servers, {n_real} real servers]")
    list_text = format_ipvsadm_list(table.virtual_servers)
    _, table_l = timed("parse_ipvsadm_list (ipvsadm -Ln form)", lambda: parse_ipvsadm_list(list_text), args.repeat)
    assert table_l.virtual_servers == table.virtual_servers, "ipvsadm -Ln and --save forms disagree"

    _, sets_s = timed("parse_ipset_save (rendered ipset save)", lambda: parse_ipset_save(ipset_save), args.repeat)
    state = ipvs_state(inp)
    ipset_list_text = format_ipset_list(state.ipsets)
    _, sets_l = timed("parse_ipset_list (ipset list form, formatted)", lambda: parse_ipset_list(ipset_list_text),
                      args.repeat)  # fmt: skip
    members = sum(len(s.members) for s in sets_s.sets.values())
    print(f"  [{len(sets_s.sets)} sets, {members} members; ipset list text {len(ipset_list_text) / 1e6:.1f} MB]")

    def view() -> Any:
        return ipvs_semantic_view(table.virtual_servers, sets_l, iptables, node_ips=inp.node_ips)

    _, sv = timed("semantic view (table + sets + iptables)", view, args.repeat)
    print(f"  [{len(sv.frontends)} frontends]")
    timed("parse_ipvs_document (whole render output)", lambda: parse_ipvs_document(text), args.repeat)

    if not args.no_kernel:
        real_list = kernel_reference(ipset_save, iptables, args.repeat)
        if real_list is not None:
            _, real_sets = timed("parse_ipset_list (REAL kernel `ipset list`)", lambda: parse_ipset_list(real_list),
                                 args.repeat)  # fmt: skip
            same = {n: s.members for n, s in real_sets.sets.items()} == {n: s.members for n, s in sets_s.sets.items()}
            print(f"  [kernel listed {len(real_sets.sets)} sets; members equal to the rendered ones: {same}]")
            assert isinstance(real_sets, IPSets)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of this process: {peak:.0f} MB")
    print(f"load average at end: {loadavg()}")
    print(f"render_ipvs at {args.services}x{args.endpoints}: best wall {min(t_full.wall):.3f} s, "
          f"best cpu {min(t_full.cpu):.3f} s (no target set for IPVS; nftables/iptables target is 1 s)")
    if not ipvs_present:
        print("NOT MEASURED: applying the virtual servers (ipvsadm --restore / netlink) and `ipvsadm --save -n` "
              "of a real table - this kernel has no IPVS")


if __name__ == "__main__":
    main()
