"""Kubeconfig handling in one place: which credentials a live command would use (with no heavy import),
a kubeconfig's shape checked before the kubernetes client reads it, and its credentials after.

--kubeconfig, then $KUBECONFIG, then ~/.kube/config (or any --context, which needs a kubeconfig), else the
in-cluster service account, else none. Deciding "none" here lets `kpdoctor version` answer without loading
the kubernetes client.

The kubernetes Python client answers a malformed kubeconfig with whatever Python error its code hits
(`TypeError`, `AttributeError`, a YAML parser error) and, when an exec credential plugin fails, logs
the failure and carries on *anonymously*. kpdoctor instead:

- reads each kubeconfig file bounded (`kpdoctor.safeio`) and checks the fields the client walks
  (`clusters`/`contexts`/`users` lists of named entries, `current-context`): a bad one is an
  `InputError` naming the file and field (exit 2);
- refuses to go on without credentials when the selected user has an `exec` plugin that produced none:
  `UnreachableError` (exit 3), since an anonymous scan would see nothing and must not pass.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kpdoctor.errors import InputError, UnreachableError
from kpdoctor.safeio import limits, load_yaml, too_big

_SECTIONS = {"clusters": "cluster", "contexts": "context", "users": "user"}


def _read(path: str) -> str:
    lim = limits()
    try:
        with open(path, "rb") as handle:  # a kubeconfig may be a symlink the user made: followed on purpose
            data = handle.read(lim.max_file_bytes + 1)
    except OSError as exc:
        raise InputError(f"cannot read the kubeconfig: {exc.strerror}", where=path) from None
    if len(data) > lim.max_file_bytes:
        raise too_big(len(data), path, lim)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"kubeconfig is not UTF-8 text (byte {exc.start})", where=path) from None


def check_shape(doc: Any, where: str) -> dict[str, Any]:
    """`doc` as a dict if its fields have the types the client expects, else InputError."""
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise InputError("malformed kubeconfig: the document must be a mapping", where=where)
    for section, inner in _SECTIONS.items():
        entries = doc.get(section)
        if entries is None:
            continue
        if not isinstance(entries, list):
            raise InputError(f"malformed kubeconfig: {section} must be a list", where=where)
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
                raise InputError(f"malformed kubeconfig: {section}[{i}] must be a mapping with a name", where=where)
            value = entry.get(inner)
            if value is not None and not isinstance(value, dict):
                raise InputError(f"malformed kubeconfig: {section}[{i}].{inner} must be a mapping", where=where)
            for key, field in (value or {}).items():
                if key in ("server", "token", "cluster", "user", "namespace", "certificate-authority-data",
                           "client-certificate-data", "client-key-data", "certificate-authority",
                           "client-certificate", "client-key", "tokenFile") and not isinstance(field, str):
                    raise InputError(f"malformed kubeconfig: {section}[{i}].{inner}.{key} must be a string",
                                     where=where)
                if key == "exec" and not isinstance(field, dict):
                    raise InputError(f"malformed kubeconfig: {section}[{i}].{inner}.exec must be a mapping",
                                     where=where)
    current = doc.get("current-context")
    if current is not None and not isinstance(current, str):
        raise InputError("malformed kubeconfig: current-context must be a string", where=where)
    return doc


def check_kubeconfig(path: str, context: str | None) -> dict[str, Any]:
    """Check every file of `path` ($KUBECONFIG may list several); return the selected context's user
    entry (`{}` when it cannot be told: the client reports that itself)."""
    docs = []
    for part in (p for p in path.split(os.pathsep) if p):
        if os.path.exists(part):
            docs.append(check_shape(load_yaml(_read(part), part), part))
    merged: dict[str, list[dict[str, Any]]] = {s: [] for s in _SECTIONS}
    current = context
    for doc in docs:
        for section in _SECTIONS:
            merged[section].extend(doc.get(section) or [])
        current = current or doc.get("current-context")
    ctx = next((c.get("context") or {} for c in merged["contexts"] if c["name"] == current), {})
    return next((u.get("user") or {} for u in merged["users"] if u["name"] == ctx.get("user")), {})


def require_credentials(cfg: Any, user: dict[str, Any], where: str) -> None:
    """UnreachableError when the user's exec plugin ran but left the client without any credential."""
    if not user.get("exec"):
        return
    has_token = bool((getattr(cfg, "api_key", None) or {}).get("authorization"))
    has_cert = bool(getattr(cfg, "cert_file", None))
    if not (has_token or has_cert):
        command = str(user["exec"].get("command") or "?")
        raise UnreachableError(f"cannot read the cluster: the exec credential plugin {command!r} gave no credentials "
                               "(it failed; kpdoctor does not continue anonymously)", where=where)


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

