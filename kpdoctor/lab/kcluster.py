"""A real Kubernetes control plane and real kube-proxies in network namespaces: `kpdoctor lab cluster up/down`.

    etcd (Debian etcd-server)        http://127.0.0.1:<port>, data under the state dir
    kube-apiserver (built, cached)   https://127.0.0.1:<port>: TLS from the lab CA, client-certificate admin
                                     (O=system:masters), RBAC, ServiceAccount tokens (ES256)
    relay                            a listener on 127.0.0.1:<apiserver port> inside every node namespace,
                                     forwarding to the API server (no host interface, address or route)
    nodes (knet)                     netns per node on one bridge segment, pods behind each; a Node object
                                     registered through the API with its InternalIP and podCIDR
    kube-proxy per node              the real binary of the chosen release, mode iptables (nft backend),
                                     iptables-legacy, or nftables; /healthz :10256, /metrics :10249 on the node
    with --with-kubelet              a real kubelet + containerd on node 0 (kpdoctor.lab.kubelet)
    with --with-controller-manager   a real kube-controller-manager and kube-scheduler (kpdoctor.lab.controllers)
                                     and the API server's ServiceAccount admission plugin on

`up` records every namespace and process in <state-dir>/state.json *before* creating it, so `down`
(another process, later) removes exactly what `up` made, also after a failed `up`. Processes are
matched by PID and start time (kpdoctor.lab.procs).
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kpdoctor.lab import (
    controllers,
    egress,
    images,
    k8sbuild,
    knet,
    kobjects,
    kproxypod,
    kubelet,
    netns,
    pki,
    procs,
)
from kpdoctor.lab.kapi import Api, ApiError

MODES = ("iptables", "iptables-legacy", "nftables")
STATE_FILE = "state.json"
HEALTHZ_PORT = 10256
METRICS_PORT = 10249
LEGACY_TOOLS = ("iptables", "iptables-save", "iptables-restore", "ip6tables", "ip6tables-save", "ip6tables-restore")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ClusterState:
    """What `up` made (written as it goes) and what `down` removes."""

    state_dir: Path
    prefix: str
    version: str = ""
    mode: str = ""
    apiserver: str = ""
    kubeconfig: str = ""
    namespaces: list[str] = field(default_factory=list)
    processes: list[procs.Proc] = field(default_factory=list)
    nodes: list[knet.NodeNet] = field(default_factory=list)
    kubelet_node: str = ""  # the node a real kubelet runs (--with-kubelet), else ""
    controller_manager: bool = False  # a real kube-controller-manager + kube-scheduler run (--with-controller-manager)

    @property
    def path(self) -> Path:
        return self.state_dir / STATE_FILE

    def save(self) -> None:
        data = {
            "prefix": self.prefix, "version": self.version, "mode": self.mode, "apiserver": self.apiserver,
            "kubeconfig": self.kubeconfig, "namespaces": self.namespaces,
            "processes": [p.to_json() for p in self.processes], "nodes": [n.to_json() for n in self.nodes],
            "kubelet_node": self.kubelet_node, "controller_manager": self.controller_manager,
        }  # fmt: skip
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        os.replace(tmp, self.path)

    @classmethod
    def load(cls, state_dir: Path) -> ClusterState:
        data = json.loads((state_dir / STATE_FILE).read_text())
        return cls(
            state_dir, str(data["prefix"]), str(data.get("version", "")), str(data.get("mode", "")),
            str(data.get("apiserver", "")), str(data.get("kubeconfig", "")), [str(n) for n in data["namespaces"]],
            [procs.Proc.from_json(p) for p in data["processes"]],
            [knet.NodeNet.from_json(n) for n in data.get("nodes", [])], str(data.get("kubelet_node", "")),
            bool(data.get("controller_manager", False)),
        )  # fmt: skip

    def summary(self) -> dict[str, Any]:
        return {
            "kubeconfig": self.kubeconfig, "apiserver": self.apiserver, "version": self.version, "mode": self.mode,
            "state_dir": str(self.state_dir), "client_netns": f"{self.prefix}-client",
            "nodes": [{"name": n.name, "netns": n.netns, "ip": n.ip, "pod_cidr": n.pod_cidr,
                       "pods": [{"name": p.name, "netns": p.netns, "ip": p.ip} for p in n.pods],
                       "kubeconfig": str(self.state_dir / f"kube-proxy-{n.name}.kubeconfig")}
                      for n in self.nodes],
            **({"kubelet_node": self.kubelet_node} if self.kubelet_node else {}),
            **({"controller_manager": True} if self.controller_manager else {}),
        }  # fmt: skip


def _wait(what: str, probe: Callable[[], bool], deadline_s: float, log: str | None = None,
          proc: procs.Proc | None = None) -> None:  # fmt: skip
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if probe():
            return
        if proc is not None and not procs.alive(proc):
            deadline_s = 0  # it exited: say why now instead of waiting out the deadline
            break
        time.sleep(0.2)
    tail = ""
    if log and Path(log).is_file():
        lines = Path(log).read_text(errors="replace").strip().splitlines()
        tail = f" (last log line: {lines[-1][:300]})" if lines else ""
    raise netns.LabError(f"{what} exited{tail}" if deadline_s == 0 else f"{what} not ready after {deadline_s:g}s{tail}")


def _exists(api: Api, kind: str, name: str, namespace: str) -> bool:
    try:
        api.get(kind, name, namespace=namespace)
    except ApiError as err:
        if err.status == 404:
            return False
        raise
    return True


def _tcp_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def kube_proxy_config(mode: str, node: str, kubeconfig: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The KubeProxyConfiguration each node's kube-proxy runs with (also stored as kube-system/kube-proxy).

    conntrack limits are left alone (maxPerCore 0, timeouts 0s): nf_conntrack_max is host-global and the
    lab must not change the host."""
    config: dict[str, Any] = {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "nftables" if mode == "nftables" else "iptables",
        "clusterCIDR": knet.CLUSTER_CIDR,
        "hostnameOverride": node,
        "clientConnection": {"kubeconfig": kubeconfig},
        "healthzBindAddress": f"0.0.0.0:{HEALTHZ_PORT}",
        "metricsBindAddress": f"0.0.0.0:{METRICS_PORT}",
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s",
                      "udpTimeout": "0s", "udpStreamTimeout": "0s"},
    }  # fmt: skip
    config.update(extra or {})
    return config


def _legacy_path(state_dir: Path) -> str:
    """A PATH whose iptables* are the legacy backend (how a node with update-alternatives set to legacy looks)."""
    bindir = state_dir / "legacy-bin"
    bindir.mkdir(exist_ok=True)
    for tool in LEGACY_TOOLS:
        target = shutil.which(tool.replace("tables", "tables-legacy", 1))
        if target is None:
            raise netns.LabError(f"iptables-legacy mode needs {tool.replace('tables', 'tables-legacy', 1)} installed")
        link = bindir / tool
        if not link.exists():
            link.symlink_to(target)
    return f"{bindir}{os.pathsep}{os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"


class Cluster:
    """Bring a lab cluster up step by step, recording each part in the state file first."""

    def __init__(self, state_dir: Path, *, version: str, mode: str, prefix: str | None = None,
                 with_kubelet: bool = False, with_controller_manager: bool = False) -> None:  # fmt: skip
        if mode not in MODES:
            raise netns.LabError(f"--mode {mode!r}: choose from {', '.join(MODES)}")
        if with_controller_manager and not with_kubelet:
            raise netns.LabError("--with-controller-manager needs --with-kubelet (the Pods it makes run there)")
        self.state = ClusterState(state_dir, prefix or netns.unique_prefix("kpk"), k8sbuild.resolve_release(version),
                                  mode)  # fmt: skip
        self.dir = state_dir
        self.api: Api | None = None
        self.ca: pki.CA | None = None
        self.port = 0
        self.with_kubelet = with_kubelet
        self.state.controller_manager = with_controller_manager

    # -- bookkeeping ------------------------------------------------------------------------------
    def _new_ns(self, name: str) -> str:
        self.state.namespaces.append(name)
        self.state.save()
        netns.create(name)
        return name

    def _spawn(self, role: str, argv: list[str], *, ns: str | None = None, env: dict[str, str] | None = None) -> procs.Proc:
        proc = procs.spawn(role, argv, self.dir / "logs" / f"{role}.log", env=env, netns=ns)
        self.state.processes.append(proc)
        self.state.save()
        return proc

    # -- parts ------------------------------------------------------------------------------------
    def up(self, nodes: int, pods_per_node: int = 2) -> ClusterState:
        netns.require_tools("sysctl", "nft", "etcd")
        self.dir.mkdir(parents=True, exist_ok=True)
        if (self.dir / STATE_FILE).exists():
            raise netns.LabError("a lab cluster is already recorded there; run `kpdoctor lab cluster down` first",
                                 where=str(self.dir))  # fmt: skip
        (self.dir / "logs").mkdir(exist_ok=True)
        self.state.save()
        bins = {b.component: b.path for b in k8sbuild.build_lab([self.state.version],
                                                                 controller_manager=self.state.controller_manager)}
        if self.with_kubelet:
            kubelet.require()
            k8sbuild.build(self.state.version, ["kubelet"])
        proxy_bin = k8sbuild.binary_path(self.state.version, "kube-proxy")
        self._control_plane(bins["kube-apiserver"])
        if self.state.controller_manager:
            self._controllers(bins["kube-controller-manager"], bins["kube-scheduler"])
        self.state.nodes = knet.Topology(self.state.prefix, self._new_ns).build(nodes, pods_per_node)
        if self.with_kubelet:
            self.state.kubelet_node = self.state.nodes[0].name
        self.state.save()
        self._relay()
        self._register_nodes()
        if self.with_kubelet:
            self._kubelet()
        for node in self.state.nodes:
            self._kube_proxy(node, proxy_bin)
        for node in self.state.nodes:
            self.wait_healthy(node)
        return self.state

    def _control_plane(self, apiserver_bin: Path) -> None:
        pkidir = self.dir / "pki"
        ca = pki.CA(pkidir)
        self.port = free_port()
        server = f"https://127.0.0.1:{self.port}"
        serving = ca.issue("apiserver", "kube-apiserver", server_ips=("127.0.0.1", "10.96.0.1"),
                               server_names=("localhost", "kubernetes", "kubernetes.default",
                                             "kubernetes.default.svc"))  # fmt: skip
        admin = ca.issue("admin", "kpdoctor-lab-admin", orgs=("system:masters",))
        sa = pki.service_account_keys(pkidir)
        self.state.apiserver = server
        self.state.kubeconfig = str(pki.write_kubeconfig(self.dir / "admin.kubeconfig", server, ca.cert_path,
                                                         user="admin", client=admin))  # fmt: skip
        self.ca = ca
        etcd_port, peer_port = free_port(), free_port()
        self._spawn("etcd", [
            "etcd", "--name", "lab", "--data-dir", str(self.dir / "etcd"),
            "--listen-client-urls", f"http://127.0.0.1:{etcd_port}",
            "--advertise-client-urls", f"http://127.0.0.1:{etcd_port}",
            "--listen-peer-urls", f"http://127.0.0.1:{peer_port}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_port}",
            "--initial-cluster", f"lab=http://127.0.0.1:{peer_port}",
            "--listen-metrics-urls", "", "--log-level", "warn",
        ])  # fmt: skip
        _wait("etcd", lambda: _tcp_open(etcd_port), 30, self.state.processes[-1].log)
        self._spawn("kube-apiserver", [
            str(apiserver_bin), f"--etcd-servers=http://127.0.0.1:{etcd_port}",
            "--bind-address=127.0.0.1", "--advertise-address=10.240.0.1", f"--secure-port={self.port}",
            f"--tls-cert-file={serving.cert}", f"--tls-private-key-file={serving.key}",
            f"--client-ca-file={ca.cert_path}",
            "--authorization-mode=Node,RBAC" if self.with_kubelet else "--authorization-mode=RBAC",
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-key-file={sa.cert}", f"--service-account-signing-key-file={sa.key}",
            f"--service-cluster-ip-range={knet.SERVICE_CIDR}", "--endpoint-reconciler-type=none",
            *([] if self.state.controller_manager else ["--disable-admission-plugins=ServiceAccount"]),
            "--allow-privileged=true",
            f"--cert-dir={pkidir}", "--profiling=false", "--v=1", *self._kubelet_apiserver_args(ca),
        ])  # fmt: skip
        self.api = Api(server, str(ca.cert_path), str(admin.cert), str(admin.key))
        try:
            self.api.wait_ready(90)
        except TimeoutError as exc:
            raise netns.LabError(f"kube-apiserver: {exc}", where=self.state.processes[-1].log) from None
        self.api.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "lab"}})

    def _controllers(self, kcm_bin: Path, scheduler_bin: Path) -> None:
        """kube-controller-manager and kube-scheduler (kpdoctor.lab.controllers), ready before any Pod is made:
        with ServiceAccount admission on, a Pod needs its namespace's `default` ServiceAccount."""
        assert self.api is not None and self.ca is not None
        for part in (controllers.controller_manager(kcm_bin, self.dir, self.ca, self.state.apiserver, free_port()),
                     controllers.scheduler(scheduler_bin, self.dir, self.ca, self.state.apiserver, free_port())):
            proc = self._spawn(part.role, part.argv)
            _wait(part.role, functools.partial(controllers.healthy, part.healthz), 60, proc.log, proc)
        kcm = self.state.processes[-2]
        for ns in (kobjects.KUBE_SYSTEM, "lab", "default"):
            _wait(f"ServiceAccount {ns}/default (kube-controller-manager)",
                  functools.partial(_exists, self.api, "ServiceAccount", "default", ns), 60, kcm.log, kcm)  # fmt: skip

    def _relay(self) -> None:
        # every node, and the client namespace (where `kpdoctor scan --transport ssh` runs to reach the nodes)
        spaces = [n.netns for n in self.state.nodes] + [f"{self.state.prefix}-client"]
        listens = [f"--listen={ns}:127.0.0.1:{self.port}" for ns in spaces]
        proc = self._spawn("relay", ["python3", "-m", "kpdoctor.lab.relay", f"--target=127.0.0.1:{self.port}",
                                     *listens],
                           env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})  # fmt: skip
        _wait("relay", lambda: "ready" in Path(proc.log).read_text(errors="replace"), 20, proc.log)

    def _register_nodes(self) -> None:
        assert self.api is not None
        for node in self.state.nodes:
            self.api.apply(kobjects.node(node.name, node.pod_cidr))
            self.api.set_status("Node", node.name, kobjects.node_status(node.name, node.ip))
        ds = self.api.apply(kproxypod.daemonset(images.kube_proxy_image(self.state.version)) if self.with_kubelet
                            else kobjects.daemonset(self.state.version))  # fmt: skip
        self.api.set_status("DaemonSet", "kube-proxy", kobjects.daemonset_status(len(self.state.nodes)),
                            namespace=kobjects.KUBE_SYSTEM)  # fmt: skip
        for node in self.state.nodes:
            if node.name == self.state.kubelet_node:
                continue  # created once its kubelet has registered (_kubelet)
            self.api.apply(kobjects.pod(self.state.version, node.name, ds["metadata"]["uid"]))
            self.api.set_status("Pod", kobjects.ds_pod_name(node.name), kobjects.pod_status(node.ip, self.state.version),
                                namespace=kobjects.KUBE_SYSTEM)  # fmt: skip

    def _kube_proxy(self, node: knet.NodeNet, binary: Path) -> None:
        assert self.api is not None and self.ca is not None
        creds = self.ca.issue(f"kube-proxy-{node.name}", "system:kube-proxy", orgs=("system:node-proxier",))
        kubeconfig = pki.write_kubeconfig(self.dir / f"kube-proxy-{node.name}.kubeconfig", self.state.apiserver,
                                          self.ca.cert_path, user="kube-proxy", client=creds)  # fmt: skip
        config = kube_proxy_config(self.state.mode, node.name, str(kubeconfig))
        cfg_path = self.dir / f"kube-proxy-{node.name}.yaml"
        cfg_path.write_text(yaml.safe_dump(config, sort_keys=False))
        if node is self.state.nodes[0]:
            self.api.apply(kproxypod.configmap(config, self.state.apiserver) if self.with_kubelet
                           else kobjects.configmap(config))  # fmt: skip
        if node.name == self.state.kubelet_node:
            return  # its kube-proxy is the DaemonSet's pod, run by the kubelet
        env = dict(os.environ)
        if self.state.mode == "iptables-legacy":
            env["PATH"] = _legacy_path(self.dir)
        self._spawn(f"kube-proxy-{node.name}", [str(binary), f"--config={cfg_path}", "--v=2"], ns=node.netns, env=env)

    # -- kubelet (--with-kubelet) -------------------------------------------------------------------
    def _kubelet_apiserver_args(self, ca: pki.CA) -> list[str]:
        if not self.with_kubelet:
            return []
        cfg = self.dir / "egress-selector.yaml"
        sockets = kubelet.socket_dir(self.state.prefix)
        sockets.mkdir(parents=True, exist_ok=True)
        cfg.write_text(egress.egress_config(str(sockets / "egress.sock")))
        return kubelet.apiserver_args(ca, cfg)

    def _kubelet(self) -> None:
        assert self.api is not None and self.ca is not None
        proc = self._spawn("egress", ["python3", "-m", "kpdoctor.lab.egress", f"--listen={kubelet.socket_dir(self.state.prefix) / 'egress.sock'}",
                                      f"--netns={self.state.prefix}-client"],
                           env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})  # fmt: skip
        _wait("egress proxy", lambda: "ready" in Path(proc.log).read_text(errors="replace"), 20, proc.log)
        for obj in kproxypod.access_objects(self.ca.cert_path.read_text()):
            self.api.apply(obj)
        node = self.state.nodes[0]
        rec = kubelet.start(self.dir, prefix=self.state.prefix, node=node, server=self.state.apiserver, ca=self.ca,
                            version=self.state.version, spawn=lambda role, argv: self._spawn(role, argv))  # fmt: skip
        kproc = rec.processes[-1]
        _wait("kubelet", lambda: kubelet.kubelet_healthy(rec), 90, kproc.log, kproc)
        # A pod bound before the kubelet has reported the node's allocatable is rejected (OutOfpods) and,
        # with no DaemonSet controller here, never recreated: wait for the kubelet's node status first.
        api = self.api
        _wait("kubelet node status", lambda: bool(api.get("Node", node.name).get("status", {})
                                                   .get("allocatable", {}).get("pods")), 60, kproc.log, kproc)
        ds = api.get("DaemonSet", "kube-proxy", namespace=kobjects.KUBE_SYSTEM)
        api.apply(kproxypod.pod(images.kube_proxy_image(self.state.version), node.name, ds["metadata"]["uid"]))

    def wait_healthy(self, node: knet.NodeNet, deadline_s: float = 60.0) -> None:
        if node.name == self.state.kubelet_node:
            _wait(f"kube-proxy pod on {node.name}", lambda: healthz(node) is not None, 120)
            return
        proc = kube_proxy_proc(self.state, node.name)
        _wait(f"kube-proxy on {node.name}", lambda: healthz(node) is not None, deadline_s, proc.log, proc)


def _http_get(ns: str, url: str, timeout: float = 3.0) -> str | None:
    res = netns.run(["curl", "-s", "-f", "-m", str(timeout), url], netns=ns, timeout=timeout + 2, check=False)
    return res.stdout if res.returncode == 0 else None


def healthz(node: knet.NodeNet) -> dict[str, Any] | None:
    """kube-proxy's /healthz from inside the node (None: not serving, or not healthy yet)."""
    text = _http_get(node.netns, f"http://{node.ip}:{HEALTHZ_PORT}/healthz")
    if text is None:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def proxy_mode(node: knet.NodeNet) -> str | None:
    return _http_get(node.netns, f"http://127.0.0.1:{METRICS_PORT}/proxyMode")


def down(state_dir: Path, *, keep_logs: bool = False) -> list[str]:
    """Stop every recorded process, delete every recorded namespace, remove the state dir (but its logs/
    when `keep_logs`); return what was removed."""
    if not (state_dir / STATE_FILE).is_file():
        raise netns.LabError("no lab cluster recorded here (state.json missing)", where=str(state_dir))
    state = ClusterState.load(state_dir)
    removed = kubelet.teardown(state_dir, state.prefix)
    for proc in reversed(state.processes):
        procs.stop(proc)
        removed.append(f"{proc.role}[{proc.pid}]")
    for name in reversed(state.namespaces):
        if netns.exists(name):
            netns.delete(name)
            removed.append(name)
    for entry in list(state_dir.iterdir()):
        if keep_logs and entry.name == "logs":
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
    if not keep_logs:
        shutil.rmtree(state_dir, ignore_errors=True)
    return removed


def up(state_dir: Path, *, version: str, nodes: int, mode: str, pods_per_node: int = 2,
       with_kubelet: bool = False, with_controller_manager: bool = False) -> ClusterState:  # fmt: skip
    """Start a lab cluster; on any failure remove what was started and re-raise."""
    cluster = Cluster(state_dir, version=version, mode=mode, with_kubelet=with_kubelet,
                      with_controller_manager=with_controller_manager)
    try:
        return cluster.up(nodes, pods_per_node)
    except BaseException:
        if (state_dir / STATE_FILE).is_file():
            down(state_dir, keep_logs=True)
        raise


def kube_proxy_proc(state: ClusterState, node: str) -> procs.Proc:
    found = [p for p in state.processes if p.role == f"kube-proxy-{node}"]
    if not found:
        raise netns.LabError("no kube-proxy recorded for this node", where=node)
    return found[-1]


def restart_kube_proxy(state: ClusterState, node_name: str, *, mode: str | None = None,
                       extra: dict[str, Any] | None = None, wait: bool = True,
                       configmap: bool = False) -> procs.Proc:  # fmt: skip
    """Stop a node's kube-proxy and start it again (optionally in another mode or with more config), the way
    an operator edits the ConfigMap and the DaemonSet rolls (`configmap`: write the new configuration to
    kube-system/kube-proxy as well): the old rules stay where they are."""
    node = next((n for n in state.nodes if n.name == node_name), None)
    if node is None:
        raise netns.LabError("no such lab node", where=node_name)
    procs.stop(kube_proxy_proc(state, node_name))
    mode = mode or state.mode
    if mode not in MODES:
        raise netns.LabError(f"mode {mode!r}: choose from {', '.join(MODES)}")
    kubeconfig = state.state_dir / f"kube-proxy-{node_name}.kubeconfig"
    cfg_path = state.state_dir / f"kube-proxy-{node_name}.yaml"
    config = kube_proxy_config(mode, node_name, str(kubeconfig), extra)
    cfg_path.write_text(yaml.safe_dump(config, sort_keys=False))
    if configmap:
        pkidir = state.state_dir / "pki"
        api = Api(state.apiserver, str(pkidir / "ca.crt"), str(pkidir / "admin.crt"), str(pkidir / "admin.key"))
        api.apply(kobjects.configmap(config))
    env = dict(os.environ)
    if mode == "iptables-legacy":
        env["PATH"] = _legacy_path(state.state_dir)
    binary = k8sbuild.binary_path(state.version, "kube-proxy")
    proc = procs.spawn(f"kube-proxy-{node_name}", [str(binary), f"--config={cfg_path}", "--v=2"],
                       state.state_dir / "logs" / f"kube-proxy-{node_name}.log", env=env, netns=node.netns)  # fmt: skip
    state.processes.append(proc)
    state.save()
    if wait:
        _wait(f"kube-proxy on {node_name}", lambda: healthz(node) is not None, 60, proc.log, proc)
    return proc
