"""Hostile copies of the real B1-B4 bundles (tests/fixtures/bundles, captured from real clusters).

Only the planted values are hand-made: what an attacker with NET_ADMIN on a node (rule comments, chain
names) or write access to kube-system objects (names) can put there. Payloads create `pwned` in the
current directory or call a program that is not installed, so a sandboxed shell notices either.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.conftest import BUNDLES

SCENARIOS = ("B1-healthy", "B2-stale-endpoint", "B3-backend-split", "B4-ipvs-unavailable")

# Shell payloads as an iptables comment can carry them (iptables-save double-quotes and \-escapes `"`).
PAYLOADS = (
    "$(echo pwned >pwned)",
    "`touch pwned`",
    "x; echo pwned >pwned",
    "x' ; echo pwned >pwned; '",
    "x && touch pwned #",
    "x | tee pwned",
)
# A user chain name: iptables-save prints it unquoted, so it cannot hold whitespace.
HOSTILE_CHAIN = "X$(touch${IFS}pwned)"
# Object names planted through the API (the API server would refuse them; a crafted bundle does not).
HOSTILE_NAMES = ("kube-proxy-x;touch pwned", "$(touch pwned)", "--all", "kp\n touch pwned")


def _save_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _plant_rules(dump: Path, payload: str) -> None:
    lines = dump.read_text().splitlines()
    out: list[str] = []
    in_filter = False
    planted = False
    for line in lines:
        if line == "*filter":
            in_filter = True
        if in_filter and line.startswith(":FORWARD "):
            out.append(line)
            out.append(f":{HOSTILE_CHAIN} - [0:0]")
            continue
        if in_filter and not planted and line.startswith("-A FORWARD "):
            # a jump into the hostile chain (whose DROP the FORWARD check reports), then a blanket DROP
            out.append(f"-A FORWARD -m comment --comment {_save_quote(payload)} -j {HOSTILE_CHAIN}")
            out.append(f"-A {HOSTILE_CHAIN} -m comment --comment {_save_quote(payload)} -j DROP")
            out.append(f"-A FORWARD -m comment --comment {_save_quote(payload)} -j DROP")
            planted = True
        if line == "COMMIT":
            in_filter = False
        out.append(line)
    dump.write_text("\n".join(out) + "\n")


def _rename(doc: Path, kind_names: dict[str, str]) -> None:
    data = json.loads(doc.read_text())
    for item in data.get("items", []):
        meta = item.get("metadata", {})
        if meta.get("name") in kind_names:
            meta["name"] = kind_names[meta["name"]]
    doc.write_text(json.dumps(data))


def hostile_bundle(scenario: str, dest: Path, payload: str = PAYLOADS[0]) -> Path:
    """A copy of `scenario`'s bundle with hostile rule comments/chains on every node and hostile pod and
    DaemonSet names in the cluster objects; returns its root."""
    root = dest / scenario / str(PAYLOADS.index(payload) if payload in PAYLOADS else "x")
    shutil.copytree(BUNDLES / scenario / "bundle", root)
    for dump in root.glob("nodes/*/iptables*-save.txt"):
        if "*filter" in dump.read_text():
            _plant_rules(dump, payload)
    cluster = root / "cluster"
    pods = json.loads((cluster / "pods.json").read_text())
    renames = {}
    for i, item in enumerate(pods.get("items", [])):
        name = item["metadata"]["name"]
        if name.startswith("kube-proxy"):
            renames[name] = HOSTILE_NAMES[i % len(HOSTILE_NAMES)]
    _rename(cluster / "pods.json", renames)
    _rename(cluster / "daemonsets.json", {"kube-proxy": HOSTILE_NAMES[0]})
    return root
