"""The pre-switch baseline of a kube-proxy mode switch: per node, its mode and the SemanticView per IP family.

`kpdoctor gate mode-switch --phase pre-switch --write-baseline FILE` writes it; `--phase post-switch
--baseline FILE` reads it back and compares the node's rules after the switch with it
(`kpdoctor.gate.mode_post`). The views are the reference proxier's in the node's mode before the switch
(`kpdoctor.gate.mode_views.mode_view`, the same views the pre-switch `semantic-diff` compares).

The file is someone else's input when read back: bounded in size (`MAX_BYTES`), in nodes, families and
frontends, every field type-checked; anything else is an InputError naming the file (exit 2).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from kpdoctor.cluster.kube_proxy_node import ProxyMode
from kpdoctor.dataplane.semantic import Frontend, FrontendView, SemanticView
from kpdoctor.errors import InputError

FORMAT = "kpdoctor/mode-switch-baseline/v1"
MAX_BYTES = 64 * 1024 * 1024
MAX_NODES = 10_000
MAX_FRONTENDS = 200_000  # per node and family
MAX_ITEMS = 100_000  # endpoints / source ranges of one frontend
MODES = ("iptables", "nftables", "ipvs")
FAMILIES = ("IPv4", "IPv6")


@dataclass(frozen=True)
class NodeBaseline:
    name: str
    mode: str | None  # the node's mode before the switch (None: unknown)
    views: dict[str, SemanticView]  # family -> view ({} when the node had no configuration)


@dataclass(frozen=True)
class Baseline:
    target: ProxyMode
    source: str
    nodes: dict[str, NodeBaseline]


def _fv_to_json(v: FrontendView) -> dict[str, Any]:
    fe = v.frontend
    return {"kind": fe.kind, "address": fe.address, "port": fe.port, "protocol": fe.protocol, "service": v.service,
            "verdict": v.verdict, "endpoints": sorted(v.endpoints), "affinity_seconds": v.affinity_seconds,
            "source_ranges": sorted(v.source_ranges),
            "internal_endpoints": None if v.internal_endpoints is None else sorted(v.internal_endpoints)}


def to_json(baseline: Baseline) -> str:
    doc = {"format": FORMAT, "target": baseline.target, "source": baseline.source, "nodes": {
        name: {"mode": nb.mode, "views": {fam: [_fv_to_json(v) for _, v in sorted(view.frontends.items())]
                                          for fam, view in sorted(nb.views.items())}}
        for name, nb in sorted(baseline.nodes.items())}}
    return json.dumps(doc, indent=1, sort_keys=False) + "\n"


def write_baseline(path: str, baseline: Baseline) -> None:
    try:
        Path(path).write_text(to_json(baseline), encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot write the baseline: {exc.strerror}", where=path) from None


# ------------------------------------------------------------------------------------------ reading


class _Reader:
    def __init__(self, where: str) -> None:
        self.where = where

    def fail(self, path: str, what: str) -> InputError:
        return InputError(f"not a mode-switch baseline: {path}: {what}", where=self.where)

    def obj(self, value: Any, path: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(path, "expected an object")
        return value

    def string(self, value: Any, path: str, *, limit: int = 512) -> str:
        if not isinstance(value, str) or len(value) > limit:
            raise self.fail(path, f"expected a string of at most {limit} characters")
        return value

    def strings(self, value: Any, path: str) -> frozenset[str]:
        if not isinstance(value, list) or len(value) > MAX_ITEMS:
            raise self.fail(path, f"expected a list of at most {MAX_ITEMS} strings")
        return frozenset(self.string(s, f"{path}[{i}]", limit=128) for i, s in enumerate(value))

    def integer(self, value: Any, path: str, hi: int) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= hi:
            raise self.fail(path, f"expected a whole number 0..{hi}")
        return value

    def frontend(self, value: Any, path: str) -> FrontendView:
        d = self.obj(value, path)
        fe = Frontend(self.string(d.get("kind"), f"{path}.kind", limit=64),
                      self.string(d.get("address"), f"{path}.address", limit=128),
                      self.integer(d.get("port"), f"{path}.port", 65535),
                      self.string(d.get("protocol"), f"{path}.protocol", limit=16))
        internal = d.get("internal_endpoints")
        return FrontendView(fe, self.string(d.get("service"), f"{path}.service"),
                            self.string(d.get("verdict"), f"{path}.verdict", limit=64),
                            self.strings(d.get("endpoints"), f"{path}.endpoints"),
                            self.integer(d.get("affinity_seconds"), f"{path}.affinity_seconds", 86400 * 365),
                            self.strings(d.get("source_ranges"), f"{path}.source_ranges"),
                            None if internal is None else self.strings(internal, f"{path}.internal_endpoints"))

    def node(self, name: str, value: Any) -> NodeBaseline:
        path = f"nodes[{name!r}]"
        d = self.obj(value, path)
        mode = d.get("mode")
        if mode is not None and mode not in MODES:
            raise self.fail(f"{path}.mode", f"expected one of {', '.join(MODES)} or null")
        views_doc = self.obj(d.get("views"), f"{path}.views")
        views: dict[str, SemanticView] = {}
        for fam, items in views_doc.items():
            if fam not in FAMILIES:
                raise self.fail(f"{path}.views", f"unknown IP family {fam[:20]!r}")
            if not isinstance(items, list) or len(items) > MAX_FRONTENDS:
                raise self.fail(f"{path}.views.{fam}", f"expected a list of at most {MAX_FRONTENDS} frontends")
            views[fam] = SemanticView.of(self.frontend(v, f"{path}.views.{fam}[{i}]") for i, v in enumerate(items))
        return NodeBaseline(name, mode, views)


def read_baseline(path: str) -> Baseline:
    """The baseline in `path`, validated; InputError (exit 2) naming the file on anything else."""
    from kpdoctor.safeio import load_json, read_regular

    p = Path(path)
    if p.is_file() and p.stat().st_size > MAX_BYTES:
        raise InputError(f"baseline is larger than {MAX_BYTES // (1024 * 1024)} MiB", where=path)
    data = read_regular(p, where=path)
    if data is None:
        raise InputError("not a regular file", where=path)
    if len(data) > MAX_BYTES:
        raise InputError(f"baseline is larger than {MAX_BYTES // (1024 * 1024)} MiB", where=path)
    r = _Reader(path)
    doc = r.obj(load_json(data, path), "top level")
    if doc.get("format") != FORMAT:
        raise r.fail("format", f"expected {FORMAT!r} (written by --phase pre-switch --write-baseline)")
    target = doc.get("target")
    if target not in MODES:
        raise r.fail("target", f"expected one of {', '.join(MODES)}")
    nodes_doc = r.obj(doc.get("nodes"), "nodes")
    if len(nodes_doc) > MAX_NODES:
        raise r.fail("nodes", f"more than {MAX_NODES} nodes")
    nodes = {r.string(name, "nodes key", limit=253): r.node(name, value) for name, value in nodes_doc.items()}
    return Baseline(target, r.string(doc.get("source", ""), "source", limit=4096), nodes)


# ------------------------------------------------------------------------------------------ making


def make_baseline(cluster: Any, node_states: Any, target: ProxyMode, source: str) -> Baseline:
    """Per node that runs kube-proxy: its current mode and the reference proxier's view in that mode."""
    from kpdoctor.gate.mode_nodes import TARGETS, current_mode, nodes_of
    from kpdoctor.gate.mode_views import families, mode_view
    from kpdoctor.proxier.context import build_input

    out: dict[str, NodeBaseline] = {}
    for node in nodes_of(cluster, node_states or {}):
        mode, _ = current_mode(node)
        mode = mode if mode in TARGETS else None
        views: dict[str, SemanticView] = {}
        if node.config is not None and mode is not None:
            config = replace(node.config, mode=mode)
            for family in families(cluster):
                views[family] = mode_view(build_input(cluster, node.name, config=config, family=family))
        out[node.name] = NodeBaseline(node.name, mode, views)
    return Baseline(target, source, out)
