"""Issue 9 item 3: no secret shape reaches a bundle or a report.

A corpus of real-world secret shapes is planted where a bundle *does* carry text - the kube-proxy and
cilium-config ConfigMaps, the kube-proxy DaemonSet/Pod (args, annotations), a pod log - plus in a
third-party ConfigMap (which must be left out: no check reads it) and a kubeconfig reached through a
symlink under cluster/logs of the snapshot. `kpdoctor collect` writes a .tar.gz (opened here with tarfile,
not kpdoctor's reader) and `kpdoctor scan` reads it back in every format; no secret value may appear.
Shapes: Azure cloud-provider JSON (aadClientSecret, minified, one line), a GCP service-account JSON
(private_key PEM), AWS credentials INI, YAML flow mappings (`{pass: X}`), `sh -c "... --token=X --password Y"`
in one argv element, `password=` in an annotation, kubeconfig tokens/keys, bearer tokens and JWTs.
Before the fix the JSON, flow-mapping, `sh -c` and annotation shapes and the third-party ConfigMap leaked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from kpdoctor.node.bundle import read_bundle

REPO = Path(__file__).resolve().parents[2]
JWT = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsyIn0.eyJzdWIiOiJzeXN0ZW06a3BkLXRlc3QifQ.S0VZLVNJR05BVFVSRS1rcGQtdGVzdA"
PEM_BODY = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQCkpdGCPKEY"
S = {
    "azure-aad": "kpd-aad-Secret-0a1",
    "azure-third-party": "kpd-aad-thirdparty-0a2",
    "gcp-key-id": "kpd0gcp0private0key0id",
    "gcp-pem": PEM_BODY,
    "aws-secret": "kpdAWSsecret0EXAMPLEKEY0000",
    "flow-pass": "kpd-flow-pass-11",
    "flow-token": "kpd-flow-token-12",
    "sh-token": "kpd-sh-token-13",
    "sh-password": "kpd-sh-password-14",
    "annotation-password": "kpd-annotation-pw-15",
    "kubeconfig-token": "kpd-kubeconfig-token-16",
    "log-bearer": "kpd-log-bearer-token-17",
    "jwt": JWT,
    "symlink-kubeconfig": "kpd-symlinked-kubeconfig-18",
}


def _snapshot(root: Path) -> Path:
    snap = root / "snap"
    (snap / "logs" / "kube-system").mkdir(parents=True)
    azure = json.dumps({"cloud": "AzurePublicCloud", "tenantId": "t-1", "aadClientId": "c-1",
                        "aadClientSecret": S["azure-aad"]}, separators=(",", ":"))
    gcp = json.dumps({"type": "service_account", "project_id": "p", "private_key_id": S["gcp-key-id"],
                      "private_key": f"-----BEGIN PRIVATE KEY-----\n{PEM_BODY}\n-----END PRIVATE KEY-----\n"})
    kubeconfig = ("apiVersion: v1\nkind: Config\nclusters:\n- cluster: {server: 'https://10.81.0.1:6443'}\n  name: d\n"
                  f"users:\n- name: d\n  user: {{token: {S['kubeconfig-token']}}}\n")
    proxy_cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
        "name": "kube-proxy", "namespace": "kube-system",
        "annotations": {"note": f"rotated; db password={S['annotation-password']} (ticket 7)"}},
        "data": {"config.conf": "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\n"
                                "mode: nftables\nclusterCIDR: 10.244.0.0/16\n",
                 "kubeconfig.conf": kubeconfig, "azure.json": azure, "gcp.json": gcp,
                 "aws.ini": f"[default]\naws_access_key_id = AKIDEXAMPLE\naws_secret_access_key={S['aws-secret']}\n",
                 "extra.yaml": f"db: {{user: app, pass: {S['flow-pass']}}}\nlist: [{{token: {S['flow-token']}}}]\n"}}
    cilium_cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cilium-config", "namespace": "kube-system"},
                 "data": {"kube-proxy-replacement": "true", "k8s-service-host": "10.81.0.1", "k8s-service-port": "6443",
                          "clustermesh.json": json.dumps({"etcd": {"password": S["flow-pass"]}})}}
    third = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "azure-cloud-provider",
                                                                   "namespace": "kube-system"},
             "data": {"cloud-config": json.dumps({"aadClientSecret": S["azure-third-party"]})}}
    container = {"name": "kube-proxy", "image": "registry.k8s.io/kube-proxy:v1.36.2",
                 "command": ["/bin/sh", "-c", f"exec kube-proxy --config=/var/lib/kube-proxy/config.conf "
                             f"--token={S['sh-token']} --password {S['sh-password']} --v=2"]}
    ds = {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "kube-proxy", "namespace": "kube-system"},
          "spec": {"selector": {"matchLabels": {"k8s-app": "kube-proxy"}},
                   "template": {"metadata": {"labels": {"k8s-app": "kube-proxy"}},
                                "spec": {"containers": [container],
                                         "volumes": [{"name": "c", "configMap": {"name": "kube-proxy"}}]}}}}
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "kube-proxy-abcde", "namespace": "kube-system",
                                                           "labels": {"k8s-app": "kube-proxy"}},
           "spec": {"nodeName": "n1", "containers": [container]}, "status": {"phase": "Running"}}
    for i, obj in enumerate([proxy_cm, cilium_cm, third, ds, pod]):
        (snap / f"{i}-{obj['kind'].lower()}.json").write_text(json.dumps(obj))
    (snap / "logs" / "kube-system" / "kube-proxy-abcde.log").write_text(
        f"I0101 started\nE0101 auth failed: Authorization: Bearer {S['log-bearer']}\ntoken {JWT}\n")
    outside = root / "admin.conf"
    outside.write_text(f"users:\n- name: admin\n  user:\n    token: {S['symlink-kubeconfig']}\n")
    os.symlink(outside, snap / "logs" / "kube-system" / "kube-proxy-zzzzz.log")
    return snap


def _kpd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kpdoctor", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("redact")
    out = root / "bundle.tar.gz"
    proc = _kpd("collect", "-f", str(out), "--snapshot", str(_snapshot(root)), "--no-nodes")
    assert proc.returncode == 0, proc.stderr
    return out


def _archive_text(path: Path) -> str:
    with tarfile.open(path, "r:gz") as archive:
        return "\n".join(h.read().decode("utf-8", "replace") for m in archive.getmembers()
                         if m.isfile() and (h := archive.extractfile(m)) is not None)


def test_no_secret_shape_reaches_the_bundle(bundle: Path) -> None:
    text = _archive_text(bundle)
    assert {k: v for k, v in S.items() if v in text} == {}
    assert "azure-cloud-provider" not in text  # a ConfigMap no check reads is not collected
    cluster = read_bundle(bundle).cluster_state()  # what the checks read survives
    cm = cluster.configmap("kube-system", "kube-proxy")
    assert cm is not None and "mode: nftables" in cm.data["config.conf"]
    assert json.loads(cm.data["azure.json"])["tenantId"] == "t-1"
    assert cm.data["aws.ini"].startswith("[default]\naws_access_key_id = ")  # key ids fail closed (masked too)
    assert "--config=/var/lib/kube-proxy/config.conf" in text and "--v=2" in text
    assert "I0101 started" in text
    assert cluster.configmap("kube-system", "cilium-config").data["k8s-service-host"] == "10.81.0.1"  # type: ignore[union-attr]


@pytest.mark.parametrize("fmt", ["console", "json", "markdown", "html", "junit"])
def test_no_secret_shape_reaches_a_report(bundle: Path, fmt: str) -> None:
    proc = _kpd("scan", "--bundle", str(bundle), "-o", fmt)
    assert proc.returncode in (0, 1, 3), proc.stderr
    assert {k: v for k, v in S.items() if v in proc.stdout + proc.stderr} == {}
