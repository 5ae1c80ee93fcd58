"""A real kubelet and containerd on one lab node: `kpdoctor lab cluster up --with-kubelet`.

    containerd 1.6 (Debian) + runc    inside the node's network namespace and a mount namespace of its own
                                     (a file under the state dir), its root, state and socket in the state dir;
                                     the CRI plugin with cgroupfs, overlayfs and the pause image built offline
    kubelet (built, cached)          same namespaces; cgroupfs driver under /<cgroup root> (one per lab);
                                     x509 client auth with the lab CA, AlwaysAllow for what passed it;
                                     registers the node the lab created (adopts it)
    images (kpdoctor.lab.images)     pause, kube-proxy and echo (an HTTP server), imported with `ctr -n k8s.io images import`
    CNI                              Debian's bridge + host-local for non-hostNetwork pods (range above the
                                     lab's hand-wired pods)

Why a mount namespace: kubelet (>= 1.35 too) writes six host-global sysctls at start (vm.overcommit_memory,
vm.panic_on_oom, kernel.panic, kernel.panic_on_oops, kernel.keys.root_maxkeys/maxbytes) unless they already
hold its values, and refuses to start with protectKernelDefaults when they do not. The lab must not change
the host, so in that namespace each of those /proc/sys files has a file with kubelet's value bind-mounted
over it: kubelet reads what it wants and writes nothing. Everything kubelet and containerd mount (overlay
rootfs, volume tmpfs) stays inside the namespace and disappears with it.

Why podLogsDir under the state dir: the kubelet's container GC deletes, every minute, each directory of its
pod logs dir whose pod it does not know; in the shared /var/log/pods that is every other lab's pod logs
(seen: `kubectl logs` of a finished Job's pod failing with "lstat /var/log/pods/...: no such file" while
another lab ran), and would be a real kubelet's on the host.

Why restrict_oom_score_adj: this machine's root lacks CAP_SYS_RESOURCE, so runc cannot lower a container's
oom_score_adj (pause: -998, system-node-critical: -997) and every sandbox failed ("failed to update
/proc/self/oom_score_adj: Permission denied"); containerd clamps them to its own (0) instead.

The API server reaches the kubelet through the egress proxy (kpdoctor.lab.egress).
Everything made is recorded in <state-dir>/kubelet.json before it is made; `teardown` removes it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kpdoctor.lab import images, k8sbuild, pki, procs
from kpdoctor.lab.netns import LabError

RECORD = "kubelet.json"
# what kubelet's setupKernelTunables wants (pkg/kubelet/cm/container_manager_linux.go)
KERNEL_TUNABLES = {
    "vm/overcommit_memory": "1", "vm/panic_on_oom": "0", "kernel/panic": "10", "kernel/panic_on_oops": "1",
    "kernel/keys/root_maxkeys": "1000000", "kernel/keys/root_maxbytes": "25000000",
}  # fmt: skip
CGROUP_BASE = Path("/sys/fs/cgroup")
CNI_CACHE = Path("/var/lib/cni/results")  # libcni's result cache (not configurable in containerd 1.6's CRI)
# Unix socket paths must stay under 108 bytes, so containerd's socket and kubelet's root dir (which holds its
# pods-api and plugin sockets) live here, not in the state dir.
SOCKET_BASE = Path("/run/kpdoctor-kubelet")


def socket_dir(prefix: str) -> Path:
    """Where this lab's containerd and egress sockets live (removed by teardown)."""
    return SOCKET_BASE / prefix
KUBELET_PORT = 10250


@dataclass
class KubeletRecord:
    """What the kubelet part of a lab made, so teardown (maybe another process) removes exactly that."""

    node: str
    netns: str
    root: str
    cgroup: str  # the cgroup root's name (one directory per mounted v1 hierarchy)
    mounts: list[str] = field(default_factory=list)  # host mounts made, in order
    processes: list[procs.Proc] = field(default_factory=list)

    @property
    def mount_ns(self) -> str:
        return f"{self.root}/ns/mnt"

    @property
    def socket(self) -> str:
        return str(socket_dir(self.cgroup.removeprefix("kpdoctor-")) / "containerd.sock")

    def save(self, state_dir: Path) -> None:
        data = asdict(self)
        data["processes"] = [p.to_json() for p in self.processes]
        tmp = state_dir / (RECORD + ".tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        os.replace(tmp, state_dir / RECORD)

    @classmethod
    def load(cls, state_dir: Path) -> KubeletRecord | None:
        path = state_dir / RECORD
        if not path.is_file():
            return None
        data = json.loads(path.read_text())
        data["processes"] = [procs.Proc.from_json(p) for p in data.get("processes", [])]
        return cls(**data)


def _run(argv: list[str], what: str, timeout: float = 60.0) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise LabError(f"{what} failed: {(proc.stderr or proc.stdout).strip()[-300:]}")
    return proc.stdout


def enter(rec: KubeletRecord, argv: list[str]) -> list[str]:
    """argv run inside the kubelet node's mount and network namespaces."""
    return ["nsenter", f"--mount={rec.mount_ns}", f"--net=/run/netns/{rec.netns}", "--", *argv]


def require() -> None:
    missing = [t for t in ("containerd", "runc", "ctr", "nsenter", "unshare") if shutil.which(t) is None]
    if not Path("/usr/lib/cni/bridge").is_file():
        missing.append("containernetworking-plugins")
    if missing:
        raise LabError(f"--with-kubelet needs {', '.join(missing)} installed (apt-get install containerd runc "
                       "containernetworking-plugins)")  # fmt: skip


def apiserver_args(ca: pki.CA, egress_config: Path) -> list[str]:
    """What kube-apiserver needs to talk to kubelets: a client certificate and the egress proxy (the caller
    also turns on the Node authorizer, for the kubelet's own credentials)."""
    client = ca.issue("apiserver-kubelet-client", "kube-apiserver-kubelet-client", orgs=("system:masters",))
    return [f"--kubelet-client-certificate={client.cert}", f"--kubelet-client-key={client.key}",
            f"--egress-selector-config-file={egress_config}",
            "--kubelet-preferred-address-types=InternalIP"]  # fmt: skip


def _mount_namespace(rec: KubeletRecord, state_dir: Path) -> None:
    nsdir = Path(rec.root) / "ns"
    nsdir.mkdir(parents=True, exist_ok=True)
    rec.mounts.append(str(nsdir))
    rec.save(state_dir)
    _run(["mount", "--bind", str(nsdir), str(nsdir)], "bind mount of the namespace directory")
    _run(["mount", "--make-private", str(nsdir)], "make-private")
    Path(rec.mount_ns).touch()
    rec.mounts.append(rec.mount_ns)
    rec.save(state_dir)
    _run(["unshare", f"--mount={rec.mount_ns}", "--propagation", "slave", "true"], "unshare --mount")
    values = Path(rec.root) / "sysctl"
    values.mkdir(exist_ok=True)
    for key, value in KERNEL_TUNABLES.items():
        src = values / key.replace("/", ".")
        src.write_text(value + "\n")
        _run(["nsenter", f"--mount={rec.mount_ns}", "--", "mount", "--bind", "-o", "ro", str(src),
              f"/proc/sys/{key}"], f"mask /proc/sys/{key}")  # fmt: skip


def _cgroups(rec: KubeletRecord) -> None:
    """The cgroup root kubelet is given, in every mounted v1 hierarchy (cpuset seeded from its parent)."""
    for hierarchy in sorted(CGROUP_BASE.iterdir()):
        if hierarchy.name == "unified" or not hierarchy.is_dir():
            continue
        path = hierarchy / rec.cgroup
        path.mkdir(exist_ok=True)
        if hierarchy.name == "cpuset":
            for name in ("cpuset.cpus", "cpuset.mems"):
                (path / name).write_text((hierarchy / name).read_text())


def containerd_config(rec: KubeletRecord, pause: str) -> str:
    root = rec.root
    return f"""version = 2
root = "{root}/containerd/root"
state = "{root}/containerd/state"
[grpc]
  address = "{rec.socket}"
[ttrpc]
  address = "{rec.socket}.ttrpc"
[debug]
  level = "warn"
[plugins."io.containerd.internal.v1.opt"]
  path = "{root}/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause}"
  restrict_oom_score_adj = true
  enable_cdi = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{root}/cni"
"""


def cni_config(pod_cidr: str, data_dir: str) -> dict[str, Any]:
    """Bridge + host-local for pods the kubelet runs off the host network (addresses .100-.250 of the
    node's pod CIDR: below that are the lab's hand-wired pods; a default route through the bridge; the
    allocations in the state dir, not in the host's /var/lib/cni)."""
    prefix = pod_cidr.rsplit(".", 1)[0]
    return {
        "cniVersion": "0.4.0", "name": "kpdoctor-lab",
        "plugins": [{"type": "bridge", "bridge": "cni0", "isGateway": True, "ipMasq": False,
                     "ipam": {"type": "host-local", "ranges": [[{"subnet": pod_cidr, "rangeStart": f"{prefix}.100",
                                                                 "rangeEnd": f"{prefix}.250",
                                                                 "gateway": f"{prefix}.1"}]],
                              "routes": [{"dst": "0.0.0.0/0"}], "dataDir": data_dir}},
                    {"type": "portmap", "capabilities": {"portMappings": True}}],
    }  # fmt: skip


def kubelet_config(rec: KubeletRecord, node_ip: str, serving: pki.CertPair, ca: Path) -> dict[str, Any]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
        "address": node_ip, "port": KUBELET_PORT, "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1", "healthzPort": 10248,
        "tlsCertFile": str(serving.cert), "tlsPrivateKeyFile": str(serving.key),
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": False},
                           "x509": {"clientCAFile": str(ca)}},
        "authorization": {"mode": "AlwaysAllow"},
        "cgroupDriver": "cgroupfs", "cgroupRoot": f"/{rec.cgroup}", "cgroupsPerQOS": True,
        "failCgroupV1": False, "failSwapOn": False, "protectKernelDefaults": True,
        "containerRuntimeEndpoint": f"unix://{rec.socket}",
        "staticPodPath": f"{rec.root}/manifests",
        # its own, not the host's /var/log/pods: a kubelet's container GC removes every pod log directory there
        # of a pod it does not know (pod_workers.ShouldPodContentBeRemoved), i.e. another lab's or the host's
        "podLogsDir": f"{rec.root}/pod-logs",
        "evictionHard": {"memory.available": "50Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
        "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
        "serializeImagePulls": False, "resolvConf": "/etc/resolv.conf",
        "syncFrequency": "5s", "fileCheckFrequency": "5s", "nodeStatusUpdateFrequency": "5s",
        "podPidsLimit": 4096, "maxPods": 50, "localStorageCapacityIsolation": False,
    }  # fmt: skip


def _wait_socket(path: str, proc: procs.Proc, deadline: float) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if Path(path).exists():
            return
        if not procs.alive(proc):
            break
        time.sleep(0.2)
    raise LabError(f"containerd did not open {path}", where=proc.log)


def start(state_dir: Path, *, prefix: str, node: Any, server: str, ca: pki.CA, version: str,
          spawn: Any) -> KubeletRecord:  # fmt: skip
    """containerd + kubelet on `node` (a knet.NodeNet), recorded in <state-dir>/kubelet.json as they start.
    `spawn(role, argv)` starts and records a process in the cluster's own state too."""
    require()
    rec = KubeletRecord(node.name, node.netns, str(state_dir / f"kubelet-{node.name}"), f"kpdoctor-{prefix}")
    root = Path(rec.root)
    for sub in ("containerd", "cni", "manifests", "kubelet", "pki"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    rec.save(state_dir)
    _mount_namespace(rec, state_dir)
    _cgroups(rec)
    pause = images.pause_image()
    proxy_image = images.kube_proxy_image_tar(version)
    cfg = root / "containerd.toml"
    cfg.write_text(containerd_config(rec, pause.name))
    (root / "cni" / "10-kpdoctor-lab.conflist").write_text(json.dumps(cni_config(node.pod_cidr, str(root / "cni-ipam")), indent=2))
    containerd = spawn("containerd", enter(rec, ["containerd", "--config", str(cfg)]))
    rec.processes.append(containerd)
    rec.save(state_dir)
    _wait_socket(rec.socket, containerd, 30)
    for image in (pause, proxy_image, images.echo_image()):
        _run(["ctr", "-a", rec.socket, "-n", "k8s.io", "images", "import", str(image.tarball)],
             f"ctr images import {image.name}", timeout=180)  # fmt: skip
    serving = ca.issue(f"kubelet-{node.name}-serving", node.name, server_names=(node.name,), server_ips=(node.ip,))
    client = ca.issue(f"kubelet-{node.name}", f"system:node:{node.name}", orgs=("system:nodes",))
    kubeconfig = pki.write_kubeconfig(root / "kubelet.kubeconfig", server, ca.cert_path, user=f"system:node:{node.name}",
                                      client=client)  # fmt: skip
    kcfg = root / "kubelet.yaml"
    kcfg.write_text(yaml.safe_dump(kubelet_config(rec, node.ip, serving, ca.cert_path), sort_keys=False))
    binary = k8sbuild.build(version, ["kubelet"])[0].path
    kubelet = spawn("kubelet", enter(rec, [str(binary), f"--config={kcfg}", f"--kubeconfig={kubeconfig}",
                                           f"--root-dir={socket_dir(prefix) / 'kubelet'}", f"--hostname-override={node.name}",
                                           f"--node-ip={node.ip}", "--v=2"]))  # fmt: skip
    rec.processes.append(kubelet)
    rec.save(state_dir)
    return rec


def kubelet_healthy(rec: KubeletRecord) -> bool:
    res = subprocess.run(enter(rec, ["curl", "-s", "-f", "-m", "2", "http://127.0.0.1:10248/healthz"]),
                         capture_output=True, text=True, timeout=10, check=False)  # fmt: skip
    return res.returncode == 0 and res.stdout.strip() == "ok"


def _shims(socket: str) -> list[int]:
    """PIDs of containerd shims serving this lab's containerd (their argv names its socket)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"containerd-shim-runc-v2") and socket.encode() in argv:
            found.append(int(entry.name))
    return found


def _remove_sandbox_netns(cached: Path) -> None:
    """The sandbox's network namespace (/run/netns/cni-...), named in its libcni cache entry: a sandbox killed
    without a CNI DEL leaves it mounted on the host."""
    with contextlib.suppress(OSError, ValueError, AttributeError):  # a cache entry of another shape: left alone
        entry = json.loads(cached.read_text(encoding="utf-8"))
        netns = entry.get("netns") or entry.get("netNS") or ""  # libcni cachedInfo: `json:"netns"`
        name = Path(netns).name if isinstance(netns, str) else ""
        if name.startswith("cni-") and Path(netns).parent.name == "netns":
            subprocess.run(["ip", "netns", "delete", name], capture_output=True, timeout=20, check=False)


def _sandbox_netns_names(ctr: list[str]) -> set[str]:
    """The /run/netns/cni-* names of every container of this lab's containerd (running or not): containerd
    bind-mounts them inside the lab's mount namespace, so on the host each stays an empty file once that
    namespace is gone (the libcni cache misses sandboxes whose network was never set up or already torn down)."""
    names: set[str] = set()
    with contextlib.suppress(subprocess.SubprocessError, OSError):
        ids = subprocess.run([*ctr, "containers", "ls", "-q"], capture_output=True, text=True, timeout=20).stdout.split()
        for cid in ids[:500]:
            info = subprocess.run([*ctr, "containers", "info", cid], capture_output=True, text=True, timeout=20).stdout
            with contextlib.suppress(ValueError, AttributeError, TypeError):
                for ns in json.loads(info).get("Spec", {}).get("linux", {}).get("namespaces", []):
                    path = Path(str(ns.get("path") or ""))
                    if ns.get("type") == "network" and path.parent.name == "netns" and path.name.startswith("cni-"):
                        names.add(path.name)
    return names


def teardown(state_dir: Path, prefix: str) -> list[str]:
    """Stop kubelet, every container, containerd and its shims; unmount the namespace; remove the cgroups
    and the socket directory."""
    rec = KubeletRecord.load(state_dir)
    if rec is None:
        shutil.rmtree(socket_dir(prefix), ignore_errors=True)
        return []
    removed = []
    for proc in reversed(rec.processes):
        if proc.role == "kubelet":
            procs.stop(proc)
            removed.append(f"kubelet[{proc.pid}]")
    sandbox_netns: set[str] = set()
    if Path(rec.socket).exists():
        ctr = ["ctr", "-a", rec.socket, "-n", "k8s.io"]
        sandbox_netns = _sandbox_netns_names(ctr)
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            tasks = subprocess.run([*ctr, "tasks", "ls", "-q"], capture_output=True, text=True, timeout=20).stdout.split()
            for task in tasks:
                subprocess.run([*ctr, "tasks", "kill", "-s", "SIGKILL", task], capture_output=True, timeout=20)
            for task in tasks:
                subprocess.run([*ctr, "tasks", "delete", "-f", task], capture_output=True, timeout=20)
                removed.append(f"container {task[:12]}")
                # containerd's libcni caches each sandbox's CNI result on the host; a sandbox killed here
                # never gets its CNI DEL, so its entries (named by the sandbox id) are removed here
                for cached in CNI_CACHE.glob(f"*-{task}-*"):
                    _remove_sandbox_netns(cached)
                    cached.unlink(missing_ok=True)
    for pid in _shims(rec.socket):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 9)
            removed.append(f"shim[{pid}]")
    for proc in reversed(rec.processes):
        procs.stop(proc)
    for mount in reversed(rec.mounts):
        subprocess.run(["umount", "-l", mount], capture_output=True, timeout=20, check=False)
    for name in sorted(sandbox_netns):  # after the lab's mount namespace is gone: plain files on the host now
        if (Path("/run/netns") / name).exists():
            subprocess.run(["ip", "netns", "delete", name], capture_output=True, timeout=20, check=False)
            removed.append(f"netns {name}")
    for hierarchy in sorted(CGROUP_BASE.iterdir()) if CGROUP_BASE.is_dir() else []:
        top = hierarchy / rec.cgroup
        if not top.is_dir():  # "unified" too: runc makes the same path in the v2 hierarchy
            continue
        for dirpath, _dirs, _files in os.walk(top, topdown=False):
            with contextlib.suppress(OSError):
                os.rmdir(dirpath)
        removed.append(f"cgroup {hierarchy.name}/{rec.cgroup}")
    shutil.rmtree(socket_dir(prefix), ignore_errors=True)
    with contextlib.suppress(OSError):
        SOCKET_BASE.rmdir()  # only when no other lab's sockets are there
    (state_dir / RECORD).unlink(missing_ok=True)
    return removed
