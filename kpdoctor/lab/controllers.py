"""The lab's control loops: a real kube-controller-manager and kube-scheduler (`lab cluster up
--with-controller-manager`).

    kube-controller-manager (built, cached)   only the controllers the in-cluster Job/CronJob need: job,
                                              cronjob, garbage collector, ttl-after-finished, serviceaccount
                                              (the `default` ServiceAccount of every namespace),
                                              root-ca-certificate-publisher (`kube-root-ca.crt` in every
                                              namespace) and persistentvolume-binder (binds a claim to a
                                              PersistentVolume) with the two protection controllers
                                              that let a deleted claim/volume go, and node lifecycle
                                              (it lifts the `node.kubernetes.io/not-ready:NoSchedule`
                                              taint the kubelet registers its node with once the node
                                              is Ready; without it nothing is ever scheduled); no
                                              leader election, no cloud provider
    kube-scheduler (built, cached)            binds Pods to nodes; the hand-wired nodes report no allocatable
                                              resources, so only the kubelet's node fits a Pod

The hand-wired nodes (every node but the kubelet's) have no kubelet to renew their status, so with the
node lifecycle controller on they turn NotReady/Unknown (and tainted unreachable) after its grace period,
as a node whose kubelet is gone does in a real cluster; no controller evicts their Pods (taint eviction is
off). Use `--nodes 1` when that matters.

Each runs as kubeadm runs it: its own client certificate (CN system:kube-controller-manager /
system:kube-scheduler, which the API server's bootstrap RBAC binds), the controller-manager with
`--use-service-account-credentials` (each controller acts as its own ServiceAccount in kube-system, with
the token the API server issues). Both serve /healthz on 127.0.0.1 (a free port each) and are ready when
it answers `ok`; the controller-manager also once its ServiceAccount controller has made
kube-system/default (Pods admitted by the API server's ServiceAccount plugin need it).
"""

from __future__ import annotations

import ssl
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from kpdoctor.lab import pki

CONTROLLERS = (
    "job-controller", "cronjob-controller", "garbage-collector-controller", "ttl-after-finished-controller",
    "serviceaccount-controller", "root-ca-certificate-publisher-controller", "persistentvolume-binder-controller",
    "persistentvolumeclaim-protection-controller", "persistentvolume-protection-controller",
    "node-lifecycle-controller",
)  # fmt: skip


@dataclass(frozen=True)
class Component:
    role: str
    argv: list[str]
    healthz: str  # https://127.0.0.1:<port>/healthz


def _kubeconfig(state_dir: Path, ca: pki.CA, server: str, role: str, user: str) -> Path:
    creds = ca.issue(role, user)
    return pki.write_kubeconfig(state_dir / f"{role}.kubeconfig", server, ca.cert_path, user=user, client=creds)


def controller_manager(binary: Path, state_dir: Path, ca: pki.CA, server: str, port: int) -> Component:
    """kube-controller-manager's command line (its kubeconfig and certificate are written now)."""
    kubeconfig = _kubeconfig(state_dir, ca, server, "kube-controller-manager", "system:kube-controller-manager")
    argv = [
        str(binary), f"--kubeconfig={kubeconfig}", f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}", "--use-service-account-credentials=true",
        f"--controllers={','.join(CONTROLLERS)}", f"--root-ca-file={ca.cert_path}",
        "--leader-elect=false", "--bind-address=127.0.0.1", f"--secure-port={port}",
        f"--cert-dir={state_dir / 'kcm-serving'}", "--profiling=false", "--v=1",
    ]  # fmt: skip
    return Component("kube-controller-manager", argv, f"https://127.0.0.1:{port}/healthz")


def scheduler(binary: Path, state_dir: Path, ca: pki.CA, server: str, port: int) -> Component:
    """kube-scheduler's command line (its kubeconfig and certificate are written now)."""
    kubeconfig = _kubeconfig(state_dir, ca, server, "kube-scheduler", "system:kube-scheduler")
    argv = [
        str(binary), f"--kubeconfig={kubeconfig}", f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}", "--leader-elect=false", "--bind-address=127.0.0.1",
        f"--secure-port={port}", f"--cert-dir={state_dir / 'scheduler-serving'}", "--profiling=false", "--v=1",
    ]  # fmt: skip
    return Component("kube-scheduler", argv, f"https://127.0.0.1:{port}/healthz")


def healthy(url: str) -> bool:
    """Its /healthz answers `ok` (its serving certificate is self-signed at start: not verified; the lab's
    loopback only)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as resp:  # noqa: S310 (https on loopback)
            return bool(resp.status == 200 and resp.read(16).strip() == b"ok")
    except (OSError, ValueError):
        return False
