"""The rollout plan's ConfigMap edit as one exact, non-interactive command: a `kubectl patch` that sets the
kube-proxy configuration's `mode:` and changes nothing else.

The configuration is a YAML document inside one ConfigMap key (usually `config.conf`), so `mode` cannot be
patched as a field: the patch sets the whole key to the text the gate read with only its top-level `mode:` line
replaced (or added). The result is checked by parsing both texts: the edit is offered only when the new text
parses to the old document with `mode` set to the target; otherwise (flow style, a JSON document, anchors on the
line) None, and the plan falls back to `kubectl edit`. The patch body is JSON (ASCII only) quoted as one shell
word by kpdoctor.shellcmd, so a hostile configuration text stays data.
"""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

from kpdoctor.cluster.kube_proxy_node import ProxyMode
from kpdoctor.shellcmd import Name, command

_MODE_LINE = re.compile(r"^mode:[^\n]*$", re.MULTILINE)  # top level: no indentation
_MAX_TEXT = 256 * 1024


def _load(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return None


def set_mode(text: str, target: ProxyMode) -> str | None:
    """`text` with its top-level `mode:` set to `target`, or None when that cannot be done by that one line."""
    if len(text) > _MAX_TEXT:
        return None
    before = _load(text)
    if not isinstance(before, dict):
        return None
    lines = _MODE_LINE.findall(text)
    if len(lines) > 1:
        return None
    if lines:
        new = _MODE_LINE.sub(lambda _m: f"mode: {target}", text, count=1)
    else:
        new = text + ("" if text.endswith("\n") or not text else "\n") + f"mode: {target}\n"
    after = _load(new)
    if not isinstance(after, dict) or after != {**before, "mode": target}:
        return None
    return new


def patch_command(namespace: str, name: str, key: str, text: str, target: ProxyMode, *, note: str = "") -> str | None:
    """`kubectl -n NS patch configmap NAME --type merge -p '{"data":{KEY: NEW}}'`, or None (see set_mode)."""
    new = set_mode(text, target)
    if new is None or not key:
        return None
    body = json.dumps({"data": {key: new}}, ensure_ascii=True, separators=(",", ":"))
    return command("kubectl", "-n", Name(namespace), "patch", "configmap", Name(name), "--type", "merge", "-p", body,
                   note=note)
