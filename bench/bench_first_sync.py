"""kube-proxy's first full sync per mode next to kpdoctor's render of the same cluster (issue 12).

For each mode and Service count: a lab cluster (real kube-apiserver v1.37 + real kube-proxy v1.37 in one
node namespace), N Services x 3 endpoints written through the API, kube-proxy restarted (so its first sync
sees everything), then its own metric `kubeproxy_sync_full_proxy_rules_duration_seconds{ip_family="IPv4"}`
(sum/count after the first full sync) next to kpdoctor's `build_input + render` of the cluster read back from the live API (best of 3).

    python3 bench/bench_first_sync.py --services 1000,5000 --modes iptables,nftables
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_live_read import populate  # noqa: E402

from kpdoctor.cluster.live import load_live  # noqa: E402
from kpdoctor.commands.proxier import build_proxier_inputs, snapshot_service_cidrs  # noqa: E402
from kpdoctor.lab import kcluster, netns  # noqa: E402
from kpdoctor.proxier.iptables import render_iptables  # noqa: E402
from kpdoctor.proxier.nftables import render_nftables_families  # noqa: E402

METRIC = re.compile(r'^kubeproxy_sync_full_proxy_rules_duration_seconds_(sum|count)\{ip_family="IPv4"\}\s+(\S+)$', re.M)


def sync_metric(node: kcluster.knet.NodeNet) -> tuple[float, int]:
    res = netns.run(["curl", "-s", "-m", "3", f"http://127.0.0.1:{kcluster.METRICS_PORT}/metrics"], netns=node.netns,
                    check=False)  # fmt: skip
    found = dict(METRIC.findall(res.stdout))
    return float(found.get("sum", 0)), int(float(found.get("count", 0)))


def one(mode: str, services: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="kpd-firstsync-") as tmp:
        state_dir = Path(tmp) / "klab"
        state = kcluster.up(state_dir, version="1.37", nodes=1, mode=mode, pods_per_node=0)
        try:
            populate(state, services)
            node = state.nodes[0]
            kcluster.restart_kube_proxy(state, node.name)
            end = time.monotonic() + 600
            total, count = sync_metric(node)
            while count < 1 and time.monotonic() < end:
                time.sleep(0.5)
                total, count = sync_metric(node)
            cluster = load_live(state.kubeconfig).state
            renders = []
            for _ in range(3):
                t0 = time.perf_counter()
                inps = build_proxier_inputs(cluster, node.name, mode="nftables" if mode == "nftables" else "iptables",
                                            family=None if mode == "nftables" else "IPv4")  # fmt: skip
                if mode == "nftables":
                    render_nftables_families(inps, service_cidrs=snapshot_service_cidrs(cluster))
                else:
                    render_iptables(inps[0])
                renders.append(time.perf_counter() - t0)
            first = total / count if count else None
            return {"mode": mode, "services": services, "kube_proxy_first_sync_s": round(first, 3) if first else None,
                    "syncs_seen": count, "kpdoctor_render_s": round(min(renders), 3),
                    "ratio_render_over_sync": round(min(renders) / first, 2) if first else None,
                    "load_average": [round(x, 2) for x in os.getloadavg()]}  # fmt: skip
        finally:
            kcluster.down(state_dir)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", default="1000,5000")
    parser.add_argument("--modes", default="iptables,nftables")
    args = parser.parse_args()
    for mode in args.modes.split(","):
        for n in (int(x) for x in args.services.split(",")):
            print(json.dumps(one(mode, n)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
