"""Plumbing for tests against the lab's real Kubernetes (kpdoctor.lab.kcluster): a real etcd, a real
kube-apiserver and real kube-proxy binaries in node namespaces. Nothing here is a recording or a mock.

Tests skip with the reason when root, etcd or the built binaries are missing, except under
KPDOCTOR_REQUIRE_ROOT_TESTS=1 (CI), where .ci/run has built them and a missing part fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from kpdoctor import inpod
from kpdoctor.lab import k8sbuild, kcluster, kubelet, procs, pyimage
from kpdoctor.lab.kapi import Api
from kpdoctor.lab.kcluster import ClusterState
from kpdoctor.node import podcollect
from tests.conftest import REQUIRE_ROOT, root_unavailable_reason
from tests.support.cli import kpd_interrupted

REPO = Path(__file__).resolve().parents[2]


def klab_unavailable(version: str) -> str | None:
    reason = root_unavailable_reason("etcd", "nft", "curl", "iptables-save")
    if reason:
        return reason
    release = k8sbuild.resolve_release(version)
    missing = [c for c in ("kube-apiserver", "kube-proxy") if k8sbuild.cached(
        k8sbuild.resolve_release(k8sbuild.CONTROL_PLANE_RELEASE) if c == "kube-apiserver" else release, c) is None]
    if missing:
        return (f"lab binaries not built ({', '.join(missing)} {release} absent under {k8sbuild.cache_root()}); "
                f"run: python3 -m kpdoctor.lab.k8sbuild {version}")
    return None


def require_klab(version: str = "1.37") -> None:
    reason = klab_unavailable(version)
    if reason is None:
        return
    if REQUIRE_ROOT:
        pytest.fail(f"KPDOCTOR_REQUIRE_ROOT_TESTS=1 but {reason}")
    pytest.skip(reason)


@contextmanager
def lab_cluster(tmp: Path, *, version: str = "1.37", nodes: int = 2, mode: str = "iptables",
                with_kubelet: bool = False, with_controller_manager: bool = False) -> Iterator[ClusterState]:  # fmt: skip
    require_klab(version)
    state = kcluster.up(tmp / "klab", version=version, nodes=nodes, mode=mode, with_kubelet=with_kubelet,
                        with_controller_manager=with_controller_manager)
    try:
        yield state
    finally:
        kcluster.down(tmp / "klab")


def admin_api(state: ClusterState) -> Api:
    pki = state.state_dir / "pki"
    return Api(state.apiserver, str(pki / "ca.crt"), str(pki / "admin.crt"), str(pki / "admin.key"))


def service(name: str, *, node_port: int = 0, namespace: str = "lab", port: int = 80) -> dict[str, Any]:
    spec: dict[str, Any] = {"type": "NodePort" if node_port else "ClusterIP", "selector": {"app": name},
                            "ports": [{"name": "http", "port": port, "targetPort": 8080, "protocol": "TCP",
                                       **({"nodePort": node_port} if node_port else {})}]}  # fmt: skip
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def endpointslice(svc: str, endpoints: list[tuple[str, str]], *, namespace: str = "lab") -> dict[str, Any]:
    """EndpointSlice for `svc` with (ip, nodeName) endpoints, as the EndpointSlice controller writes it."""
    return {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": f"{svc}-lab", "namespace": namespace,
                     "labels": {"kubernetes.io/service-name": svc,
                                "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [ip], "nodeName": node,
                       "conditions": {"ready": True, "serving": True, "terminating": False}}
                      for ip, node in endpoints],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
    }  # fmt: skip


def save(netns: str, mode: str) -> str:
    argv = ["nft", "list", "ruleset"] if mode == "nftables" else (
        ["iptables-legacy-save"] if mode == "iptables-legacy" else ["iptables-save"])
    return subprocess.run(["ip", "netns", "exec", netns, *argv], capture_output=True, text=True, timeout=30,
                          check=True).stdout  # fmt: skip


def wait_for_rules(state: ClusterState, needle: str, *, present: bool = True, deadline_s: float = 30.0,
                   nodes: list[str] | None = None, serving: bool = False) -> None:  # fmt: skip
    """Until every (chosen) node's kube-proxy has written (or removed) a rule containing `needle`. `serving`: a
    rule other than kube-proxy's "has no endpoints" REJECT (kube-proxy may sync a new Service before its
    EndpointSlice, and that REJECT carries the same `ns/name:port` comment)."""

    def written(netns: str) -> bool:
        text = save(netns, state.mode)
        if not serving:
            return needle in text
        return any(needle in line and "has no endpoints" not in line for line in text.splitlines())

    end = time.monotonic() + deadline_s
    pending = [n for n in state.nodes if nodes is None or n.name in nodes]
    while pending and time.monotonic() < end:
        pending = [n for n in pending if written(n.netns) != present]
        if pending:
            time.sleep(0.25)
    assert not pending, f"kube-proxy on {[n.name for n in pending]} did not sync {needle!r} within {deadline_s}s"


def rule_needle(state: ClusterState, svc: str) -> str:
    """What kube-proxy's rules for lab Service `svc` port http contain: the iptables comment, or in nftables mode
    the chain name (nftables names chains, not comments)."""
    return f"lab/{svc}/tcp/http" if state.mode == "nftables" else f"lab/{svc}:http"


def apply_workload(state: ClusterState, *, node_port: int = 30080, with_api: bool = True,
                   wait: tuple[str, ...] = ("web",)) -> None:  # fmt: skip
    """The lab's workload: Service `web` (NodePort `node_port`, 0: ClusterIP) backed by every node's first pod and,
    `with_api`, Service `api` backed by the first node's pod only; returns once every node's kube-proxy wrote the
    rules of the Services in `wait`."""
    api = admin_api(state)
    pods = [(n.pods[0].ip, n.name) for n in state.nodes]
    api.apply(service("web", node_port=node_port))
    api.apply(endpointslice("web", pods))
    if with_api:
        api.apply(service("api"))
        api.apply(endpointslice("api", pods[:1]))
    for svc in wait:
        wait_for_rules(state, rule_needle(state, svc), serving=True)


def sorted_rules(netns: str) -> list[str]:
    """The namespace's iptables rules, sorted, without iptables-save's "# Generated/Completed on <time>" lines
    (kube-proxy's own periodic resync may reorder KUBE-SERVICES between two reads; the set is what counts)."""
    return sorted(ln for ln in save(netns, "iptables").splitlines() if not ln.startswith("#"))


def install_collector(state: ClusterState, tmp: Path) -> str:
    """What `--analyze-in-pod` needs on the kubelet lab besides the API relay (api_relay): the collector image
    built offline (kpdoctor.lab.pyimage) imported into the kubelet's containerd, deploy/rbac.yaml applied as
    shipped, and the `kube-root-ca.crt` ConfigMap the lab's missing controller would write. Returns the image
    name."""
    image = pyimage.kpdoctor_image_tar(REPO, tmp / "image", collector=True)
    rec = kubelet.KubeletRecord.load(state.state_dir)
    assert rec is not None
    subprocess.run(["ctr", "-a", rec.socket, "-n", "k8s.io", "images", "import", str(image.tarball)],
                   check=True, capture_output=True, timeout=300)  # fmt: skip
    api = admin_api(state)
    for doc in yaml.safe_load_all((REPO / "deploy" / "rbac.yaml").read_text()):
        if doc:
            api.apply(doc)
    api.apply({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "kube-root-ca.crt", "namespace": inpod.NAMESPACE},
               "data": {"ca.crt": (state.state_dir / "pki" / "ca.crt").read_text()}})  # fmt: skip
    return image.name


def kpdoctor(*args: str, netns: str | None = None, env: dict[str, str] | None = None,
             timeout: float = 180) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """Run the real CLI (this worktree's code) as a subprocess, inside `netns` when given."""
    argv = [sys.executable, "-m", "kpdoctor", *args]
    if netns:
        argv = ["ip", "netns", "exec", netns, *argv]
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    full_env.pop("KUBECONFIG", None) if env is None or "KUBECONFIG" not in env else None
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=full_env, cwd=REPO, check=False)


def report(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(proc.stdout)
    except ValueError:
        raise AssertionError(f"not a JSON report (exit {proc.returncode}): {proc.stdout[-800:]}{proc.stderr[-800:]}") from None
    return data


def findings(rep: dict[str, Any], at_least: str = "warning") -> list[tuple[str, str]]:
    """(check id, severity) of every finding at or above `at_least`."""
    order = ["info", "warning", "error", "critical"]
    out = []
    for check in rep["checks"]:
        for group in check.get("groups", []):
            sev = group.get("severity", check.get("severity"))
            if order.index(sev) >= order.index(at_least):
                out.append((check["id"], sev))
    return out


def statuses(rep: dict[str, Any]) -> dict[str, str]:
    return {c["id"]: c["status"] for c in rep["checks"]}


def require_kubelet(controller_manager: bool = False) -> None:
    """Skip (or fail, under KPDOCTOR_REQUIRE_ROOT_TESTS=1) when the lab cannot run a kubelet here (and, with
    `controller_manager`, kube-controller-manager and kube-scheduler)."""
    reason = None
    cp = k8sbuild.resolve_release(k8sbuild.CONTROL_PLANE_RELEASE)
    if k8sbuild.cached(k8sbuild.resolve_release("1.37"), "kubelet") is None:
        reason = "kubelet 1.37 not built (python3 -m kpdoctor.lab.k8sbuild --kubelet 1.37)"
    elif controller_manager and any(k8sbuild.cached(cp, c) is None for c in ("kube-controller-manager", "kube-scheduler")):
        reason = f"kube-controller-manager/kube-scheduler {cp} not built (python3 -m kpdoctor.lab.k8sbuild --controller-manager 1.37)"
    elif not Path("/usr/lib/cni/bridge").is_file():
        reason = "containernetworking-plugins not installed"
    if reason and REQUIRE_ROOT:
        pytest.fail(f"KPDOCTOR_REQUIRE_ROOT_TESTS=1 but {reason}")
    if reason:
        pytest.skip(reason)


@contextmanager
def api_relay(state: ClusterState, node: Any) -> Iterator[int]:
    """The endpoint reconciler's part: a relay on the node's address to the API server, and the `kubernetes`
    Service's EndpointSlice naming it. Yields the port."""
    port = int(urlsplit(state.apiserver).port or 443)
    proc = procs.spawn("api-relay", [sys.executable, "-m", "kpdoctor.lab.relay", f"--target=127.0.0.1:{port}",
                                     f"--listen={node.netns}:{node.ip}:{port}"],
                       state.state_dir / "logs" / "api-relay.log",
                       env={**os.environ, "PYTHONPATH": str(REPO)})  # fmt: skip
    try:
        end = time.monotonic() + 20
        while "ready" not in Path(proc.log).read_text(errors="replace"):
            assert procs.alive(proc) and time.monotonic() < end, Path(proc.log).read_text()[-500:]
            time.sleep(0.2)
        slice_ = endpointslice("kubernetes", [(node.ip, node.name)], namespace="default")
        slice_["metadata"]["name"] = "kubernetes"
        slice_["ports"] = [{"name": "https", "port": port, "protocol": "TCP"}]
        admin_api(state).apply(slice_)
        # serving: the `kubernetes` Service exists from the API server's start, so kube-proxy already holds its
        # "has no endpoints" REJECT with this comment; wait for the endpoint's rules (a test that lists the
        # node's rules right after must not see them arrive)
        wait_for_rules(state, "default/kubernetes:https", nodes=[node.name], serving=True)
        yield port
    finally:
        procs.stop(proc)


def collector_pods(state: ClusterState, namespaces: Sequence[str] = ("kube-system",)) -> list[str]:
    """The names of kpdoctor's collector pods (its label) in `namespaces`."""
    api = admin_api(state)
    return [p["metadata"]["name"] for ns in namespaces
            for p in api.request("GET", api.path("Pod", ns), labelSelector=podcollect.SELECTOR)["items"]]  # fmt: skip


def interrupt_once_collecting(argv: list[str], collecting: Callable[[], bool]) -> str:
    """Run kpdoctor `argv` (a child process), send it SIGINT (Ctrl-C) once `collecting()` is true (its collector
    pod exists; at most 60 s), and return its stderr after it exits (at most 60 s; killed otherwise)."""

    def until_collecting(child: subprocess.Popen[str]) -> None:
        end = time.monotonic() + 60
        while not collecting() and time.monotonic() < end and child.poll() is None:
            time.sleep(0.2)
        assert collecting(), "the collector pod was never created"

    return kpd_interrupted(*argv, ready=until_collecting).stderr


@contextmanager
def sshd_on_nodes(state: ClusterState, nodes: Sequence[Any]) -> Iterator[list[str]]:
    """A real sshd on port 22 in each of `nodes`' namespaces (the lab's other nodes get none), reachable from the
    lab's client namespace (where `kpdoctor --transport ssh` runs, the API server relayed to its loopback).
    Yields the ssh flags that reach them (user, key, known_hosts)."""
    from kpdoctor.lab import netns
    from kpdoctor.node.sshlab import SSHD, SshLab

    lab = SshLab.create(privileged=True)
    started: list[procs.Proc] = []
    try:
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)
        for node in nodes:
            conf = lab.sshd_config(22, node.ip)
            started.append(procs.spawn("sshd", [SSHD, "-D", "-e", "-f", str(conf)], lab.workdir / f"{node.name}.log",
                                       netns=node.netns))  # fmt: skip
            pub = (lab.workdir / "host_ed25519.pub").read_text().split()
            with open(lab.known_hosts, "a", encoding="ascii") as fh:
                fh.write(f"{node.ip} {pub[0]} {pub[1]}\n")
        for node in nodes:
            netns.run(["bash", "-c", f"for i in $(seq 50); do (echo > /dev/tcp/{node.ip}/22) 2>/dev/null && exit 0;"
                       " sleep 0.1; done; exit 1"], netns=f"{state.prefix}-client")  # fmt: skip
        yield ["--ssh-user", lab.user, "--ssh-key", str(lab.user_key), "--known-hosts", str(lab.known_hosts)]
    finally:
        for p in started:
            procs.stop(p)
        lab.close()
