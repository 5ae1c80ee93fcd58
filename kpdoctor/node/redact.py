"""Keep tokens, keys, certificates and Secret data out of bundles.

Bundles are attached to tickets and mailed around, so the writer scrubs
everything it writes: Secrets are never written, kubeconfig-shaped ConfigMap
values lose their credentials, the last-applied annotation (a full copy of the
object, credentials included) and managedFields are dropped, env values whose
names look secret are masked, and any PEM block or JWT left in free text
(logs, /configz, command output) is replaced.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import yaml

REDACTED = "<redacted by kpdoctor>"
SECRET_KUBECONFIG_FIELDS = (
    "token",
    "client-key-data",
    "client-certificate-data",
    "certificate-authority-data",
    "password",
    "client-key",
    "tokenFile",
)
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
_PEM = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----.*?-----END \1-----", re.S)
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")
_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}")
_SECRET_ENV = re.compile(r"(?i)token|secret|passw|credential|api_?key|private")
_LINE_FIELD = re.compile(
    r"^(\s*(?:-\s+)?(?:" + "|".join(re.escape(f) for f in SECRET_KUBECONFIG_FIELDS) + r")\s*:\s*)(\S.*)$", re.M
)


def redact_text(text: str) -> str:
    """Mask PEM blocks, JWTs and bearer tokens in free text (cheap when there is nothing to mask)."""
    if "-----BEGIN" in text:
        text = _PEM.sub(lambda m: f"-----BEGIN {m.group(1)}-----{REDACTED}-----END {m.group(1)}-----", text)
    if "eyJ" in text:
        text = _JWT.sub(REDACTED, text)
    if "earer" in text or "EARER" in text:
        text = _BEARER.sub(lambda m: m.group(1) + REDACTED, text)
    return text


def _strip_kubeconfig(doc: Any) -> bool:
    changed = False
    if not isinstance(doc, dict):
        return False
    for section, inner in (("users", "user"), ("clusters", "cluster")):
        for entry in doc.get(section) or ():
            body = entry.get(inner) if isinstance(entry, dict) else None
            if not isinstance(body, dict):
                continue
            for name in SECRET_KUBECONFIG_FIELDS:
                if name in body:
                    body[name] = REDACTED
                    changed = True
            if isinstance(body.get("exec"), dict) and body["exec"].get("env"):
                body["exec"]["env"] = [{"name": e.get("name"), "value": REDACTED} for e in body["exec"]["env"]
                                       if isinstance(e, dict)]  # fmt: skip
                changed = True
    return changed


def redact_config_value(key: str, value: str) -> str:
    """A ConfigMap value with kubeconfig credentials masked; other values only lose PEM/JWT text."""
    if any(f in value for f in SECRET_KUBECONFIG_FIELDS):
        try:
            doc = yaml.safe_load(value)
        except yaml.YAMLError:
            doc = None
        if isinstance(doc, dict) and (doc.get("users") or doc.get("clusters")):
            if _strip_kubeconfig(doc):
                value = yaml.safe_dump(doc, sort_keys=False)
        else:
            value = _LINE_FIELD.sub(lambda m: m.group(1) + REDACTED, value)
    return redact_text(value)


def _scrub_pod_spec(spec: Any) -> None:
    if not isinstance(spec, dict):
        return
    for group in ("containers", "initContainers", "ephemeralContainers"):
        for container in spec.get(group) or ():
            if not isinstance(container, dict):
                continue
            for env in container.get("env") or ():
                if isinstance(env, dict) and "value" in env and _SECRET_ENV.search(str(env.get("name", ""))):
                    env["value"] = REDACTED


def sanitize_object(obj: dict[str, Any]) -> dict[str, Any] | None:
    """A copy of an API object safe to put in a bundle, or None for objects that never go in (Secrets)."""
    kind = obj.get("kind")
    if kind == "Secret":
        return None
    out = copy.deepcopy(obj)
    meta = out.get("metadata")
    if isinstance(meta, dict):
        meta.pop("managedFields", None)
        annotations = meta.get("annotations")
        if isinstance(annotations, dict):
            annotations.pop(LAST_APPLIED, None)
            for name, value in list(annotations.items()):
                if isinstance(value, str):
                    annotations[name] = redact_text(value)
    if kind == "ConfigMap":
        data = out.get("data")
        if isinstance(data, dict):
            out["data"] = {k: redact_config_value(k, v) if isinstance(v, str) else v for k, v in data.items()}
        if out.get("binaryData"):
            out["binaryData"] = {k: "" for k in out["binaryData"]}
    elif kind == "Pod":
        _scrub_pod_spec(out.get("spec"))
    elif kind in ("DaemonSet", "Deployment"):
        _scrub_pod_spec(((out.get("spec") or {}).get("template") or {}).get("spec"))
    return out
