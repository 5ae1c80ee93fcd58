"""The collector pod's own cost on a real lab node at N Services (issue 14 item 4), next to in-pod analysis,
the SSH fan-out of the same node and --transport local.

Starts `kpdoctor lab cluster up --with-kubelet` (one node: kubelet 1.37 + containerd + runc, kube-proxy the
DaemonSet's pod, iptables mode), writes N Services + N EndpointSlices (3 endpoints each) through the API
(bench_live_read.populate), waits until the node's kube-proxy has written a KUBE-SVC chain for every one.
For `--analyze-in-pod` it sets up what tests/lab/test_klab_inpod.py does: the collector image built offline
(kpdoctor.lab.pyimage, with the netfilter userland) imported into the kubelet's containerd, deploy/rbac.yaml,
the kube-root-ca.crt ConfigMap and the `kubernetes` Service's endpoint (tests/support/klab.api_relay); for
SSH a real sshd in the node's namespace on its InternalIP (kpdoctor.node.sshlab's throwaway uid-0 account).
Then alternates, each as a child process timed with wait4 (wall, peak RSS of the central kpdoctor process):
    kpdoctor scan --kubeconfig K --transport pod   --nodes NODE -o json   (from the host)
    kpdoctor scan ... --transport pod --analyze-in-pod --collector-image I (from the host)
    kpdoctor scan ... --transport ssh --ssh-user U --ssh-key F ...       (the lab's client namespace)
    kpdoctor scan --kubeconfig K --transport local --nodes NODE -o json   (inside the node's namespace)
and checks every transport gave the same findings (every check's status and every finding group).
During the pod runs a thread polls the kubelet's cgroups (cgroup v1, cgroupfs driver) for the collector pod's
pod-level cgroup: its lifetime (first to last seen, 50 ms polls: the pod from its sandbox to its deletion),
memory.max_usage_in_bytes (the pod's peak: sleep + every exec'd reader, or the in-pod kpdoctor) and
cpuacct.usage. Last, in this process, once: the bytes that cross the exec stream for the node (every raw
fact's stdout + stderr with plain `--transport pod`; the node result JSON with in-pod analysis). Root only.

    python3 bench/bench_collector_pod.py --services 10000 --rounds 2
"""

from __future__ import annotations

import argparse
import contextlib
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

from kpdoctor import inpod  # noqa: E402
from kpdoctor.lab import kcluster, netns, procs  # noqa: E402
from kpdoctor.node.sshlab import SSHD, SshLab  # noqa: E402
from tests.support.klab import api_relay, install_collector  # noqa: E402

CGROUP = Path("/sys/fs/cgroup")


def vm_hwm_kib(pid: int) -> int:
    """The process's own peak resident set (VmHWM of its current mm), 0 once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def run_timed(argv: list[str], env: dict[str, str]) -> dict[str, Any]:
    """wait4 needs the child unreaped: communicate() reaps it, so read its pipes in threads instead.
    Peak RSS is the child's VmHWM polled every 20 ms, not wait4's ru_maxrss: Linux carries the parent's peak
    (this bench, ~270 MiB with the kubernetes client loaded) into a child's ru_maxrss across fork + exec."""
    start = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=REPO)
    chunks: dict[str, bytes] = {}
    peak = [0]
    done = threading.Event()

    def drain(name: str, pipe: Any) -> None:
        chunks[name] = pipe.read()

    def poll() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], vm_hwm_kib(proc.pid))
            time.sleep(0.02)

    readers = [threading.Thread(target=drain, args=(n, p)) for n, p in (("out", proc.stdout), ("err", proc.stderr))]
    readers.append(threading.Thread(target=poll))
    for t in readers:
        t.start()
    _, status, usage = os.wait4(proc.pid, 0)
    done.set()
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - start
    for t in readers:
        t.join()
    out = chunks.get("out", b"")
    report = json.loads(out) if out.strip().startswith(b"{") else {}
    if not report:
        raise SystemExit(f"{argv[:8]} failed ({proc.returncode}): {chunks.get('err', b'').decode()[-800:]}")
    return {"wall_s": round(wall, 2), "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
            "peak_rss_mib": round(peak[0] / 1024), "exit_code": report["exit_code"],
            "findings": report["summary"]["findings"], "outcome": outcome(report)}  # fmt: skip


def outcome(report: dict[str, Any]) -> list[Any]:
    """Every check's status and every finding group's (check id, severity, subject, message): what must agree."""
    groups = sorted([c["id"], g.get("severity", ""), str(g.get("subject", "")), str(g.get("message", ""))]
                    for c in report["checks"] for g in c.get("groups", []))  # fmt: skip
    return [sorted([c["id"], c["status"]] for c in report["checks"]), groups]


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


def setup_in_pod(state: kcluster.ClusterState, tmp: Path, stack: contextlib.ExitStack) -> str:
    """tests/lab/test_klab_inpod.py's fixture: the collector image in containerd, deploy/rbac.yaml, the CA
    ConfigMap and the API relay behind the `kubernetes` Service. Returns the image name."""
    image = install_collector(state, tmp)
    stack.enter_context(api_relay(state, state.nodes[0]))
    return image


def setup_ssh(state: kcluster.ClusterState, stack: contextlib.ExitStack) -> list[str]:
    """A real sshd on the node's InternalIP in its namespace; the scan flags that reach it from the client
    namespace (as tests/lab/test_klab_live.py's test_scan_every_node_over_ssh)."""
    node = state.nodes[0]
    lab = SshLab.create(privileged=True)
    stack.callback(lab.close)
    Path("/run/sshd").mkdir(parents=True, exist_ok=True)
    sshd = procs.spawn("sshd", [SSHD, "-D", "-e", "-f", str(lab.sshd_config(22, node.ip))],
                       lab.workdir / "sshd.log", netns=node.netns)  # fmt: skip
    stack.callback(procs.stop, sshd)
    pub = (lab.workdir / "host_ed25519.pub").read_text().split()
    lab.known_hosts.write_text(f"{node.ip} {pub[0]} {pub[1]}\n")
    netns.run(["bash", "-c", f"for i in $(seq 100); do (echo > /dev/tcp/{node.ip}/22) 2>/dev/null && exit 0;"
               " sleep 0.1; done; exit 1"], netns=f"{state.prefix}-client")  # fmt: skip
    return ["--ssh-user", lab.user, "--ssh-key", str(lab.user_key), "--known-hosts", str(lab.known_hosts)]


def exec_bytes(state: kcluster.ClusterState, image: str, timeout: float) -> dict[str, Any]:
    """What crosses the exec stream for the node, in this process (as tests/lab/test_klab_inpod.py measures)."""
    from kubernetes import client

    from kpdoctor.cluster.live import api_client, load_live
    from kpdoctor.node.collect import CollectOptions, collect_node

    name = state.nodes[0].name
    core = client.CoreV1Api(api_client(state.kubeconfig, None))
    cluster = load_live(state.kubeconfig, None).state
    options = CollectOptions(transport="pod", kube_api=core, timeout=timeout, concurrency=1)
    raw = collect_node(name, cluster=cluster, options=options)
    run = inpod.analyze_nodes([name], options=options, image=image, cluster=cluster, check_ids=[])
    if not raw.reachable or not run.results[name].node.reachable:
        raise SystemExit(f"exec bytes: {raw.error or run.results[name].node.error}")
    sizes = {k: len((f.content or "").encode()) + len(f.stderr.encode()) for k, f in raw.facts.items()}
    return {"raw_facts_bytes": sum(sizes.values()), "raw_facts": len(sizes),
            "largest_facts": dict(sorted(sizes.items(), key=lambda kv: -kv[1])[:3]),
            "node_result_bytes": run.received[name], "node_result_findings": len(run.results[name].findings)}


def watched(scan: list[str], env: dict[str, str], state: kcluster.ClusterState) -> dict[str, Any]:
    watch = PodCgroups(f"kpdoctor-{state.prefix}")
    watch.start()
    try:
        row = run_timed(scan, env)
    finally:
        time.sleep(1)
        watch.stop.set()
        watch.join()
    return {**row, "collector_pods": watch.result()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=600, help="each scan's --timeout (per node)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kpd-podbench-") as tmp, contextlib.ExitStack() as stack:
        state_dir = Path(tmp) / "klab"
        state = kcluster.up(state_dir, version="1.37", nodes=1, mode="iptables", pods_per_node=0, with_kubelet=True)
        stack.callback(kcluster.down, state_dir)
        node = state.nodes[0]
        fill_s = populate(state, args.services)
        sync_s = wait_synced(node.netns, args.services, 1800)
        image = setup_in_pod(state, Path(tmp), stack)
        ssh_flags = setup_ssh(state, stack)
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        env.pop("KUBECONFIG", None)
        timeout = ["--timeout", f"{args.timeout:g}"]
        scan = [sys.executable, "-m", "kpdoctor", "scan", "--kubeconfig", state.kubeconfig, "--nodes", node.name,
                "-o", "json", *timeout, "--transport"]  # fmt: skip
        rows: dict[str, list[dict[str, Any]]] = {"pod": [], "pod_analyze_in_pod": [], "ssh": [], "local": []}
        load: list[float] = []
        for _ in range(args.rounds):
            rows["pod"].append(watched([*scan, "pod"], env, state))
            load.append(os.getloadavg()[0])
            rows["pod_analyze_in_pod"].append(watched([*scan, "pod", "--analyze-in-pod", "--collector-image", image],
                                                      env, state))  # fmt: skip
            load.append(os.getloadavg()[0])
            rows["ssh"].append(run_timed(["ip", "netns", "exec", f"{state.prefix}-client", *scan, "ssh", *ssh_flags],
                                         env))  # fmt: skip
            load.append(os.getloadavg()[0])
            rows["local"].append(run_timed(["ip", "netns", "exec", node.netns, *scan, "local"], env))
            load.append(os.getloadavg()[0])
        outcomes = [r.pop("outcome") for rs in rows.values() for r in rs]
        same = all(o == outcomes[0] for o in outcomes)
        exec_stream = exec_bytes(state, image, args.timeout)
        print(json.dumps({"services": args.services, "endpoints_per_service": 3, "populate_s": round(fill_s, 1),
                          "kube_proxy_sync_wait_s": round(sync_s, 1), "same_findings_all_runs": same,
                          "load_average_1m": [round(x, 2) for x in load], **rows, "exec_stream": exec_stream},
                         indent=2))  # fmt: skip
        if not same:
            print(json.dumps(outcomes, indent=1), file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
