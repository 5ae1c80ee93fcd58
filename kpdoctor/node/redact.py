"""Keep tokens, keys, certificates and Secret data out of bundles.

Bundles are attached to tickets and mailed around, so the writer scrubs
everything it writes: Secrets are never written, kubeconfig-shaped ConfigMap
values lose their credentials, the last-applied annotation (a full copy of the
object, credentials included) and managedFields are dropped, and any PEM
block or JWT left in free text (logs, /configz, command output) is replaced.
Names that look secret (token, secret, password, credential, api/access/private
key) mask what they name wherever a name and a value meet: ConfigMap data keys,
`name: value` / `name = value` / `"name": "value"` / `NAME=value` lines inside
ConfigMap values, annotations, container args (`--token=X`, `--password X`).
Container env values are masked unless the variable is one of a few known
non-secret ones (node/pod identity, the API server address): kpdoctor reads no
env value, so failing closed costs nothing.
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
_URL_PASSWORD = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]+:)[^/\s@]+@")
_SECRET_NAME = re.compile(
    r"(?i)token|secret|passw|passphrase|pwd|credential|api[_.-]?key|access[_.-]?key|private[_.-]?key|"
    r"auth[_.-]?key|(?<![a-z])pass(?![a-z])"
)
_SECRET_ENV = _SECRET_NAME  # kept for callers of the old name
# Env values that carry no secret and help a reader (what Cilium and kube-proxy get about the API and node).
_PLAIN_ENV = re.compile(
    r"^(KUBERNETES_SERVICE_(HOST|PORT)|K8S_NODE_NAME|NODE_NAME|HOSTNAME|POD_(NAME|NAMESPACE|IP)|"
    r"CILIUM_K8S_NAMESPACE|GOMEMLIMIT|GOMAXPROCS|KUBE_PROXY_MODE)$"
)
# `name: value`, `name = value`, `"name": "value",`, `NAME=value` (one per line, YAML/INI/JSON/env files)
_NAMED_LINE = re.compile(
    r"""^(?P<head>[ \t]*(?:-[ \t]+)?(?:export[ \t]+)?(?P<q>["']?)(?P<name>[A-Za-z0-9_.-]+)(?P=q)[ \t]*[:=][ \t]*)"""
    r"""(?P<value>\S.*?)(?P<tail>,?)[ \t]*$""",
    re.M,
)
_LINE_FIELD = re.compile(
    r"^(\s*(?:-\s+)?(?:" + "|".join(re.escape(f) for f in SECRET_KUBECONFIG_FIELDS) + r")\s*:\s*)(\S.*)$", re.M
)


def redact_text(text: str) -> str:
    """Mask PEM blocks, JWTs, bearer tokens and URL passwords in free text (cheap when there is none)."""
    if "-----BEGIN" in text:
        text = _PEM.sub(lambda m: f"-----BEGIN {m.group(1)}-----{REDACTED}-----END {m.group(1)}-----", text)
    if "eyJ" in text:
        text = _JWT.sub(REDACTED, text)
    if "earer" in text or "EARER" in text:
        text = _BEARER.sub(lambda m: m.group(1) + REDACTED, text)
    if "://" in text and "@" in text:
        text = _URL_PASSWORD.sub(lambda m: m.group(1) + REDACTED + "@", text)
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


def _mask_named_line(match: re.Match[str]) -> str:
    if not _SECRET_NAME.search(match.group("name")):
        return match.group(0)
    value = match.group("value")
    if value[:1] in ("|", ">", "{", "["):  # a block or a nested document: its lines are masked on their own
        return match.group(0)
    quote = value[0] if value[:1] in ('"', "'") and value[-1:] == value[:1] and len(value) > 1 else ""
    return f"{match.group('head')}{quote}{REDACTED}{quote}{match.group('tail')}"


def redact_named_values(text: str) -> str:
    """Mask the value of every `name: value`-style line whose name looks secret (YAML, INI, JSON, env files)."""
    return _NAMED_LINE.sub(_mask_named_line, text)


def redact_config_value(key: str, value: str) -> str:
    """A ConfigMap value with credentials masked: a secret-named key loses its whole value, a kubeconfig its
    credentials, other text its secret-named lines and any PEM/JWT."""
    if _SECRET_NAME.search(key):
        return REDACTED
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
    return redact_text(redact_named_values(value))


def _redact_args(args: Any) -> Any:
    """`--token=X` -> `--token=<redacted>`; `--password X` -> `--password <redacted>`."""
    if not isinstance(args, list):
        return args
    out: list[Any] = []
    mask_next = False
    for arg in args:
        if not isinstance(arg, str):
            out.append(arg)
            mask_next = False
            continue
        if mask_next:
            out.append(REDACTED)
            mask_next = False
            continue
        flag, eq, _ = arg.partition("=")
        if flag.startswith("-") and _SECRET_NAME.search(flag):
            if eq:
                out.append(f"{flag}={REDACTED}")
            else:
                out.append(arg)
                mask_next = True
            continue
        out.append(redact_text(arg))
    return out


def _scrub_pod_spec(spec: Any) -> None:
    if not isinstance(spec, dict):
        return
    for group in ("containers", "initContainers", "ephemeralContainers"):
        for container in spec.get(group) or ():
            if not isinstance(container, dict):
                continue
            for env in container.get("env") or ():
                if isinstance(env, dict) and "value" in env and not _PLAIN_ENV.match(str(env.get("name", ""))):
                    env["value"] = REDACTED
            for field_name in ("command", "args"):
                if field_name in container:
                    container[field_name] = _redact_args(container[field_name])


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
                    annotations[name] = REDACTED if _SECRET_NAME.search(str(name)) else redact_text(value)
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
