"""kpdoctor.cluster.incluster without a cluster: which files and variables the in-cluster config reads
(tests/lab/test_incluster_job.py runs it against the lab's real API server)."""

from __future__ import annotations

from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.config import ConfigException

from kpdoctor.cluster.incluster import DEFAULT_SA_DIR, SA_DIR_ENV, load_incluster, serviceaccount_dir


def test_default_directory_is_where_kubelet_mounts_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SA_DIR_ENV, raising=False)
    assert serviceaccount_dir() == Path(DEFAULT_SA_DIR)


def test_reads_token_and_ca_from_the_named_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "token").write_text("abc.def.ghi")
    (tmp_path / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\n")
    monkeypatch.setenv(SA_DIR_ENV, str(tmp_path))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "fd00::1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "6443")
    cfg = client.Configuration()
    load_incluster(cfg)
    assert cfg.host == "https://[fd00::1]:6443"
    assert cfg.ssl_ca_cert == str(tmp_path / "ca.crt")
    assert cfg.api_key["BearerToken"] == "bearer abc.def.ghi"


def test_missing_token_is_a_config_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(SA_DIR_ENV, str(tmp_path))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    with pytest.raises(ConfigException, match="token file does not exist"):
        load_incluster(client.Configuration())
