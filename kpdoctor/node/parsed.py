"""Parsers for the small node facts the checks read (everything except the big rule dumps).

Each parser takes the text a node printed and returns a plain value; none raises
on odd input, because a node that prints something unexpected is a finding to
explain, not a crash of the whole scan. `ParsedNode` caches the parsed views of
one NodeState so ten checks asking for the sysctls parse them once.
kube-proxy's HTTP bodies (/metrics, /healthz, /configz) are read by `kpdoctor.node.kube_proxy_http`,
conntrack output by `kpdoctor.node.conntrack_text`.

The full iptables/nft/IPVS parsers that build the semantic view live in
`kpdoctor.dataplane`; the light `IptablesView` reader here (and the light
`NftTables` reader in `kpdoctor.dataplane.nft_structure`) only answer structural
questions (which chains exist, policies, the order of the rules in a built-in
chain) that the firewall, backend-split and leftover checks ask.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Generic, TypeVar, overload

from kpdoctor.cluster.config import KubeProxyConfig
from kpdoctor.dataplane.chain_owners import kube_proxy_chains
from kpdoctor.dataplane.iptables_save import IptablesDump, parse_iptables_save
from kpdoctor.dataplane.nft_structure import NftTables, parse_nft_structure
from kpdoctor.node.conntrack_text import parse_conntrack_entries, parse_conntrack_stats
from kpdoctor.node.kube_proxy_http import Healthz, parse_configz, parse_healthz, parse_metrics
from kpdoctor.node.state import NodeState

_T = TypeVar("_T")

# ---------------------------------------------------------------------------- sysctl


def parse_sysctl(text: str | None) -> dict[str, str]:
    """`key = value` lines as `sysctl` prints them; keys also accepted in /proc/sys path form."""
    out: dict[str, str] = {}
    for line in (text or "").splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            key, sep, value = line.partition(":")
        if not sep:
            continue
        key = key.strip().lstrip("/").replace("/", ".")
        if key.startswith("proc.sys."):
            key = key[len("proc.sys.") :]
        if key:
            out[key] = value.strip()
    return out


def sysctl_int(values: Mapping[str, str], key: str) -> int | None:
    raw = values.get(key)
    if raw is None:
        return None
    try:
        return int(raw.split()[0])
    except (ValueError, IndexError):
        return None


# --------------------------------------------------------------------------- kernel


def _module_name(name: str) -> str:
    """Kernel module names treat '-' and '_' alike; normalise to '_'."""
    return name.strip().replace("-", "_")


def parse_proc_modules(text: str | None) -> set[str]:
    """Names of loaded modules (first column of /proc/modules)."""
    return {_module_name(line.split()[0]) for line in (text or "").splitlines() if line.split()}


def parse_modules_builtin(text: str | None) -> set[str]:
    """Names of built-in modules from `modules.builtin` (paths like kernel/net/netfilter/ipvs/ip_vs.ko)."""
    names: set[str] = set()
    for line in (text or "").splitlines():
        line = line.strip()
        if not line:
            continue
        base = line.rsplit("/", 1)[-1]
        for suffix in (".ko.xz", ".ko.zst", ".ko.gz", ".ko"):
            if base.endswith(suffix):
                base = base[: -len(suffix)]
                break
        names.add(_module_name(base))
    return names


def parse_lines(text: str | None) -> set[str]:
    """One name per line (/proc/net/ip_tables_names, _matches, _targets)."""
    return {line.strip() for line in (text or "").splitlines() if line.strip()}


@dataclass(frozen=True, slots=True)
class IptablesVersion:
    version: tuple[int, ...]
    backend: str  # "nf_tables" | "legacy" | "" (unknown)
    raw: str


_IPT_VERSION = re.compile(r"v(\d+(?:\.\d+)*)\s*(?:\((\w+)\))?")


def parse_iptables_version(text: str | None) -> IptablesVersion | None:
    """`iptables v1.8.9 (nf_tables)`; versions before 1.8 print no backend and are legacy."""
    if not text or not text.strip():
        return None
    match = _IPT_VERSION.search(text)
    if match is None:
        return None
    version = tuple(int(p) for p in match.group(1).split("."))
    backend = match.group(2) or ("legacy" if version < (1, 8) else "")
    return IptablesVersion(version, backend, text.strip())


_RELEASE = re.compile(r"^(\d+)\.(\d+)(?:\.(\d+))?")


def parse_kernel_release(text: str | None) -> tuple[int, int, int] | None:
    match = _RELEASE.match((text or "").strip())
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2)), int(match.group(3) or 0)


_NFT_VERSION = re.compile(r"nftables v(\d+)\.(\d+)(?:\.(\d+))?")


def parse_nft_version(text: str | None) -> tuple[int, int, int] | None:
    """`nftables v1.0.6 (Lester Gooch #5)` (from `nft --version`) or the JSON metainfo version."""
    match = _NFT_VERSION.search(text or "")
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2)), int(match.group(3) or 0)


# ------------------------------------------------------------------------ addresses


@dataclass(frozen=True, slots=True)
class Interface:
    name: str
    kind: str  # link_info.info_kind when shown (bridge, veth, dummy), else link_type
    flags: tuple[str, ...]
    addresses: tuple[tuple[str, int, str], ...]  # (address, prefixlen, scope)
    master: str = ""


def parse_ip_addr(text: str | None) -> list[Interface]:
    """`ip -j addr` (optionally `-d` for link kinds)."""
    if not text or not text.strip():
        return []
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        return []
    out: list[Interface] = []
    for link in doc if isinstance(doc, list) else []:
        if not isinstance(link, dict) or "ifname" not in link:
            continue
        info = link.get("linkinfo") or {}
        kind = str(info.get("info_kind") or link.get("link_type") or "")
        addrs = tuple(
            (str(a.get("local")), int(a.get("prefixlen", 0)), str(a.get("scope", "")))
            for a in link.get("addr_info") or ()
            if isinstance(a, dict) and a.get("local")
        )
        out.append(
            Interface(
                name=str(link["ifname"]),
                kind=kind,
                flags=tuple(str(f) for f in link.get("flags") or ()),
                addresses=addrs,
                master=str(link.get("master") or ""),
            )
        )
    return out


# ----------------------------------------------------------- light iptables structure


@dataclass(frozen=True, slots=True)
class IptRule:
    table: str
    chain: str
    index: int  # position in its chain, 0-based
    line: str  # as printed by iptables-save ("-A CHAIN ...")
    lineno: int

    @property
    def target(self) -> str:
        tokens = self.line.split()
        for i, tok in enumerate(tokens):
            if tok in ("-j", "--jump", "-g", "--goto") and i + 1 < len(tokens):
                return tokens[i + 1]
        return ""

    def addresses_within(self, networks: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
        """A `-s`/`-d` of this rule is a network that holds one of `networks` (e.g. a pod CIDR): what a host
        firewall's ACCEPT for pod traffic looks like (KP-NODEPORT-FIREWALL and the mode-switch gate)."""
        nets = list(networks)
        tokens = self.line.split()
        for i, tok in enumerate(tokens[:-1]):
            if tok in ("-s", "-d"):
                try:
                    net = ipaddress.ip_network(tokens[i + 1], strict=False)
                except ValueError:
                    continue
                if any(c.version == net.version and c.subnet_of(net) for c in nets):  # type: ignore[arg-type]
                    return True
        return False


@dataclass(frozen=True)
class IptablesView:
    """Tables -> chains (with policy) and rules in order, from `iptables-save` text."""

    policies: Mapping[str, Mapping[str, str]]  # table -> chain -> policy ("-" for user chains)
    rules: Mapping[str, Mapping[str, tuple[IptRule, ...]]]  # table -> chain -> rules

    def chains(self, table: str | None = None) -> set[str]:
        tables = [table] if table else list(self.policies)
        return {c for t in tables for c in self.policies.get(t, {})}

    def kube_chains(self) -> dict[str, list[str]]:
        """kube-proxy's KUBE-* chains per table (the kubelet's excluded: `kpdoctor.dataplane.chain_owners`)."""
        out: dict[str, list[str]] = {}
        for table, chains in self.policies.items():
            names = sorted(kube_proxy_chains(table, chains))
            if names:
                out[table] = names
        return out

    def chain_rules(self, table: str, chain: str) -> tuple[IptRule, ...]:
        return self.rules.get(table, {}).get(chain, ())

    def walk(self, table: str, chain: str, depth: int = 0) -> Iterator[IptRule]:
        """Rules of a built-in chain in evaluation order, descending into non-KUBE user chains (5 levels at most).

        What a host firewall puts before kube-proxy's jumps: read by KP-NODEPORT-FIREWALL and the mode-switch
        gate's host-firewall condition."""
        for rule in self.chain_rules(table, chain):
            target = rule.target
            yield rule
            if depth < 5 and target and not target.startswith("KUBE-") and self.policies.get(table, {}).get(target) == "-":
                yield from self.walk(table, target, depth + 1)

    @property
    def rule_count(self) -> int:
        return sum(len(r) for chains in self.rules.values() for r in chains.values())

    @property
    def empty(self) -> bool:
        return not self.policies


class ChainRules(Mapping[str, tuple[IptRule, ...]]):
    """One table's rules per chain of a parsed dump (`kpdoctor.dataplane.iptables_save`), as `IptRule`s built on
    first access.

    Chains iterate in the order of their first rule, as the light parser inserts them."""

    def __init__(self, table: str, chains: Mapping[str, Any]) -> None:
        self._table = table
        self._chains = chains
        self._built: dict[str, tuple[IptRule, ...]] = {}
        self._order: list[str] | None = None

    def __getitem__(self, chain: str) -> tuple[IptRule, ...]:
        found = self._built.get(chain)
        if found is None:
            ch = self._chains.get(chain)
            if ch is None or not ch.idx:
                raise KeyError(chain)
            src = ch.src
            table = self._table
            if ch.overrides:  # rules saved with counters: the view's line is the rule without them
                found = tuple(IptRule(table, chain, n, r.text.partition(" ")[2] if r.counters else r.text.strip(), r.line)
                              for n, r in enumerate(ch.rules(table)))
            else:
                found = tuple(IptRule(table, chain, n, src[i].strip(), i + 1) for n, i in enumerate(ch.idx))
            self._built[chain] = found
        return found

    def __iter__(self) -> Iterator[str]:
        if self._order is None:
            with_rules = [(ch.idx[0], name) for name, ch in self._chains.items() if ch.idx]
            self._order = [name for _, name in sorted(with_rules)]
        return iter(self._order)

    def __len__(self) -> int:
        return sum(1 for ch in self._chains.values() if ch.idx)


def view_of_dump(dump: IptablesDump) -> IptablesView:
    """The structure view of a parsed dump (the scan derives its `LightDump` the same way: node/dumps.py)."""
    return IptablesView(
        policies={name: {c: ch.policy for c, ch in t.chains.items()} for name, t in dump.tables.items()},
        rules={name: ChainRules(name, t.chains) for name, t in dump.tables.items()},
    )


def parse_iptables_view(text: str | None, source: str = "<iptables-save>") -> IptablesView:
    """`iptables-save` text -> its structure, read by the one iptables-save parser in its lenient mode: what that
    parser rejects is left out of the view (see `parse_iptables_save(lenient=True)`), never raised."""
    return view_of_dump(parse_iptables_save(text or "", source, lenient=True))


# -------------------------------------------------------------------------- IPVS / ipset


def ipvs_virtual_servers(text: str | None) -> list[str]:
    """`-A -t/-u/-s/-f ...` lines of `ipvsadm --save -n` (virtual servers only)."""
    return [line.strip() for line in (text or "").splitlines() if line.strip().startswith("-A ")]


def ipset_names(text: str | None) -> list[str]:
    """Set names of `ipset list` (or `ipset save`) output."""
    names = []
    for line in (text or "").splitlines():
        if line.startswith("Name:"):
            names.append(line.split(":", 1)[1].strip())
        elif line.startswith("create "):
            parts = line.split()
            if len(parts) > 1:
                names.append(parts[1])
    return names


# ---------------------------------------------------------------------- one node, cached


class FactAttribute(Generic[_T]):
    """A `ParsedNode` attribute computed once: `parse` of one fact's text, None only when the fact was not
    collected (an empty file still parses, so checks can tell 'not collected' from 'collected, nothing in it').
    Like `functools.cached_property`, the value is stored in the instance on first access."""

    def __init__(self, key: str, parse: Callable[[str], _T]) -> None:
        self.key = key
        self.parse = parse
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> FactAttribute[_T]: ...
    @overload
    def __get__(self, obj: ParsedNode, owner: type | None = None) -> _T | None: ...
    def __get__(self, obj: ParsedNode | None, owner: type | None = None) -> FactAttribute[_T] | _T | None:
        if obj is None:
            return self
        value = obj.parsed_fact(self.key, self.parse)
        obj.__dict__[self.name] = value
        return value


@dataclass
class ParsedNode:
    """Lazily parsed facts of one node; build one per node (node checks get theirs as `NodeCheckContext.parsed`)."""

    state: NodeState
    _extra: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.state.name

    def has(self, key: str) -> bool:
        return self.state.text(key) is not None

    def parsed_fact(self, key: str, parse: Callable[[str], _T]) -> _T | None:
        """`parse` of the fact's text; None only when the fact was not collected (an empty file still parses,
        so checks can tell 'not collected' from 'collected, nothing in it')."""
        text = self.state.text(key)
        return None if text is None else parse(text)

    @cached_property
    def sysctl(self) -> dict[str, str]:
        return parse_sysctl(self.state.text("sysctl.txt"))

    loaded_modules = FactAttribute("proc-modules.txt", parse_proc_modules)
    builtin_modules = FactAttribute("modules-builtin.txt", parse_modules_builtin)
    ip_tables_names = FactAttribute("ip_tables_names.txt", parse_lines)
    ip_tables_matches = FactAttribute("ip_tables_matches.txt", parse_lines)
    ip_tables_targets = FactAttribute("ip_tables_targets.txt", parse_lines)

    @cached_property
    def iptables_version(self) -> IptablesVersion | None:
        return parse_iptables_version(self.state.text("iptables-version.txt"))

    @cached_property
    def kernel(self) -> tuple[int, int, int] | None:
        return parse_kernel_release(self.state.text("uname-r.txt"))

    @cached_property
    def nft_version(self) -> tuple[int, int, int] | None:
        found = parse_nft_version(self.state.text("nft-version.txt"))
        if found is None and self.nft is not None and self.nft.version:
            found = parse_kernel_release(self.nft.version)
        return found

    metrics = FactAttribute("kube-proxy/metrics.txt", parse_metrics)

    @cached_property
    def healthz(self) -> Healthz | None:
        return parse_healthz(self.state.text("kube-proxy/healthz.json"))

    @cached_property
    def configz(self) -> KubeProxyConfig | None:
        return parse_configz(self.state.text("kube-proxy/configz.json"))

    proxy_mode = FactAttribute("kube-proxy/proxyMode.txt", str.strip)
    conntrack_stats = FactAttribute("conntrack-stats.txt", parse_conntrack_stats)
    conntrack_entries = FactAttribute("conntrack-services.txt", parse_conntrack_entries)
    interfaces = FactAttribute("ip-addr.json", parse_ip_addr)

    def iptables(self, key: str) -> IptablesView | None:
        """A light parse of one iptables dump fact (`iptables-save.txt`, `iptables-legacy-save.txt`, ...)."""
        cache_key = "ipt:" + key
        if cache_key not in self._extra:
            self._extra[cache_key] = self.parsed_fact(key, parse_iptables_view)
        found: IptablesView | None = self._extra[cache_key]
        return found

    @cached_property
    def nft(self) -> NftTables | None:
        return parse_nft_structure(self.state.text("nft-ruleset.json"))

    ipvs_services = FactAttribute("ipvsadm-save.txt", ipvs_virtual_servers)
    ipsets = FactAttribute("ipset-list.txt", ipset_names)

    def addresses(self, family: int = 4) -> list[str]:
        out = []
        for iface in self.interfaces or ():
            for addr, _plen, scope in iface.addresses:
                if (":" in addr) == (family == 6) and scope != "host" and not addr.startswith("fe80:"):
                    out.append(addr)
        return out

