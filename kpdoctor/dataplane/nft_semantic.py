"""A parsed kube-proxy nftables table -> the mode-independent `SemanticView`.

Reads what kube-proxy's nftables mode dispatches on: the `service-ips` /
`service-nodeports` verdict maps, the `no-endpoint-*` maps (reject / drop),
`firewall-ips` with its `firewall-…` chains, and the service / local /
external / endpoint chains behind them. Works for every layout kube-proxy has
written since v1.31: inline `dnat ip to numgen … map { … }` (v1.36) as well as
`numgen … vmap { … : goto endpoint-… }` with per-endpoint chains.

External IPs and LoadBalancer IPs are indistinguishable in nftables rules (both
are `service-ips` entries pointing at the `external-` chain); pass
`address_kinds` (e.g. from the expected view) to label them, otherwise an
address that appears in `firewall-ips` is a load balancer and any other an
external IP.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass

from kpdoctor.dataplane import semantic as sem
from kpdoctor.dataplane.nft import NftChain, NftRuleset, NftSet, NftTable
from kpdoctor.dataplane.semantic import Frontend, FrontendView, SemanticView

KUBE_PROXY_TABLE = "kube-proxy"
_PREFIXES = ("service-", "local-", "external-", "firewall-", "endpoint-")
_INLINE_DNAT = re.compile(r"\bdnat (?:ip6? )?to numgen \w+ mod \d+(?: offset \d+)? map \{ (?P<body>[^}]*) \}")
_SIMPLE_DNAT = re.compile(r"\bdnat (?:ip6? )?to (?P<target>\S+)")
_VMAP = re.compile(r"\bnumgen \w+ mod \d+(?: offset \d+)? vmap \{ (?P<body>[^}]*) \}")
_AFFINITY = re.compile(r"^ip6? saddr @(?P<set>\S+) goto (?P<chain>\S+)$")
_UPDATE = re.compile(r"\bupdate @(?P<set>\S+) \{")
_UNCONDITIONAL = re.compile(r"^(?:goto|jump) (?P<chain>\S+)$")
_SOURCE_FILTER = re.compile(r"^ip6? saddr != (?:\{ (?P<set>[^}]*) \}|(?P<one>\S+)) drop$")
# an `external-` chain's short-circuit: `ip saddr <cluster CIDR>` / `iifname ...` (pods) or `fib saddr type local`
# (the node) followed by a goto/jump to the `service-` chain
_SHORT_CIRCUIT = re.compile(r"^(?!meta mark )(?P<cond>\S.*?) (?:goto|jump) (?P<chain>\S+)$")


def _endpoint(ip: str, port: str) -> str:
    ip = ip.strip().strip("[]")
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _split_target(target: str) -> str:
    """`10.0.0.1:80` / `[fd00::1]:80` -> canonical `ip:port`."""
    if target.startswith("["):
        ip, _, port = target[1:].partition("]:")
        return _endpoint(ip, port)
    ip, _, port = target.rpartition(":")
    return _endpoint(ip, port)


def service_of_chain(chain: str) -> str:
    """`service-ULMVA6XW-ns1/svc1/tcp/p80` -> `ns1/svc1:p80` (ServicePortName)."""
    for prefix in _PREFIXES:
        if chain.startswith(prefix):
            chain = chain[len(prefix):]
            break
    base = chain.split("-", 1)[1] if "-" in chain else chain
    base = base.split("__", 1)[0]
    parts = base.split("/")
    if len(parts) >= 4:
        ns, name, port = parts[0], parts[1], "/".join(parts[3:])
        return f"{ns}/{name}:{port}" if port else f"{ns}/{name}"
    return base


@dataclass(frozen=True)
class _Resolved:
    endpoints: frozenset[str]
    affinity_seconds: int


class _Extractor:
    def __init__(self, table: NftTable) -> None:
        self.table = table
        self.cache: dict[str, _Resolved] = {}

    def set_(self, name: str) -> NftSet | None:
        return self.table.sets.get(name)

    def resolve(self, chain_name: str, depth: int = 0) -> _Resolved:
        """Where a new connection that enters `chain_name` is DNATed (not counting short-circuits)."""
        cached = self.cache.get(chain_name)
        if cached is not None:
            return cached
        chain = self.table.chains.get(chain_name)
        endpoints: set[str] = set()
        affinity = 0
        if chain is not None and depth < 8:
            for rule in chain.rules:
                text = rule.text
                m = _INLINE_DNAT.search(text)
                if m:
                    for entry in m.group("body").split(","):
                        _, _, value = entry.partition(" : ")
                        ip, _, port = value.strip().rpartition(" . ")
                        if ip:
                            endpoints.add(_endpoint(ip, port))
                    continue
                m = _VMAP.search(text)
                if m:
                    for entry in m.group("body").split(","):
                        target = entry.partition(" : ")[2].split()
                        if len(target) == 2 and target[0] in ("goto", "jump"):
                            sub = self.resolve(target[1], depth + 1)
                            endpoints |= sub.endpoints
                            affinity = max(affinity, sub.affinity_seconds)
                    continue
                m = _AFFINITY.match(text)
                if m:
                    affinity = max(affinity, self._timeout(m.group("set")))
                    continue
                m = _UPDATE.search(text)
                if m:
                    affinity = max(affinity, self._timeout(m.group("set")))
                m = _SIMPLE_DNAT.search(text)
                if m:
                    endpoints.add(_split_target(m.group("target")))
                    continue
                m = _UNCONDITIONAL.match(text)
                if m and m.group("chain") != "mark-for-masquerade":
                    sub = self.resolve(m.group("chain"), depth + 1)
                    endpoints |= sub.endpoints
                    affinity = max(affinity, sub.affinity_seconds)
                    if text.startswith("goto"):
                        break
        resolved = _Resolved(frozenset(endpoints), affinity)
        self.cache[chain_name] = resolved
        return resolved

    def short_circuit(self, chain_name: str) -> frozenset[str] | None:
        """Where the conditional gotos of an `external-` chain send pods / the node (None: it has none)."""
        chain = self.table.chains.get(chain_name) if chain_name.startswith("external-") else None
        if chain is None:
            return None
        found: set[str] | None = None
        for rule in chain.rules:
            m = _SHORT_CIRCUIT.match(rule.text)
            if m and m.group("chain") != "mark-for-masquerade":
                found = (found or set()) | self.resolve(m.group("chain")).endpoints
        return frozenset(found) if found is not None else None

    def _timeout(self, set_name: str) -> int:
        s = self.set_(set_name)
        return s.timeout or 0 if s is not None else 0

    def source_ranges(self, chain: NftChain | None) -> frozenset[str]:
        """CIDRs of `ip saddr != { … } drop` (kube-proxy's allowFromNode adds the VIPs themselves as /32)."""
        if chain is None:
            return frozenset()
        out: set[str] = set()
        for rule in chain.rules:
            m = _SOURCE_FILTER.match(rule.text)
            if not m:
                continue
            items = (m.group("set") or m.group("one") or "").split(",")
            for item in items:
                item = item.strip()
                if not item:
                    continue
                try:
                    out.add(str(ipaddress.ip_network(item, strict=False)))
                except ValueError:
                    out.add(item)
        return frozenset(out)


def _port(text: str) -> int | None:
    try:
        value = int(text)
    except ValueError:
        return None
    return value if 0 <= value <= 65535 else None


def _verdict_target(value: str | None) -> str | None:
    if value and value.split()[0] in ("goto", "jump") and len(value.split()) == 2:
        return value.split()[1]
    return None


def semantic_view(
    ruleset: NftRuleset,
    family: str = "IPv4",
    *,
    address_kinds: Mapping[str, str] | None = None,
    table_name: str = KUBE_PROXY_TABLE,
) -> SemanticView:
    """The frontends kube-proxy's nftables table serves for one IP family (empty when there is no table)."""
    nft_family = "ip6" if family == "IPv6" else "ip"
    table = ruleset.table(nft_family, table_name)
    if table is None:
        return SemanticView.of(())
    ex = _Extractor(table)

    def elements(name: str) -> list[tuple[tuple[str, ...], str | None, str | None]]:
        s = table.sets.get(name)
        return [(e.key, e.value, e.comment) for e in s.elements] if s else []

    cluster_ips = {k[0] for k, _, _ in elements("cluster-ips")}
    check = table.chains.get("cluster-ips-check")
    rejects_cluster_ips = check is not None and any(r.text.startswith("ip daddr @cluster-ips reject") or
                                                    r.text.startswith("ip6 daddr @cluster-ips reject")
                                                    for r in check.rules)
    firewall: dict[tuple[str, str, str], str] = {}
    for key, value, _ in elements("firewall-ips"):
        target = _verdict_target(value)
        if len(key) == 3 and target:
            firewall[(key[0], key[1], key[2])] = target

    def kind_of(addr: str, proto: str, port: str) -> str:
        if addr in cluster_ips:
            return sem.CLUSTER_IP
        if address_kinds and addr in address_kinds:
            return address_kinds[addr]
        return sem.LOAD_BALANCER if (addr, proto, port) in firewall else sem.EXTERNAL_IP

    views: dict[Frontend, FrontendView] = {}

    def add(fe: Frontend, service: str, target_chain: str | None, verdict_value: str | None) -> None:
        if target_chain is not None:
            # a firewall only matters on the path that reaches endpoints (a rejected frontend has no ranges)
            fw_chain = firewall.get((fe.address, fe.protocol.lower(), str(fe.port))) if fe.address else None
            source_ranges = ex.source_ranges(table.chains.get(fw_chain)) if fw_chain else frozenset()
            res = ex.resolve(target_chain)
            internal = ex.short_circuit(target_chain)
            previous = views.get(fe)
            if previous is not None and previous.verdict != sem.DNAT and not res.endpoints:
                return  # a no-endpoint verdict already says what happens
            if res.endpoints:
                views[fe] = FrontendView(fe, service, sem.DNAT, res.endpoints, res.affinity_seconds, source_ranges,
                                         internal if internal != res.endpoints else None)
                return
            # Nothing DNATs traffic that does not short-circuit (unless a no-endpoint element below says
            # otherwise): a node port is delivered to the node, where nothing listens (reset / port
            # unreachable); a cluster IP is rejected by `cluster-ips-check`; other IPs are routed on.
            if fe.kind == sem.NODE_PORT or (fe.kind == sem.CLUSTER_IP and rejects_cluster_ips):
                verdict = sem.REJECT
            else:
                verdict = sem.DROP
            views[fe] = FrontendView(fe, service, verdict, frozenset(), 0, source_ranges, internal or None)
            return
        verdict = sem.REJECT if verdict_value and "reject" in verdict_value else sem.DROP
        previous = views.get(fe)
        if previous is not None and previous.endpoints:
            return
        # eTP=Local without local endpoints: the external chain exists (short-circuits) and the firewall
        # still guards it; keep the ranges and the short-circuit found on that path
        ranges = previous.source_ranges if previous is not None else frozenset()
        internal = previous.internal_endpoints if previous is not None else None
        views[fe] = FrontendView(fe, service or (previous.service if previous else ""), verdict, frozenset(), 0, ranges,
                                 internal)

    for key, value, _ in elements("service-ips"):
        target = _verdict_target(value)
        if len(key) != 3 or not target or _port(key[2]) is None:
            continue
        addr, proto, port = key
        fe = Frontend(kind_of(addr, proto, port), addr, int(port), proto.upper())
        add(fe, service_of_chain(target), target, None)
    for key, value, _ in elements("service-nodeports"):
        target = _verdict_target(value)
        if len(key) != 2 or not target or _port(key[1]) is None:
            continue
        fe = Frontend(sem.NODE_PORT, "", int(key[1]), key[0].upper())
        add(fe, service_of_chain(target), target, None)
    for key, value, comment in elements("no-endpoint-services"):
        if len(key) != 3 or _port(key[2]) is None:
            continue
        addr, proto, port = key
        fe = Frontend(kind_of(addr, proto, port), addr, int(port), proto.upper())
        add(fe, comment or "", None, value)
    for key, value, comment in elements("no-endpoint-nodeports"):
        if len(key) != 2 or _port(key[1]) is None:
            continue
        add(Frontend(sem.NODE_PORT, "", int(key[1]), key[0].upper()), comment or "", None, value)
    return SemanticView.of(views.values())
