"""In-cluster credentials: the ServiceAccount token and CA a Pod gets, plus KUBERNETES_SERVICE_HOST/PORT.

The ServiceAccount files are read from KPDOCTOR_SERVICEACCOUNT_DIR when it is set (a projected volume
mounted elsewhere, or a test against the lab API server), else from the path kubelet mounts them at."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

SA_DIR_ENV = "KPDOCTOR_SERVICEACCOUNT_DIR"
DEFAULT_SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


def serviceaccount_dir() -> Path:
    return Path(os.environ.get(SA_DIR_ENV) or DEFAULT_SA_DIR)


def load_incluster(cfg: Any) -> None:
    """Fill `cfg` (a kubernetes.client.Configuration) from the in-cluster environment.
    Raises kubernetes.config.ConfigException when something is missing."""
    from kubernetes.config.incluster_config import InClusterConfigLoader

    where = serviceaccount_dir()
    InClusterConfigLoader(token_filename=str(where / "token"), cert_filename=str(where / "ca.crt")).load_and_set(cfg)
