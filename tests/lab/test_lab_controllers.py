"""kpdoctor.lab.controllers without root: the command lines, the identities they authenticate as, the
controller names against the real binary's own list, and the flag checks of `lab cluster up`. The
controllers running for real: tests/lab/test_incluster_job_pod.py."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.x509.oid import NameOID

from kpdoctor.lab import controllers, k8sbuild, kcluster, netns, pki
from tests.support.klab import REPO

CP = k8sbuild.resolve_release(k8sbuild.CONTROL_PLANE_RELEASE)


def _subject(kubeconfig: Path) -> tuple[str, list[str]]:
    user = yaml.safe_load(kubeconfig.read_text())["users"][0]["user"]
    cert = x509.load_pem_x509_certificate(Path(user["client-certificate"]).read_bytes())
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    orgs = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    return str(cn), [str(o) for o in orgs]


def _flag(argv: list[str], name: str) -> str:
    (value,) = [a.split("=", 1)[1] for a in argv if a.startswith(f"--{name}=")]
    return value


def test_each_authenticates_as_its_bootstrap_rbac_user_not_as_an_admin(tmp_path: Path) -> None:
    ca = pki.CA(tmp_path / "pki")
    kcm = controllers.controller_manager(Path("/bin/kcm"), tmp_path, ca, "https://127.0.0.1:6443", 10257)
    sched = controllers.scheduler(Path("/bin/ks"), tmp_path, ca, "https://127.0.0.1:6443", 10259)
    # the users the API server's bootstrap ClusterRoleBindings name; no system:masters
    assert _subject(Path(_flag(kcm.argv, "kubeconfig"))) == ("system:kube-controller-manager", [])
    assert _subject(Path(_flag(sched.argv, "kubeconfig"))) == ("system:kube-scheduler", [])
    assert kcm.argv[0] == "/bin/kcm" and sched.argv[0] == "/bin/ks"
    for part in (kcm, sched):
        assert "--leader-elect=false" in part.argv and "--bind-address=127.0.0.1" in part.argv
        assert part.healthz == f"https://127.0.0.1:{_flag(part.argv, 'secure-port')}/healthz"
    assert "--use-service-account-credentials=true" in kcm.argv
    assert _flag(kcm.argv, "controllers").split(",") == list(controllers.CONTROLLERS)
    assert _flag(kcm.argv, "root-ca-file") == str(ca.cert_path)


def test_every_controller_named_is_one_the_built_binary_knows() -> None:
    binary = k8sbuild.cached(CP, "kube-controller-manager")
    if binary is None:
        pytest.skip(f"kube-controller-manager {CP} not built (python3 -m kpdoctor.lab.k8sbuild --controller-manager 1.37)")
    helptext = subprocess.run([str(binary), "--help"], capture_output=True, text=True, timeout=60).stdout
    known = re.search(r"All controllers: ([a-z, -]+)", helptext)
    assert known, helptext[:500]
    names = {n.strip() for n in known.group(1).split(",")}
    assert set(controllers.CONTROLLERS) <= names, set(controllers.CONTROLLERS) - names


def test_healthy_is_false_when_nothing_answers() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: the connection is refused
        assert controllers.healthy(f"https://127.0.0.1:{port}/healthz") is False


def test_controller_manager_needs_the_kubelet(tmp_path: Path) -> None:
    with pytest.raises(netns.LabError, match="--with-controller-manager needs --with-kubelet"):
        kcluster.Cluster(tmp_path, version="1.37", mode="iptables", with_controller_manager=True)
    result = subprocess.run([sys.executable, "-m", "kpdoctor", "lab", "cluster", "up", "--state-dir",
                             str(tmp_path / "s"), "--with-controller-manager"],
                            capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)},
                            cwd=REPO)  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "--with-controller-manager needs --with-kubelet" in result.stderr
    assert not (tmp_path / "s").exists()


def test_the_state_file_keeps_the_controller_manager_flag(tmp_path: Path) -> None:
    st = kcluster.ClusterState(tmp_path, "kpk-abc123", "v1.37.2", "iptables", controller_manager=True)
    st.save()
    back = kcluster.ClusterState.load(tmp_path)
    assert back == st and back.summary()["controller_manager"] is True
    assert "controller_manager" not in kcluster.ClusterState(tmp_path, "kpk-x").summary()
