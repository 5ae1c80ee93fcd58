"""KP-NODEPORT-FIREWALL: nothing on the node stops NodePort traffic before kube-proxy handles it.

A NodePort packet meets the host's own netfilter before and after kube-proxy's
DNAT: raw/mangle PREROUTING (before any DNAT, every mode), filter INPUT (health
check node ports, and NodePorts in IPVS mode), filter FORWARD (the DNATed packet
on its way to a pod on another node). A DROP there - or a FORWARD policy DROP
with no KUBE-FORWARD accept - makes a NodePort time out although every kube-proxy
rule is right. In nftables, an accept in kube-proxy's table never overrides a
drop in another table's base chain on the same hook.

Also here: `nodePortAddresses` that matches none of the node's addresses (no
NodePorts served at all), eTP=Local Services without local endpoints (an
expected drop, explained, not alarmed), health-check node port answers, and -
when `kpdoctor scan --probe` ran - the active probe results.

Probe results (`ctx.options.probe`, written by the scan command; a bare bool
means probing was requested but no results were attached): a list of dicts
    {"node": "edge-1", "address": "10.81.0.2", "port": 31130, "protocol": "TCP",
     "kind": "node-port" | "health-check", "service": "payments/billing:https",
     "result": "open" | "refused" | "timeout" | "error", "detail": "...",
     "elapsed": 0.012, "http_status": 503}
"refused" = RST / ICMP port unreachable (a REJECT rule: no endpoints, or nothing
listening); "timeout" = filtered (a DROP: host firewall, cloud security group,
or eTP=Local on a node without local endpoints).
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

from kpdoctor.checks._common import KUBE_PROXY_DOCS, service_subject, unknown_kube_proxy
from kpdoctor.cluster.kube_proxy_node import is_proxy_mode
from kpdoctor.dataplane.iptables_delete import iptables_delete
from kpdoctor.dataplane.semantic import DNAT, DROP, NODE_PORT
from kpdoctor.findings import Finding, Severity
from kpdoctor.node.parsed import IptablesView, IptRule, ParsedNode
from kpdoctor.node_context import NodeCheck, NodeCheckContext
from kpdoctor.node_only import is_node_only
from kpdoctor.proxier.serviceport import IPV4, all_service_ports
from kpdoctor.shellcmd import Lit, Name, command

DEFAULT_RANGE = (30000, 32767)
LISTED = 10  # eTP=Local NodePorts named in the evidence of the one note per node (all in its `services` label)
HC_FACT = "kube-proxy/healthcheck-nodeports.json"


@dataclass(frozen=True)
class PortUse:
    port: int
    protocol: str
    service: str  # ServicePortName
    kind: str  # node-port | health-check
    local_policy: bool


def node_ports_of_rules(dump: IptablesView) -> list[PortUse]:
    """The NodePorts a node serves, from its own nat KUBE-NODEPORTS rules (iptables mode, node-only scans)."""
    out: list[PortUse] = []
    for rule in dump.chain_rules("nat", "KUBE-NODEPORTS"):
        m = read_rule(rule)
        comment = re.search(r'--comment "?([^"\s]+)', rule.line)
        if m.ports and len(m.ports) == 1 and m.ports[0][0] == m.ports[0][1] and m.protocol:
            out.append(PortUse(m.ports[0][0], m.protocol, comment.group(1) if comment else "?", "node-port", False))
    return out


def node_ports(ctx: NodeCheckContext) -> list[PortUse]:
    """Every NodePort and health-check node port of the cluster (the same for every node: once per scan)."""
    return ctx.shared("nodeport-firewall:node-ports", lambda: _node_ports(ctx))


def _node_ports(ctx: NodeCheckContext) -> list[PortUse]:
    out: list[PortUse] = []
    seen_hc: set[int] = set()
    for info in all_service_ports(ctx.cluster, IPV4):
        if info.node_port:
            out.append(PortUse(info.node_port, info.protocol, info.service_port_name, "node-port",
                               info.external_policy_local))
        hc = info.health_check_node_port
        if hc and hc not in seen_hc:
            seen_hc.add(hc)
            out.append(PortUse(hc, "TCP", info.service_port_name, "health-check", True))
    return out


# ---------------------------------------------------------------- iptables rule reading


@dataclass(frozen=True)
class Match:
    protocol: str  # "" = any
    ports: tuple[tuple[int, int], ...] | None  # None = any port
    negated_ports: bool
    restricted: bool  # -s/-d/--src-range/ipset/... : not a blanket rule
    state_new: bool  # applies to new connections
    target: str


def read_rule(rule: IptRule) -> Match:
    tokens = rule.line.split()
    proto, ports, neg, restricted, state_new, target = "", None, False, False, True, ""
    i = 0
    negate_next = False
    while i < len(tokens):
        tok = tokens[i]
        nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
        if tok == "!":
            negate_next = True
            i += 1
            continue
        if tok in ("-p", "--protocol"):
            proto = "" if negate_next else nxt.upper()
        elif tok in ("--dport", "--destination-port", "--dports", "--destination-ports"):
            spans = []
            for part in nxt.split(","):
                lo, _, hi = part.partition(":")
                if lo.isdecimal():
                    spans.append((int(lo), int(hi) if hi.isdecimal() else (65535 if hi == "" and ":" in part
                                                                         else int(lo))))
            ports, neg = tuple(spans), negate_next
        elif tok in ("-s", "--source", "-d", "--destination", "--src-range", "--dst-range", "--match-set",
                     "--mark", "--uid-owner", "--src-type", "--dst-type"):
            restricted = True
        elif tok in ("--ctstate", "--state"):
            states = nxt.split(",")
            state_new = ("NEW" in states) != negate_next
        elif tok in ("-j", "--jump", "-g", "--goto"):
            target = nxt
        negate_next = False
        i += 1
    return Match(proto, ports, neg, restricted, state_new, target)


def covered(match: Match, uses: Iterable[PortUse]) -> list[PortUse]:
    out = []
    for use in uses:
        if match.protocol and match.protocol != use.protocol:
            continue
        if match.ports is not None:
            inside = any(lo <= use.port <= hi for lo, hi in match.ports)
            if inside == match.negated_ports:
                continue
        out.append(use)
    return out


class NodePortFirewall(NodeCheck):
    id = "KP-NODEPORT-FIREWALL"
    title = "NodePorts are not blocked by the host firewall, FORWARD policy or nodePortAddresses"
    severity = Severity.ERROR
    tags = ("nodeport", "firewall", "iptables", "nftables", "ipvs", "common")
    reads = ("iptables-save.txt", "iptables-nft-save.txt", "iptables-legacy-save.txt", "nft-ruleset.json", "ip-addr.json",
             "kube-proxy/")
    requires = ("Service", "EndpointSlice", "Node", "ConfigMap", "DaemonSet", "Pod")
    node_facts_suffice = True
    rationale = (
        "\"NodePort not reachable\" is rarely kube-proxy's rules: a host firewall rule before kube-proxy's jumps, a "
        "FORWARD policy DROP, a cloud security group, or nodePortAddresses excluding the address used."
    )
    remediation = (
        "Allow the NodePort range (default 30000-32767, TCP and UDP) and the health-check node ports in the host "
        "firewall and the cloud security group; keep kube-proxy's FORWARD accept reachable."
    )
    catches = (
        "host firewall before kube-proxy's jumps, FORWARD DROP without KUBE-FORWARD, `nodePortAddresses` "
        "excluding the node, eTP=Local drops (explained), opt-in `--probe` refused vs filtered"
    )
    references = (
        KUBE_PROXY_DOCS,
        "https://kubernetes.io/docs/reference/networking/ports-and-protocols/",
        "https://kubernetes.io/docs/concepts/services-networking/service/#type-nodeport",
        "https://kubernetes.io/docs/tasks/access-application-cluster/create-external-load-balancer/"
        "#preserving-the-client-source-ip",
    )

    def check_node(self, ctx: NodeCheckContext) -> Iterable[Finding]:
        if is_node_only(ctx.cluster):
            yield from self._node_only(ctx)
            return
        uses = node_ports(ctx)
        found = ctx.configured_mode
        if not ctx.kube_proxy_expected or found is None:
            return
        mode, _why, origin = found
        p = ctx.parsed
        if uses:
            for key in ("iptables-save.txt", "iptables-legacy-save.txt"):
                dump = p.iptables(key)
                if dump is not None and not dump.empty:
                    yield from self._iptables(ctx, key, dump, mode, uses)
            yield from self._nft(ctx, p)
        yield from self._addresses(ctx, p, origin.config.effective_node_port_addresses, uses,
                                   origin.origin)
        yield from self._local_policy(ctx, mode)
        yield from self._health_checks(ctx, p, uses)
        yield from self._probe(ctx, mode)

    def _node_only(self, ctx: NodeCheckContext) -> Iterator[Finding]:
        """No Services in the input: the NodePorts are those the node's own KUBE-NODEPORTS rules serve, and the
        FORWARD order is judged as usual; the address, traffic-policy and health-check parts need the cluster."""
        node = ctx.node
        found = ctx.configured_mode
        if found is None:
            yield unknown_kube_proxy(self, ctx)
            return
        mode = found[0]
        p = ctx.parsed
        for key in ("iptables-save.txt", "iptables-legacy-save.txt"):
            dump = p.iptables(key)
            if dump is not None and not dump.empty:
                yield from self._iptables(ctx, key, dump, mode, node_ports_of_rules(dump))
        yield from self._nft(ctx, p)
        yield self.finding(
            ctx, f"Node {node.name}",
            "NodePort addresses, traffic policies and health-check ports not evaluated: they need the cluster's "
            "Services and Nodes (firewall order was checked against the NodePorts in the node's own rules)",
            severity=Severity.INFO, evidence=[f"{found[2].origin}: mode {mode}"], not_evaluated=True,
        )

    # --------------------------------------------------------------------------------------
    def _blocking(self, ctx: NodeCheckContext, key: str, dump: IptablesView, table: str, chain: str,
                  stop_at: str | None, uses: list[PortUse], why: str) -> Iterator[Finding]:
        node = ctx.node
        for rule in dump.walk(table, chain):
            if stop_at and rule.chain == chain and rule.target == stop_at:
                return
            m = read_rule(rule)
            if m.target not in ("DROP", "REJECT") or m.restricted or not m.state_new:
                continue
            hit = covered(m, uses)
            if not hit:
                continue
            ports = sorted({f"{u.port}/{u.protocol}" for u in hit})
            services = sorted({u.service for u in hit})
            save = "iptables-legacy" if "legacy" in key else "iptables"
            yield self.finding(
                ctx,
                f"Node {node.name}",
                f"a host firewall rule in {table} {rule.chain} on node {node.name} {m.target}s "
                f"{', '.join(ports[:6])}{' ...' if len(ports) > 6 else ''} {why} "
                f"(Services {', '.join(services[:4])}{' ...' if len(services) > 4 else ''})",
                severity=Severity.ERROR,
                evidence=[f"{key}:{rule.lineno}: {rule.line}"],
                fix="Allow the NodePort range in the host firewall (or scope the rule to the sources it is meant "
                "for); if a firewall daemon owns the rule, change it there so it does not come back.",
                commands=[iptables_delete(save, table, rule.line, on=node.name, note=", or in the firewall's own config"),
                          command(save, "-t", table, "-L", rule.chain, "-n", "--line-numbers", on=node.name)],
            )

    def _iptables(self, ctx: NodeCheckContext, key: str, dump: IptablesView, mode: str,
                  uses: list[PortUse]) -> Iterator[Finding]:
        node = ctx.node
        before_dnat = "before kube-proxy's DNAT (every NodePort on this node times out)"
        for table in ("raw", "mangle"):
            yield from self._blocking(ctx, key, dump, table, "PREROUTING", None, uses, before_dnat)
        hc = [u for u in uses if u.kind == "health-check"]
        input_uses = uses if mode == "ipvs" else hc
        input_stop = "KUBE-NODEPORTS" if mode == "iptables" else None
        yield from self._blocking(ctx, key, dump, "filter", "INPUT", input_stop, input_uses,
                                  "before kube-proxy accepts them (IPVS NodePorts and health-check node ports answer "
                                  "on INPUT: load balancers mark the node down)")
        # FORWARD: blanket drops before KUBE-FORWARD, and policy DROP without the accept.
        if mode not in ("iptables", "ipvs", "nftables"):
            return
        fwd = dump.chain_rules("filter", "FORWARD")
        policy = dump.policies.get("filter", {}).get("FORWARD", "ACCEPT")
        has_jump = any(r.target == "KUBE-FORWARD" for r in fwd)
        for rule in dump.walk("filter", "FORWARD"):
            if rule.chain == "FORWARD" and rule.target == "KUBE-FORWARD":
                break
            m = read_rule(rule)
            if m.target in ("DROP", "REJECT") and not m.restricted and m.state_new and m.ports is None \
                    and not m.protocol:
                yield self.finding(
                    ctx, f"Node {node.name}",
                    f"filter FORWARD on node {node.name} {m.target}s all forwarded traffic before kube-proxy's "
                    "KUBE-FORWARD accept: NodePort and ClusterIP traffic to pods on other nodes is dropped",
                    severity=Severity.ERROR,
                    evidence=[f"{key}:{rule.lineno}: {rule.line}"],
                    fix="Move the blanket DROP after kube-proxy's jump or accept the pod CIDR before it.",
                    commands=[iptables_delete("iptables", "filter", rule.line, on=node.name)],
                )
                break
        if policy == "DROP" and not has_jump and not self._forward_accepts_pods(ctx, dump):
            evidence = [f"{key}: :FORWARD DROP", f"{key}: no '-j KUBE-FORWARD' in FORWARD"]
            yield self.finding(
                ctx, f"Node {node.name}",
                f"filter FORWARD policy is DROP on node {node.name} and nothing accepts Service traffic there "
                + ("(kube-proxy's '-j KUBE-FORWARD' jump is missing)" if mode == "iptables" else
                   f"({mode} mode adds no iptables accept, and an nftables accept elsewhere cannot override "
                   "this drop)")
                + ": DNATed NodePort/ClusterIP traffic to pods on other nodes is dropped",
                severity=Severity.ERROR,
                evidence=evidence,
                fix="Accept forwarded pod traffic (the CNI usually adds it; Docker sets FORWARD to DROP), or set "
                "the policy to ACCEPT if the node relies on kube-proxy's own filtering.",
                commands=[command("iptables", "-P", "FORWARD", "ACCEPT", on=node.name, note=", or:"),
                          command("iptables", "-I", "FORWARD", "-m", "comment", "--comment", "kubernetes forwarding rules",
                                  "-j", "KUBE-FORWARD", on=node.name,
                                  note=" (iptables mode; kube-proxy re-adds it on its next sync)")],
            )

    @staticmethod
    def _forward_accepts_pods(ctx: NodeCheckContext, dump: IptablesView) -> bool:
        cidrs = []
        for n in () if is_node_only(ctx.cluster) else ctx.cluster.nodes:
            for c in n.pod_cidrs:
                try:
                    cidrs.append(ipaddress.ip_network(c, strict=False))
                except ValueError:
                    continue
        for rule in dump.walk("filter", "FORWARD"):
            if rule.target != "ACCEPT":
                continue
            tokens = rule.line.split()
            if not any(t in ("-s", "-d") for t in tokens) and "--ctstate" not in tokens:
                return True
            if rule.addresses_within(cidrs):
                return True
        return False

    def _nft(self, ctx: NodeCheckContext, p: ParsedNode) -> Iterator[Finding]:
        node = ctx.node
        if p.nft is None:
            return
        for chain in p.nft.base_chains():
            if chain.table == "kube-proxy" or (chain.family, chain.table) in p.nft.xt_tables:
                continue
            if chain.policy == "drop" and chain.hook in ("input", "forward", "prerouting"):
                yield self.finding(
                    ctx, f"Node {node.name}",
                    f"nftables base chain '{chain.family} {chain.table} {chain.name}' (hook {chain.hook}, policy "
                    f"drop) on node {node.name} drops every NodePort/Service packet it does not explicitly accept; "
                    "an accept in kube-proxy's table does not override a drop in another table",
                    severity=Severity.WARNING,
                    evidence=[f"nft-ruleset.json: chain {chain.family} {chain.table} {chain.name} "
                              f"{{ type {chain.type} hook {chain.hook} priority {chain.prio}; policy drop; }}"],
                    fix="Accept the NodePort range (and, for forward, the pod CIDR) in that firewall (firewalld: "
                    "add the ports to the zone; nftables: an accept rule in that chain).",
                    commands=[command("nft", "list", "chain", chain.family, chain.table, chain.name, on=node.name),
                              command("firewall-cmd", "--permanent", "--add-port=30000-32767/tcp",
                                      "--add-port=30000-32767/udp", Lit("&&"), "firewall-cmd", "--reload", on=node.name,
                                      note=", if firewalld owns the table")],
                )

    def _addresses(self, ctx: NodeCheckContext, p: ParsedNode, npa: tuple[str, ...], uses: list[PortUse],
                   origin: str) -> Iterator[Finding]:
        node = ctx.node
        if not npa or not any(u.kind == "node-port" for u in uses):
            return
        api_node = ctx.cluster.node_by_name.get(node.name)
        if api_node is None and "primary" in npa:
            return  # the node's primary IP is in its Node object, which was not collected: not evaluated
        internal = api_node.internal_ips if api_node else ()
        addrs = p.addresses(4) + p.addresses(6) if p.interfaces is not None else list(internal)
        if not addrs:
            return
        served: list[str] = []
        for a in addrs:
            ip = ipaddress.ip_address(a)
            for entry in npa:
                if entry == "primary":
                    if internal and a == internal[0]:
                        served.append(a)
                    continue
                try:
                    if ip in ipaddress.ip_network(entry, strict=False):
                        served.append(a)
                except ValueError:
                    continue
        if not served:
            yield self.finding(
                ctx, f"Node {node.name}",
                f"nodePortAddresses {list(npa)} matches none of node {node.name}'s addresses "
                f"({', '.join(addrs)}): kube-proxy serves NodePorts on no address of this node",
                severity=Severity.ERROR,
                evidence=[f"{origin}: nodePortAddresses {list(npa)}", f"ip-addr.json: {', '.join(addrs)}"],
                fix="Include the node's network in nodePortAddresses (CIDRs, or \"primary\").",
                commands=[command("kubectl", "-n", "kube-system", "edit", "configmap",
                                  Name(origin.split("ConfigMap ")[-1].split("[")[0].split("/")[-1]))],
            )
        elif internal and internal[0] not in served:
            yield self.finding(
                ctx, f"Node {node.name}",
                f"nodePortAddresses {list(npa)} excludes node {node.name}'s InternalIP {internal[0]} (NodePorts are "
                f"served only on {', '.join(served)}): load balancers and clients using the InternalIP get nothing",
                severity=Severity.WARNING,
                evidence=[f"{origin}: nodePortAddresses {list(npa)}", f"Node {node.name}: InternalIP {internal[0]}"],
                fix="Add the InternalIP's network (or \"primary\") to nodePortAddresses.",
            )

    def _local_policy(self, ctx: NodeCheckContext, mode: str) -> Iterator[Finding]:
        """eTP=Local NodePorts that drop on this node by design (no local endpoint): ONE informational finding
        per node naming how many and which (the first LISTED as evidence; every one in the `services` label,
        a JSON list of `namespace/name:port/PROTOCOL`) - at 10,000 Services a node has hundreds of them and a
        note per Service repeats the same explanation hundreds of times per node, on every node."""
        node = ctx.node
        from kpdoctor.node_context import expected_node_port_drops

        try:
            dropped = expected_node_port_drops(ctx, mode if is_proxy_mode(mode) else None)  # the expected view's NodePort DROPs
        except Exception:  # noqa: BLE001 - an expectation we cannot render is reported by KP-STALE-ENDPOINTS
            return
        if not dropped:
            return
        dropped = sorted(dropped)
        services = json.dumps([f"{view.service}/{fe.protocol.upper()}" for fe, view in dropped])
        evidence = [f"expected dataplane: {fe} -> drop (no local endpoints on {node.name})"
                    for fe, _view in dropped[:LISTED]]
        if len(dropped) > LISTED:
            evidence.append(f"… and {len(dropped) - LISTED} more (all {len(dropped)} in the JSON report's "
                            "labels.services)")
        if len(dropped) == 1:
            fe, view = dropped[0]
            subject = service_subject(view.service, fe.protocol)
            what = f"NodePort {fe.port}/{fe.protocol} of {view.service} (externalTrafficPolicy: Local) drops"
            why = "no endpoint of the Service runs there"
        else:
            subject = f"Node {node.name}"
            what = f"{len(dropped)} NodePorts of Services with externalTrafficPolicy: Local drop"
            why = "no endpoint of their Service runs there"
        found = self.finding(
            ctx, subject,
            f"{what} on node {node.name} because {why}: this is expected - it keeps the client source IP and "
            "makes the load balancer's health check (healthCheckNodePort, 503 here) take this node out of "
            "rotation. Clients that hit this node directly time out",
            severity=Severity.INFO, evidence=evidence,
            fix="Nothing to fix if traffic arrives through a load balancer that honours the health check; "
            "otherwise use externalTrafficPolicy: Cluster or run an endpoint on every node.",
        )
        yield replace(found, labels=(("services", services),))

    def _health_checks(self, ctx: NodeCheckContext, p: ParsedNode, uses: list[PortUse]) -> Iterator[Finding]:
        node = ctx.node
        text = node.text(HC_FACT)
        if not text:
            return
        try:
            answers: Mapping[str, Any] = json.loads(text)
        except ValueError:
            return
        local = self._local_endpoint_counts(ctx)
        for use in uses:
            if use.kind != "health-check":
                continue
            answer = answers.get(str(use.port))
            if not isinstance(answer, dict):
                continue
            want = local.get(use.service.split(":", 1)[0], 0)
            status = answer.get("status")
            raw_body = answer.get("body")
            body: dict[str, Any] = raw_body if isinstance(raw_body, dict) else {}
            evidence = [f"{HC_FACT}: port {use.port}: {json.dumps(answer, sort_keys=True)}"]
            if "error" in answer:
                yield self.finding(
                    ctx, service_subject(use.service, "TCP"),
                    f"health-check node port {use.port} of {use.service} does not answer on node {node.name} "
                    f"({answer['error']}): the load balancer marks the node down"
                    + (f" although {want} local endpoint(s) run there" if want else ""),
                    severity=Severity.ERROR if want else Severity.WARNING, evidence=evidence,
                    fix="kube-proxy serves this port itself; check it runs and that INPUT accepts the port.",
                    commands=[command("curl", "-s", f"http://127.0.0.1:{int(use.port)}/", on=node.name)],
                )
            elif status == 503 and want:
                yield self.finding(
                    ctx, service_subject(use.service, "TCP"),
                    f"health-check node port {use.port} of {use.service} answers 503 on node {node.name} although "
                    f"{want} local endpoint(s) run there (serviceProxyHealthy="
                    f"{body.get('serviceProxyHealthy')}): the load balancer sends this node no traffic",
                    severity=Severity.ERROR, evidence=evidence,
                    fix="kube-proxy is unhealthy or stale on the node (KP-PROXY-NODE-HEALTH).",
                    commands=[command("curl", "-s", "http://127.0.0.1:10256/healthz", on=node.name)],
                )
            elif status == 503:
                yield self.finding(
                    ctx, service_subject(use.service, "TCP"),
                    f"health-check node port {use.port} of {use.service} answers 503 on node {node.name}: 0 local "
                    "endpoints, as expected for externalTrafficPolicy: Local (the LB skips this node)",
                    severity=Severity.INFO, evidence=evidence,
                )

    @staticmethod
    def _local_endpoint_counts(ctx: NodeCheckContext) -> dict[str, int]:
        node = ctx.node
        counts: dict[str, int] = {}
        for key, slices in ctx.cluster.slices_by_service.items():
            counts[key] = sum(1 for sl in slices for ep in sl.endpoints if ep.ready and ep.node_name == node.name)
        return counts

    def _probe(self, ctx: NodeCheckContext, mode: str) -> Iterator[Finding]:
        node = ctx.node
        results = ctx.options.probe_results()
        if results is None:
            return
        from kpdoctor.node_context import expected_for

        try:
            expected = expected_for(ctx, mode if is_proxy_mode(mode) else None)
        except Exception:  # noqa: BLE001
            expected = None
        for r in results:
            if not isinstance(r, Mapping) or r.get("node") != node.name or r.get("kind", "node-port") != "node-port":
                continue
            port, proto = int(r.get("port", 0)), str(r.get("protocol", "TCP")).upper()
            result = str(r.get("result", ""))
            view = None
            if expected is not None:
                view = next((v for fe, v in expected.frontends.items()
                             if fe.kind == NODE_PORT and fe.port == port and fe.protocol == proto), None)
            service = str(r.get("service") or (view.service if view else f"NodePort {port}"))
            where = f"{r.get('address', node.name)}:{port}/{proto}"
            evidence = [f"probe from kpdoctor: {where} -> {result}"
                        + (f" after {float(r['elapsed']):.2f} s" if r.get("elapsed") is not None else "")
                        + (f" ({r['detail']})" if r.get("detail") else "")]
            if view is not None:
                evidence.append(f"expected on {node.name}: {view.verdict}"
                                + (f" to {', '.join(sorted(view.endpoints))}" if view.endpoints else ""))
            if result == "open" or view is None:
                continue
            if result == "timeout" and view.verdict == DROP:
                yield self.finding(
                    ctx, service_subject(service, proto),
                    f"probe of {where} timed out, as expected: {service} has externalTrafficPolicy Local and no "
                    f"endpoint on {node.name}",
                    severity=Severity.INFO, evidence=evidence,
                )
            elif result == "timeout" and view.verdict == DNAT:
                yield self.finding(
                    ctx, service_subject(service, proto),
                    f"probe of NodePort {where} timed out although {service} has endpoints for this node: the "
                    "packets are filtered - a host firewall rule on the node (see the other findings of this "
                    "check), or a cloud security group / network ACL in front of it (NodePort range "
                    "30000-32767 by default)",
                    severity=Severity.ERROR, evidence=evidence,
                    fix="Allow the NodePort range from the clients' networks in the security group / firewall.",
                    commands=[command("iptables-save", Lit("|"), "grep", "-E", "--", "--dports? [0-9:,]*", Lit("|"),
                                      "grep", "-E", "DROP|REJECT", on=node.name),
                              command("nc", "-vz", "-w", "3", str(r.get("address", node.name)), str(port),
                                      note="from a client")],
                )
            elif result == "refused" and view.verdict == DNAT:
                yield self.finding(
                    ctx, service_subject(service, proto),
                    f"probe of NodePort {where} was refused although {service} has endpoints: the node rejects it "
                    "(stale REJECT rule from a time without endpoints - see KP-STALE-ENDPOINTS - or the address is "
                    "outside nodePortAddresses)",
                    severity=Severity.ERROR, evidence=evidence,
                    commands=[command("iptables-save", "-t", "filter", Lit("|"), "grep", "--", str(port), on=node.name)],
                )
            elif result == "refused":
                yield self.finding(
                    ctx, service_subject(service, proto),
                    f"probe of NodePort {where} was refused: {service} has no ready endpoints (kube-proxy "
                    "REJECTs it on purpose)",
                    severity=Severity.WARNING, evidence=evidence,
                    commands=[command("kubectl", "-n", Name(service.split("/", 1)[0]), "get", "endpointslices", "-l",
                                      Name(service.split("/", 1)[-1].split(":", 1)[0],
                                           prefix="kubernetes.io/service-name="))],
                )


CHECK = NodePortFirewall()
