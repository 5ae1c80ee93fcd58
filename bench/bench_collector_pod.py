"""The collector pod's own cost on a real lab node at N Services (issue 14 item 4), next to --transport local.

Starts `kpdoctor lab cluster up --with-kubelet` (one node: kubelet 1.37 + containerd + runc, kube-proxy the
DaemonSet's pod, iptables mode), writes N Services + N EndpointSlices (3 endpoints each) through the API
(bench_live_read.populate), waits until the node's kube-proxy has written a KUBE-SVC chain for every one, then
alternates, each as a child process timed with wait4 (wall, peak RSS of the kpdoctor process):
    kpdoctor scan --kubeconfig K --transport pod   --nodes NODE -o json   (from the host)
    kpdoctor scan --kubeconfig K --transport local --nodes NODE -o json   (inside the node's namespace)
During the pod run a thread polls the kubelet's cgroups (cgroup v1, cgroupfs driver) for the collector pod's
pod-level cgroup: its lifetime (first to last seen, 50 ms polls: the pod from its sandbox to its deletion),
memory.max_usage_in_bytes (the pod's peak: sleep + every exec'd reader) and cpuacct.usage. Root only.

    python3 bench/bench_collector_pod.py --services 10000 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_live_read import populate  # noqa: E402

from kpdoctor.lab import kcluster  # noqa: E402

CGROUP = Path("/sys/fs/cgroup")


def run_timed(argv: list[str], env: dict[str, str]) -> dict[str, Any]:
    """wait4 needs the child unreaped: communicate() reaps it, so read its pipes in threads instead."""
    start = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=REPO)
    chunks: dict[str, bytes] = {}

    def drain(name: str, pipe: Any) -> None:
        chunks[name] = pipe.read()

    readers = [threading.Thread(target=drain, args=(n, p)) for n, p in (("out", proc.stdout), ("err", proc.stderr))]
    for t in readers:
        t.start()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - start
    for t in readers:
        t.join()
    out = chunks.get("out", b"")
    report = json.loads(out) if out.strip().startswith(b"{") else {}
    if not report:
        raise SystemExit(f"{argv[:8]} failed ({proc.returncode}): {chunks.get('err', b'').decode()[-800:]}")
    return {"wall_s": round(wall, 2), "peak_rss_mib": round(usage.ru_maxrss / 1024), "exit_code": report["exit_code"],
            "findings": report["summary"]["findings"]}  # fmt: skip


class PodCgroups(threading.Thread):
    """Polls <memory hierarchy>/<cgroup root>/**/pod<uid> directories that appear after it starts."""

    def __init__(self, root: str) -> None:
        super().__init__(daemon=True)
        self.mem, self.cpu = CGROUP / "memory" / root, CGROUP / "cpuacct" / root
        self.before = set(self._pods())
        self.seen: dict[str, dict[str, Any]] = {}
        self.stop = threading.Event()

    def _pods(self) -> list[Path]:
        return [p for p in self.mem.rglob("pod*") if p.is_dir()]

    def run(self) -> None:
        while not self.stop.is_set():
            now = time.monotonic()
            for pod in self._pods():
                if pod in self.before:
                    continue
                rec = self.seen.setdefault(pod.name, {"first": now, "last": now, "max_usage": 0, "cpu_ns": 0})
                try:
                    rec["max_usage"] = max(rec["max_usage"], int((pod / "memory.max_usage_in_bytes").read_text()))
                    rec["last"] = now
                    rec["cpu_ns"] = max(rec["cpu_ns"], int((self.cpu / pod.relative_to(self.mem) / "cpuacct.usage").read_text()))
                except (OSError, ValueError):
                    pass  # removed between the listing and the read
            time.sleep(0.05)

    def result(self) -> list[dict[str, Any]]:
        return [{"pod_cgroup": k, "lifetime_s": round(v["last"] - v["first"], 2),
                 "peak_memory_mib": round(v["max_usage"] / 2**20, 1), "cpu_s": round(v["cpu_ns"] / 1e9, 2)}
                for k, v in self.seen.items()]  # fmt: skip


def wait_synced(netns: str, n: int, deadline_s: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < deadline_s:
        out = subprocess.run(["ip", "netns", "exec", netns, "iptables-save", "-t", "nat"], capture_output=True,
                             text=True, check=False).stdout  # fmt: skip
        if sum(1 for ln in out.splitlines() if ln.startswith(":KUBE-SVC-")) >= n:
            return time.monotonic() - start
        time.sleep(5)
    raise SystemExit(f"kube-proxy did not sync {n} Services in {deadline_s:g} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kpd-podbench-") as tmp:
        state_dir = Path(tmp) / "klab"
        state = kcluster.up(state_dir, version="1.37", nodes=1, mode="iptables", pods_per_node=0, with_kubelet=True)
        try:
            node = state.nodes[0]
            fill_s = populate(state, args.services)
            sync_s = wait_synced(node.netns, args.services, 1800)
            env = {**os.environ, "PYTHONPATH": str(REPO)}
            env.pop("KUBECONFIG", None)
            scan = [sys.executable, "-m", "kpdoctor", "scan", "--kubeconfig", state.kubeconfig, "--nodes", node.name,
                    "-o", "json", "--transport"]  # fmt: skip
            rows: dict[str, list[dict[str, Any]]] = {"pod": [], "local": []}
            for _ in range(args.rounds):
                watch = PodCgroups(f"kpdoctor-{state.prefix}")
                watch.start()
                row = run_timed([*scan, "pod", "--timeout", "600"], env)
                time.sleep(1)
                watch.stop.set()
                watch.join()
                rows["pod"].append({**row, "collector_pods": watch.result()})
                rows["local"].append(run_timed(["ip", "netns", "exec", node.netns, *scan, "local"], env))
            print(json.dumps({"services": args.services, "endpoints_per_service": 3, "populate_s": round(fill_s, 1),
                              "kube_proxy_sync_wait_s": round(sync_s, 1),
                              "load_average": [round(x, 2) for x in os.getloadavg()], **rows}, indent=2))  # fmt: skip
        finally:
            kcluster.down(state_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
