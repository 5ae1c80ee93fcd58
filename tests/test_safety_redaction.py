"""Secrets never enter a bundle: checked on the archive `kpdoctor collect` really writes.

A snapshot directory holds what a real kube-system can hold: a Secret, the kube-proxy ConfigMap with an
embedded kubeconfig (token, client key), a third-party ConfigMap with credentials under plain YAML/INI/
env-file keys, a Pod and a DaemonSet whose env and args carry credentials, annotations with a token and
the last-applied-configuration copy. The CLI writes a .tar.gz; the test opens it with tarfile (not with
kpdoctor's reader) and searches every byte of every member for each secret. What the checks need (mode,
clusterCIDR, the API server address, Cilium's k8s-service-host, kube-proxy's --proxy-mode) must survive.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from types import MappingProxyType

from kpdoctor.node.bundle import read_bundle, write_bundle
from kpdoctor.node.redact import sanitize_object
from kpdoctor.node.state import Fact, NodeState

REPO = Path(__file__).resolve().parents[1]
JWT = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQifQ.QUJDREVGR0hJSktMTU5PUA"
SECRETS = {
    "secret-object": "U0VDUkVULU9CSkVDVC1EQVRB",
    "kubeconfig-token": "kpdtok-9f8e7d6c5b4a39281706",
    "kubeconfig-key": "LS0tLS1CRUdJTiBFQyBQUklWQVRFIEtFWS0tLS0tCk1IY0NBUUVFSUlrcGQ=",
    "yaml-client-secret": "kpd-client-secret-7Hq2",
    "json-api-key": "kpd-json-apikey-51Zx",
    "ini-password": "kpd-ini-password-k2",
    "envfile-access-key": "kpd-AKIAEXAMPLEKEY77",
    "data-key-token": "kpd-plain-token-value-3",
    "env-db-pass": "kpd-env-db-pass-0",
    "env-api-token": "kpd-env-api-token-1",
    "arg-token": "kpd-arg-token-2",
    "arg-password": "kpd-arg-password-3",
    "annotation-token": "kpd-annotation-token-4",
    "last-applied": "kpd-last-applied-5",
    "jwt": JWT,
    "url-password": "kpd-url-pw-6",
}


def _objects() -> list[dict]:
    s = SECRETS
    kubeconfig = ("apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    server: https://10.81.0.1:6443\n"
                  "  name: default\nusers:\n- name: default\n  user:\n"
                  f"    token: {s['kubeconfig-token']}\n    client-key-data: {s['kubeconfig-key']}\n")  # fmt: skip
    proxy_cm = {"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "kube-proxy", "namespace": "kube-system",
                             "annotations": {"kubectl.kubernetes.io/last-applied-configuration":
                                             json.dumps({"data": {"x": s["last-applied"]}})}},
                "data": {"config.conf": "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\n"
                                        "mode: nftables\nclusterCIDR: 10.244.0.0/16\n",
                         "kubeconfig.conf": kubeconfig}}  # fmt: skip
    vendor_cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cloud-config", "namespace": "kube-system"},
                 "data": {"cloud.yaml": f"tenant: acme\nauth:\n  clientID: app-1\n  clientSecret: {s['yaml-client-secret']}\n",
                          "settings.json": json.dumps({"region": "eu-1", "apiKey": s["json-api-key"]}, indent=1),
                          "legacy.ini": f"[global]\nuser = admin\npassword = {s['ini-password']}\n",
                          "aws.env": f"AWS_REGION=eu-1\nAWS_SECRET_ACCESS_KEY={s['envfile-access-key']}\n",
                          "token": s["data-key-token"],
                          "etcd.conf": f"endpoint: https://root:{s['url-password']}@etcd.example:2379\n",
                          "service-account.jwt": JWT}}  # fmt: skip
    cilium_cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cilium-config", "namespace": "kube-system"},
                 "data": {"kube-proxy-replacement": "true", "k8s-service-host": "10.81.0.1", "k8s-service-port": "6443"}}  # fmt: skip
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "bootstrap", "namespace": "kube-system"},
              "data": {"token": s["secret-object"]}}  # fmt: skip
    container = {"name": "kube-proxy", "image": "registry.k8s.io/kube-proxy:v1.36.2",
                 "command": ["/usr/local/bin/kube-proxy", "--config=/var/lib/kube-proxy/config.conf",
                             "--proxy-mode=nftables", f"--token={s['arg-token']}", "--password", s["arg-password"]],
                 "env": [{"name": "DB_PASS", "value": s["env-db-pass"]}, {"name": "API_TOKEN", "value": s["env-api-token"]},
                         {"name": "KUBERNETES_SERVICE_HOST", "value": "10.81.0.1"},
                         {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]}  # fmt: skip
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "kube-proxy-abcde", "namespace": "kube-system", "labels": {"k8s-app": "kube-proxy"},
                        "annotations": {"vendor.example/api-token": s["annotation-token"]}},
           "spec": {"nodeName": "n1", "containers": [container]}, "status": {"phase": "Running"}}  # fmt: skip
    ds = {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "kube-proxy", "namespace": "kube-system"},
          "spec": {"selector": {"matchLabels": {"k8s-app": "kube-proxy"}},
                   "template": {"metadata": {"labels": {"k8s-app": "kube-proxy"}},
                                "spec": {"containers": [container]}}}}  # fmt: skip
    return [proxy_cm, vendor_cm, cilium_cm, secret, pod, ds]


def _archive_text(path: Path) -> str:
    parts: list[str] = []
    with tarfile.open(path, "r:gz") as archive:
        for member in archive.getmembers():
            handle = archive.extractfile(member) if member.isfile() else None
            if handle is not None:
                parts.append(handle.read().decode("utf-8", errors="replace"))
    return "\n".join(parts)


def test_collect_cli_writes_no_secret(tmp_path: Path) -> None:
    snap = tmp_path / "snap"
    snap.mkdir()
    for i, obj in enumerate(_objects()):
        (snap / f"{i}-{obj['kind'].lower()}.json").write_text(json.dumps(obj))
    out = tmp_path / "bundle.tar.gz"
    proc = subprocess.run([sys.executable, "-m", "kpdoctor", "collect", "-f", str(out), "--snapshot", str(snap),
                           "--no-nodes"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    text = _archive_text(out)
    leaked = {name: value for name, value in SECRETS.items() if value in text}
    assert leaked == {}
    # what the checks read survives redaction
    cluster = read_bundle(out).cluster_state()
    cm = cluster.configmap("kube-system", "kube-proxy")
    assert cm is not None and "mode: nftables" in cm.data["config.conf"]
    assert "server: https://10.81.0.1:6443" in cm.data["kubeconfig.conf"]
    cilium = cluster.configmap("kube-system", "cilium-config")
    assert cilium is not None and cilium.data["k8s-service-host"] == "10.81.0.1"
    assert "--proxy-mode=nftables" in text and '"KUBERNETES_SERVICE_HOST"' in text and '"10.81.0.1"' in text
    assert '"cloud-config"' not in text  # issue 9: a ConfigMap no check reads is not collected at all
    assert "Secret" not in {o.get("kind") for o in json.loads(_member(out, "cluster/configmaps.json"))["items"]}


def _member(path: Path, name: str) -> str:
    with tarfile.open(path, "r:gz") as archive:
        for member in archive.getmembers():
            if member.name.endswith(name):
                handle = archive.extractfile(member)
                assert handle is not None
                return handle.read().decode()
    raise AssertionError(f"{name} not in {path}")


def test_node_facts_and_logs_are_scrubbed(tmp_path: Path) -> None:
    pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAkpdSECRETKEYBODY\n-----END RSA PRIVATE KEY-----"
    facts = {"kube-proxy/log.txt": Fact("kube-proxy/log.txt", f"I0101 start\nAuthorization: Bearer {JWT}\n{pem}\n",
                                        "journalctl", 0),
             "kube-proxy/configz.json": Fact("kube-proxy/configz.json", json.dumps({"token": JWT}), "GET /configz", 200)}  # fmt: skip
    state = NodeState("n1", "local", MappingProxyType(facts))
    out = write_bundle(tmp_path / "b.tar.gz", nodes={"n1": state},
                       logs={"kube-system/kube-proxy-abcde": f"x\nBearer {SECRETS['arg-token']}\n"})  # fmt: skip
    text = _archive_text(out)
    for value in (JWT, "MIIEowIBAAKCAQEAkpdSECRETKEYBODY", SECRETS["arg-token"]):
        assert value not in text
    assert "I0101 start" in text


def test_sanitize_leaves_objects_without_secrets_unchanged() -> None:
    """Redaction is targeted: a kube-proxy ConfigMap and DaemonSet without credentials come out equal."""
    objects = _objects()
    cm = {**objects[0], "metadata": {"name": "kube-proxy", "namespace": "kube-system"},
          "data": {"config.conf": objects[0]["data"]["config.conf"]}}  # fmt: skip
    assert sanitize_object(cm) == cm
    cilium = objects[2]
    assert sanitize_object(cilium) == cilium
