"""Per-new-connection cost of kube-proxy's rules, measured with real packets on this kernel.

iptables mode matches a new connection against nat KUBE-SERVICES one rule at a
time, so a Service near the end of the chain costs more than one near the start
(and traffic to non-Service addresses walks the whole chain); nftables mode
looks the destination up in a verdict map, so position does not matter. This
module builds a lab with N Services, applies what the reference proxier renders
for them, and times `connect()` (SYN -> SYN-ACK, where the rules are evaluated:
conntrack handles the rest of a connection) to the first and last Service in
the chain and to a pod IP directly. Medians over rounds that take the targets in
turn (one batch each), so drift on a busy machine hits both ends alike while
each batch runs with the caches its own walk leaves (interleaving single
connects would charge "first" for the cache misses "last" causes).

Used by `kpdoctor lab bench` and `bench/bench_lab_latency.py`.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from kpdoctor.lab.apply import APPLY_TIMEOUT, apply_rendered
from kpdoctor.lab.cluster import bench_services, lab_cluster
from kpdoctor.lab.netns import LabError, require_tools
from kpdoctor.lab.rules import kube_services_order, render_rules
from kpdoctor.lab.servers import time_connects
from kpdoctor.lab.topology import MAX_PODS, Lab

POD_PORT = 8080
SERVICE_PORT = 80
# variant name -> (kube-proxy mode, iptables backend used to load it)
VARIANTS: dict[str, tuple[str, str]] = {
    "iptables-nft": ("iptables", "nft"),
    "iptables-legacy": ("iptables", "legacy"),
    "nftables": ("nftables", "nft"),
}
TOOLS = {"iptables-nft": "iptables-nft-restore", "iptables-legacy": "iptables-legacy-restore", "nftables": "nft"}


@dataclass(frozen=True)
class BenchCase:
    variant: str
    services: int
    endpoints_per_service: int = 1


@dataclass
class BenchResult:
    variant: str
    services: int
    rules_lines: int = 0
    render_seconds: float = 0.0
    apply_seconds: float = 0.0
    first_us: float | None = None
    last_us: float | None = None
    direct_us: float | None = None
    first_service: str = ""
    last_service: str = ""
    samples: int = 0
    failures: int = 0
    error: str = ""
    skipped: str = ""
    lab_prefix: str = ""  # the namespaces it used were <lab_prefix>-*; all deleted when it returns
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def delta_us(self) -> float | None:
        if self.first_us is None or self.last_us is None:
            return None
        return self.last_us - self.first_us

    def as_dict(self) -> dict[str, object]:
        out = asdict(self)
        out["delta_us"] = self.delta_us
        return out


def _median_us(values: list[float]) -> float | None:
    return statistics.median(values) * 1e6 if values else None


def measure_case(
    case: BenchCase,
    *,
    rounds: int = 10,
    per_round: int = 50,
    apply_timeout: float = APPLY_TIMEOUT,
    client: str = "pod",
    progress: Callable[[str], None] = lambda _msg: None,
) -> BenchResult:
    """Build a lab, load `case.services` Services in `case.variant`, time connects; always tears down."""
    if case.variant not in VARIANTS:
        raise LabError(f"unknown variant {case.variant!r} (expected one of {', '.join(VARIANTS)})")
    if client not in ("pod", "node"):
        raise LabError(f"client must be 'pod' or 'node', not {client!r}")
    if case.services < 1:
        raise LabError("the bench needs at least one Service")
    mode, backend = VARIANTS[case.variant]
    require_tools("nfacct", TOOLS[case.variant])
    result = BenchResult(variant=case.variant, services=case.services)
    if not 1 <= case.endpoints_per_service <= MAX_PODS:
        raise LabError(f"endpoints per Service must be between 1 and {MAX_PODS}")
    with Lab(pods=max(2, case.endpoints_per_service)) as lab:
        result.lab_prefix = lab.prefix
        eps = [p.ip for p in lab.pods]
        services = bench_services(case.services, eps, target_port=POD_PORT, per_service=case.endpoints_per_service)
        t0 = time.perf_counter()
        cluster = lab_cluster(services, node_name=lab.node_name, mode=mode)
        rules = render_rules(cluster, lab.node_name, mode)
        result.render_seconds = time.perf_counter() - t0
        result.rules_lines = rules.count("\n")
        progress(f"{case.variant} {case.services}: applying {result.rules_lines} lines of rules")
        t0 = time.perf_counter()
        apply_rendered(lab.node_ns, rules, mode=mode, backend=backend, timeout=apply_timeout)
        result.apply_seconds = time.perf_counter() - t0
        if mode == "iptables":
            order = kube_services_order(rules)
            if len(order) != case.services:
                raise LabError(f"expected {case.services} Service rules in nat KUBE-SERVICES, found {len(order)}")
            first, last = order[0], order[-1]
        else:  # a verdict-map lookup: "first" and "last" only name the same two Services
            first = (services[0].cluster_ip, SERVICE_PORT)
            last = (services[-1].cluster_ip, SERVICE_PORT)
        result.first_service, result.last_service = (f"{ip}:{port}" for ip, port in (first, last))
        for pod in lab.pods:
            lab.serve(pod, POD_PORT)
        # From a pod, new connections cross nat PREROUTING and filter FORWARD; from the node itself
        # (host-network clients), nat OUTPUT and filter OUTPUT. Both walk the same KUBE-SERVICES.
        source = {"pod": lab.pods[0].netns, "node": lab.node_ns}.get(client)
        if source is None:
            raise LabError(f"client must be 'pod' or 'node', not {client!r}")
        targets = {"first": first, "last": last, "direct": (lab.pods[1].ip, POD_PORT)}
        time_connects(source, list(targets.values()), count=10)  # warm-up: ARP, route cache, page cache
        progress(f"{case.variant} {case.services}: timing {rounds} x {per_round} connects per target")
        samples: dict[str, list[float]] = {k: [] for k in targets}
        for _ in range(rounds):
            # One batch per target, targets taken in turn each round: interleaving single connects
            # would let the long walk for "last" evict the caches "first" is then timed with.
            for name, target in targets.items():
                got, failures = time_connects(source, [target], count=per_round)
                result.failures += failures
                samples[name] += got.get(f"{target[0]}:{target[1]}", [])
        result.first_us = _median_us(samples["first"])
        result.last_us = _median_us(samples["last"])
        result.direct_us = _median_us(samples["direct"])
        result.samples = min(len(v) for v in samples.values())
        for name, values in samples.items():  # the fast tail: least disturbed by other load on the machine
            if values:
                result.extra[f"{name}_p10_us"] = sorted(values)[len(values) // 10] * 1e6
    return result


def plan(services: list[int], variants: list[str], *, nft_backend_limit: int) -> list[tuple[BenchCase, str]]:
    """The cases to run, each with a reason when it is skipped (iptables-nft-restore is slow at scale)."""
    out = []
    for n in services:
        for variant in variants:
            reason = ""
            if variant == "iptables-nft" and n > nft_backend_limit:
                reason = (f"iptables-nft-restore of more than {nft_backend_limit} Services can take many minutes "
                          "(raise --nft-backend-limit to measure it)")
            out.append((BenchCase(variant, n), reason))
    return out
