"""Which credentials a live command would use: the one place that decides, with no heavy import.

--kubeconfig, then $KUBECONFIG, then ~/.kube/config (or any --context, which needs a kubeconfig), else the
in-cluster service account, else none. Deciding "none" here lets `kpdoctor version` answer without loading
the kubernetes client.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

NO_CREDENTIALS = ("no kubeconfig (--kubeconfig, $KUBECONFIG, ~/.kube/config) and not in a cluster; "
                  "use --snapshot DIR or --bundle PATH to work offline")


@dataclass(frozen=True)
class Credentials:
    kind: str  # "kubeconfig" | "in-cluster" | "none"
    path: str = ""  # the kubeconfig file, for kind "kubeconfig"


def credentials_source(kubeconfig: str | None = None, context: str | None = None) -> Credentials:
    path = kubeconfig or os.environ.get("KUBECONFIG") or ""
    default = Path("~/.kube/config").expanduser()
    if path or context or default.is_file():
        return Credentials("kubeconfig", path or str(default))
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        return Credentials("in-cluster")
    return Credentials("none")
