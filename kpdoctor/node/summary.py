"""Derived facts of a node: the questions every check asks first, answered once from the raw facts.

Which iptables backend(s) hold KUBE-* chains, what the iptables-wrappers
detection would pick, whether IPVS is available, which kube-proxy surfaces
answered. Derived only from facts, so a bundle and a live node summarise
identically, and each answer names the facts it came from.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from kpdoctor.dataplane.chain_owners import HINT_CHAINS, HOST_FIREWALL_PREFIXES
from kpdoctor.dataplane.iptables_save import parse_iptables_save
from kpdoctor.dataplane.nft_structure import parse_nft_structure

if TYPE_CHECKING:
    from kpdoctor.node.state import NodeState

_EMPTY: Mapping[str, Any] = MappingProxyType({})
KUBELET_HINT_CHAINS = HINT_CHAINS
SURFACES = ("healthz", "metrics", "proxyMode", "configz")
FIREWALL_NFT_TABLES = ("firewalld", "ufw")
FIREWALL_CHAIN_PREFIXES = HOST_FIREWALL_PREFIXES
_VERSION = re.compile(r"iptables v([\d.]+)(?: \((\w+)\))?")


@dataclass(frozen=True)
class NodeSummary:
    kernel: str | None = None
    iptables_version: str | None = None
    iptables_backend: str | None = None  # "nf_tables" | "legacy": what plain `iptables` is
    backends_with_kube_chains: tuple[str, ...] = ()  # any ":KUBE-*" chain (kubelet's or kube-proxy's)
    backends_with_kube_proxy_rules: tuple[str, ...] = ()  # a KUBE-SERVICES chain: kube-proxy wrote there
    wrapper_mode: str | None = None  # what kubernetes-sigs/iptables-wrappers would select
    wrapper_reason: str = ""
    legacy_tables_loaded: tuple[str, ...] = ()
    ipvs_available: bool | None = None
    ipvs_evidence: str = ""
    ipvs_virtual_services: int | None = None
    kube_ipvs0: bool | None = None
    nft_tables: tuple[str, ...] = ()
    nft_kube_proxy_tables: tuple[str, ...] = ()
    host_firewall: tuple[str, ...] = ()
    filter_policies: Mapping[str, Mapping[str, str]] = field(default_factory=lambda: _EMPTY)
    kube_proxy_surfaces: Mapping[str, bool] = field(default_factory=lambda: _EMPTY)
    proxy_mode: str | None = None
    healthz_healthy: bool | None = None
    sysctls: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    conntrack_service_entries: int | None = None
    conntrack_stats: Mapping[str, int] = field(default_factory=lambda: _EMPTY)
    unavailable: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    truncated: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Mapping):
                value = {k: dict(v) if isinstance(v, Mapping) else v for k, v in value.items()}
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out


def declared(save: str) -> dict[str, dict[str, str]]:
    """`iptables-save` text -> table -> declared chain -> policy ("-" for user chains), in dump order.

    Read by the one iptables-save parser in its lenient, declarations-only mode (`rules=False`: the `-A` lines
    are passed over unread), so a dump the checks and the scan read one way is not summarised another."""
    dump = parse_iptables_save(save, "<iptables-save>", lenient=True, rules=False)
    return {name: {c: ch.policy for c, ch in t.chains.items()} for name, t in dump.tables.items()}


def chains_by_table(save: str) -> dict[str, list[str]]:
    """`iptables-save` text -> table -> declared chain names."""
    return {table: list(chains) for table, chains in declared(save).items()}


def _builtin_policies(tables: Mapping[str, Mapping[str, str]]) -> dict[str, str]:
    return {c: p for c, p in tables.get("filter", {}).items() if p != "-"}


def policies(save: str) -> dict[str, str]:
    """Built-in chain policies of the filter table, e.g. {"INPUT": "ACCEPT", "FORWARD": "DROP"}."""
    return _builtin_policies(declared(save))


def _rule_lines(save: str | None) -> int:
    return 0 if not save else save.count("\n-") + save.startswith("-")


def _backend_texts(state: NodeState, backend: str | None) -> dict[str, str | None]:
    """The save text of each backend; the default `iptables-save` stands in for its own backend."""
    nft = state.text("iptables-nft-save.txt")
    legacy = state.text("iptables-legacy-save.txt")
    default = state.text("iptables-save.txt")
    if nft is None and backend == "nf_tables":
        nft = default
    if legacy is None and backend == "legacy":
        legacy = default
    return {"nf_tables": nft, "legacy": legacy}


def wrapper_detection(nft: str | None, legacy: str | None,
                      chains: Mapping[str, Mapping[str, list[str]]] | None = None) -> tuple[str | None, str]:  # fmt: skip
    """kubernetes-sigs/iptables-wrappers' choice: kubelet's hint chains in mangle first, then rule counts.

    `chains`: chains_by_table of each backend ("nf_tables", "legacy") when the caller has them already.
    """
    if nft is None and legacy is None:
        return None, "no iptables dump of either backend"
    nft_chains = chains["nf_tables"] if chains else chains_by_table(nft or "")
    legacy_chains = chains["legacy"] if chains else chains_by_table(legacy or "")
    nft_hint = [c for c in nft_chains.get("mangle", []) if c in KUBELET_HINT_CHAINS]
    if nft_hint:
        return "nft", f"{nft_hint[0]} chain in the nf_tables mangle table"
    legacy_hint = [c for chains in legacy_chains.values() for c in chains if c in KUBELET_HINT_CHAINS]
    if legacy_hint:
        return "legacy", f"{legacy_hint[0]} chain in the legacy tables"
    n_legacy, n_nft = _rule_lines(legacy), _rule_lines(nft)
    if n_legacy > n_nft:
        return "legacy", f"no kubelet hint chain; legacy has more rules ({n_legacy} > {n_nft})"
    return "nft", f"no kubelet hint chain; nf_tables has at least as many rules ({n_nft} >= {n_legacy})"


def _ipvs(state: NodeState) -> tuple[bool | None, str]:
    ip_vs = state.facts.get("proc-net-ip_vs.txt")
    if ip_vs is not None and ip_vs.present:
        return True, "/proc/net/ip_vs present (ip_vs loaded)"
    modules = state.text("proc-modules.txt")
    builtin = state.text("modules-builtin.txt")
    if modules is not None and re.search(r"^ip_vs\s", modules, re.M):
        return True, "ip_vs listed in /proc/modules"
    if builtin is not None and "/ip_vs.ko" in builtin:
        return True, "ip_vs built into the kernel (modules.builtin)"
    if ip_vs is not None and ip_vs.error and "no such file" not in ip_vs.error.lower():
        return None, f"/proc/net/ip_vs not read: {ip_vs.error}"
    if ip_vs is not None or state.transport == "bundle":
        # a bundle without the file is the collector's way of saying "absent on the node"
        detail = "/proc/net/ip_vs absent"
        if modules is None:
            detail += ", no /proc/modules"
        if builtin is not None:
            detail += ", not in modules.builtin"
        return False, detail
    return None, "not collected"


def _nft_tables(state: NodeState) -> list[tuple[str, str]]:
    """(family, name) of each table in nft-ruleset.json, read by the one light nft reader."""
    found = parse_nft_structure(state.text("nft-ruleset.json"))
    return list(found.tables) if found is not None else []


def _sysctls(text: str | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in (text or "").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key.strip()] = value.strip()
    return out


def _conntrack_stats(text: str | None) -> dict[str, int]:
    totals: dict[str, int] = {}
    for token in (text or "").split():
        key, sep, value = token.partition("=")
        if sep and key != "cpu" and value.isdecimal():
            totals[key] = totals.get(key, 0) + int(value)
    return totals


def _json_fact(text: str | None, read: Callable[[Any], bool | None]) -> bool | None:
    """`read` of the JSON document `text`; None when the file is absent or not JSON."""
    if text is None:
        return None
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return read(doc)


def _kube_ipvs0(text: str | None) -> bool | None:
    return _json_fact(text, lambda links: any(
        isinstance(link, dict) and link.get("ifname") == "kube-ipvs0" for link in links or []))


def _healthz(text: str | None) -> bool | None:
    def healthy(doc: Any) -> bool | None:
        value = doc.get("healthy") if isinstance(doc, dict) else None
        return value if isinstance(value, bool) else None

    return _json_fact(text, healthy)


def summarize(state: NodeState) -> NodeSummary:
    version_text = (state.text("iptables-version.txt") or "").strip()
    match = _VERSION.search(version_text)
    backend = None
    if match:
        backend = "nf_tables" if match.group(2) == "nf_tables" else "legacy"
    texts = _backend_texts(state, backend)
    decls = {b: declared(t or "") for b, t in texts.items()}  # once per dump: they can be 35 MB each
    chains = {b: {table: list(names) for table, names in tables.items()} for b, tables in decls.items()}
    with_kube = tuple(b for b in ("legacy", "nf_tables")
                      if any(c.startswith("KUBE-") for names in decls[b].values() for c in names))
    with_proxy = tuple(b for b in ("legacy", "nf_tables") if any("KUBE-SERVICES" in names for names in decls[b].values()))
    mode, reason = wrapper_detection(texts["nf_tables"], texts["legacy"], chains)
    tables = _nft_tables(state)
    firewall = [f"nft table {f} {n}" for f, n in tables if n in FIREWALL_NFT_TABLES]
    for backend_name in texts:
        for table, chains_of in chains[backend_name].items():
            prefixes = sorted({p for c in chains_of if c.startswith(FIREWALL_CHAIN_PREFIXES)
                               for p in FIREWALL_CHAIN_PREFIXES if c.startswith(p)})  # fmt: skip
            firewall += [f"{backend_name} {table}: {p}* chains" for p in prefixes]
    ipvs, ipvs_why = _ipvs(state)
    ipvsadm = state.text("ipvsadm-save.txt")
    ct = state.text("conntrack-services.txt")
    return NodeSummary(
        kernel=(state.text("uname-r.txt") or "").strip() or None,
        iptables_version=match.group(1) if match else None,
        iptables_backend=backend,
        backends_with_kube_chains=with_kube,
        backends_with_kube_proxy_rules=with_proxy,
        wrapper_mode=mode,
        wrapper_reason=reason,
        legacy_tables_loaded=tuple((state.text("ip_tables_names.txt") or "").split()),
        ipvs_available=ipvs,
        ipvs_evidence=ipvs_why,
        ipvs_virtual_services=None if ipvsadm is None else sum(1 for line in ipvsadm.splitlines()
                                                                if line.startswith("-A"))  # fmt: skip
        ,
        kube_ipvs0=_kube_ipvs0(state.text("ip-addr.json")),
        nft_tables=tuple(f"{f} {n}" for f, n in tables),
        nft_kube_proxy_tables=tuple(f"{f} {n}" for f, n in tables if n == "kube-proxy"),
        host_firewall=tuple(firewall),
        filter_policies=MappingProxyType(
            {b: MappingProxyType(_builtin_policies(decls[b])) for b, t in texts.items() if t and "*filter" in t}
        ),
        kube_proxy_surfaces=MappingProxyType(
            {s: state.text(f"kube-proxy/{s}.{'json' if s in ('healthz', 'configz') else 'txt'}") is not None
             for s in SURFACES}  # fmt: skip
        ),
        proxy_mode=(state.text("kube-proxy/proxyMode.txt") or "").strip() or None,
        healthz_healthy=_healthz(state.text("kube-proxy/healthz.json")),
        sysctls=MappingProxyType(_sysctls(state.text("sysctl.txt"))),
        conntrack_service_entries=None if ct is None else len(ct.splitlines()),
        conntrack_stats=MappingProxyType(_conntrack_stats(state.text("conntrack-stats.txt"))),
        unavailable=MappingProxyType({k: f.error or "not collected" for k, f in state.facts.items() if not f.present}),
        truncated=tuple(k for k, f in state.facts.items() if f.truncated),
    )
