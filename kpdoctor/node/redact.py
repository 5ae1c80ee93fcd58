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
# A secret-named `name=value`, `name: value`, `"name": "value"` anywhere in a line (annotations, one-line JSON,
# YAML flow mappings `{pass: X}`, `sh -c "... --token=X"`), and a secret-named flag followed by its value.
_NAME_CHARS = r"[A-Za-z0-9_.-]*"
_INLINE_PAIR = re.compile(
    r"(?P<head>(?P<name>" + _NAME_CHARS + r"(?:" + _SECRET_NAME.pattern.replace("(?i)", "") + r")" + _NAME_CHARS
    + r")[\"']?\s*[:=]\s*)(?P<value>\"(?:[^\"\\]|\\.)*\"|'[^']*'|[^\s,;&}\])\"']+)",
    re.I,
)
_FLAG_VALUE = re.compile(
    r"(?P<head>(?<![A-Za-z0-9_.-])--?(?P<name>" + _NAME_CHARS + r"(?:" + _SECRET_NAME.pattern.replace("(?i)", "")
    + r")" + _NAME_CHARS + r")\s+)(?P<value>\"(?:[^\"\\]|\\.)*\"|'[^']*'|[^\s\-\"'][^\s\"']*)",
    re.I,
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


def _mask_keep_quotes(match: re.Match[str]) -> str:
    value = match.group("value")
    quote = value[0] if value[:1] in ('"', "'") else ""
    if value == f"{quote}{REDACTED}{quote}" or value.startswith(("<redacted", '"<redacted', "'<redacted")):
        return match.group(0)
    return f"{match.group('head')}{quote}{REDACTED}{quote}"


def redact_inline(text: str) -> str:
    """Mask secret-named `name=value` / `name: value` pairs and `--secret-flag value` anywhere in `text`, plus
    PEM blocks, JWTs, bearer tokens and URL passwords (for annotations, args, ConfigMap values and logs)."""
    text = _INLINE_PAIR.sub(_mask_keep_quotes, text)
    text = _FLAG_VALUE.sub(_mask_keep_quotes, text)
    return redact_text(text)


def _redact_tree(node: Any) -> tuple[Any, bool]:
    """A parsed JSON/YAML value with every secret-named key's value masked and strings redacted inline."""
    if isinstance(node, dict):
        changed = False
        out: dict[Any, Any] = {}
        for key, value in node.items():
            secret = isinstance(key, str) and _SECRET_NAME.search(key) is not None
            if secret and value not in (None, "") and not isinstance(value, dict | list):
                out[key], changed = REDACTED, True
                continue
            out[key], sub = _redact_tree(value)
            changed = changed or sub
        return out, changed
    if isinstance(node, list):
        items = [_redact_tree(v) for v in node]
        return [v for v, _ in items], any(c for _, c in items)
    if isinstance(node, str):
        masked = redact_inline(node)
        return masked, masked != node
    return node, False


def _redact_structured(value: str) -> str:
    """A ConfigMap value that parses as a JSON or YAML mapping/list, redacted by key and re-serialised
    (unchanged text when nothing in it is secret)."""
    import json

    from kpdoctor.errors import InputError
    from kpdoctor.safeio import load_json, load_yaml

    stripped = value.strip()
    doc: Any = None
    as_json = stripped[:1] in ("{", "[")
    try:
        doc = load_json(stripped, "configmap value") if as_json else None
    except InputError:
        as_json = False
    if doc is None:
        try:
            doc = load_yaml(value, "configmap value")
        except InputError:
            return value
    if not isinstance(doc, dict | list):
        return value
    masked, changed = _redact_tree(doc)
    if not changed:
        return value
    return json.dumps(masked, indent=2) + "\n" if as_json else yaml.safe_dump(masked, sort_keys=False)


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
        from kpdoctor.errors import InputError
        from kpdoctor.safeio import load_yaml

        try:
            doc = load_yaml(value, "configmap value")  # bounded: no alias bomb while collecting
        except InputError:
            doc = None
        if isinstance(doc, dict) and (doc.get("users") or doc.get("clusters")):
            if _strip_kubeconfig(doc):
                value = yaml.safe_dump(doc, sort_keys=False)
        else:
            value = _LINE_FIELD.sub(lambda m: m.group(1) + REDACTED, value)
    return redact_inline(redact_named_values(_redact_structured(value)))


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
        out.append(redact_inline(arg))  # `sh -c "... --token=X --password Y"` in one element
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
                    annotations[name] = REDACTED if _SECRET_NAME.search(str(name)) else redact_inline(value)
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
