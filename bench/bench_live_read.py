"""Live read at scale, side by side (issue 12): kpdoctor's cluster read vs kubectl, same API server, same run.

Starts a lab cluster (`kpdoctor.lab.kcluster`: real etcd + kube-apiserver v1.37, one node with a real
kube-proxy), writes N Services and N EndpointSlices through the API (parallel POSTs), then alternates
    kpdoctor: python3 -c 'load_live(KUBECONFIG)'   (Services, EndpointSlices, Nodes, kube-system ConfigMaps,
              DaemonSets, Pods, ServiceCIDRs, kube-proxy pod logs; paginated, raw JSON)
    kubectl:  kubectl get services,endpointslices,nodes -A -o json   (kubectl v1.37.2 built from the same module)
each as a child process, timing wall clock and peak RSS (wait4). Root only; tears the cluster down.

    python3 bench/bench_live_read.py --services 10000 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from childrun import run_child  # noqa: E402

from kpdoctor.lab import k8sbuild, kcluster  # noqa: E402
from kpdoctor.lab.kapi import Api  # noqa: E402


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB) of one child process; its stdout is discarded."""
    run = run_child(argv, env=env)
    if run.returncode != 0:
        raise SystemExit(f"{argv[0]} failed: {run.stderr[-500:]}")
    return run.wall, run.max_rss_mib


def populate(state: kcluster.ClusterState, n: int) -> float:
    pki = state.state_dir / "pki"
    node = state.nodes[0]
    started = time.monotonic()

    def one(i: int) -> None:
        api = Api(state.apiserver, str(pki / "ca.crt"), str(pki / "admin.crt"), str(pki / "admin.key"))
        ns = f"bench{i % 10}"
        name = f"svc-{i:05d}"
        ip = f"10.96.{(i + 100) // 250}.{(i + 100) % 250 + 2}"
        api.apply({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
                   "spec": {"clusterIP": ip, "clusterIPs": [ip],
                            "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}})
        api.apply({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                   "metadata": {"name": f"{name}-a", "namespace": ns,
                                "labels": {"kubernetes.io/service-name": name}},
                   "addressType": "IPv4",
                   "endpoints": [{"addresses": [f"10.244.1.{(i + k) % 200 + 20}"], "nodeName": node.name,
                                  "conditions": {"ready": True}} for k in range(3)],
                   "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]})

    pki_api = Api(state.apiserver, str(pki / "ca.crt"), str(pki / "admin.crt"), str(pki / "admin.key"))
    for k in range(10):
        pki_api.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": f"bench{k}"}})
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(one, range(n)))
    return time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    kubectl = k8sbuild.build("1.37", ["kubectl"])[0].path
    with tempfile.TemporaryDirectory(prefix="kpd-liveread-") as tmp:
        state_dir = Path(tmp) / "klab"
        t0 = time.monotonic()
        state = kcluster.up(state_dir, version="1.37", nodes=1, mode="nftables", pods_per_node=0)
        up_s = time.monotonic() - t0
        try:
            fill_s = populate(state, args.services)
            env = {**os.environ, "PYTHONPATH": str(REPO), "KUBECONFIG": state.kubeconfig}
            reader = [sys.executable, "-c", "import os; from kpdoctor.cluster.live import load_live; "
                      "r = load_live(os.environ['KUBECONFIG']); assert len(r.state.services) > 0"]
            kc = [str(kubectl), "get", "services,endpointslices,nodes", "-A", "-o", "json"]
            rows: dict[str, list[tuple[float, float]]] = {"kpdoctor": [], "kubectl": []}
            for _ in range(args.rounds):
                rows["kpdoctor"].append(timed(reader, env))
                rows["kubectl"].append(timed(kc, env))
            result = {
                "services": args.services, "endpointslices": args.services, "cluster_up_s": round(up_s, 1),
                "populate_s": round(fill_s, 1), "load_average": [round(x, 2) for x in os.getloadavg()],
                **{k: {"wall_s": [round(w, 2) for w, _ in v], "peak_rss_mib": [round(m) for _, m in v]}
                   for k, v in rows.items()},
            }  # fmt: skip
            print(json.dumps(result, indent=2))
        finally:
            kcluster.down(state_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
