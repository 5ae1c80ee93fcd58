"""KubeProxyConfiguration as kube-proxy v1.36 runs it: the stored file plus defaults.

kube-proxy applies defaults in two places (API defaulting in
`pkg/proxy/apis/config/v1alpha1/defaults.go`, and mode-specific defaulting in
`cmd/kube-proxy/app/options.go`), and since v1.31 only the *active* mode's sync
periods are defaulted (an nftables kube-proxy reports `iptables.syncPeriod: 0s`
in /configz). This module reproduces what /configz of a real v1.36.2 shows, so a
check can compare the two field by field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

from kpdoctor.errors import InputError

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: Any, *, where: str = "") -> float:
    """Seconds from a Go duration string ("1m30s"), a number of seconds, or None (0)."""
    if value is None or value == "":
        return 0.0
    if isinstance(value, int | float):
        return float(value)
    text = str(value).strip()
    if text in ("0", "0s"):
        return 0.0
    pos, total = 0, 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if pos != len(text) or pos == 0:
        raise InputError(f"not a duration: {value!r}", where=where or None)
    return total


def format_duration(seconds: float) -> str:
    """Go's time.Duration.String() for whole-second-ish values, as /configz prints them."""
    if seconds == 0:
        return "0s"
    whole = int(seconds)
    if whole != seconds:
        return f"{seconds:g}s"
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


@dataclass(frozen=True, slots=True)
class ModeSync:
    sync_period: float = 0.0
    min_sync_period: float = 0.0


@dataclass(frozen=True, slots=True)
class KubeProxyConfig:
    """The fields of KubeProxyConfiguration that change rules, health or diagnosis."""

    mode: str = ""  # as configured ("" = platform default)
    cluster_cidr: str = ""
    detect_local_mode: str = ""
    bridge_interface: str = ""
    interface_name_prefix: str = ""
    node_port_addresses: tuple[str, ...] | None = None
    hostname_override: str = ""
    bind_address: str = "0.0.0.0"
    healthz_bind_address: str = ""
    metrics_bind_address: str = ""
    # iptables
    iptables_masquerade_all: bool = False
    iptables_masquerade_bit: int | None = None
    iptables_localhost_node_ports: bool | None = None
    iptables_sync: ModeSync = field(default_factory=ModeSync)
    # nftables
    nftables_masquerade_all: bool = False
    nftables_masquerade_bit: int | None = None
    nftables_sync: ModeSync = field(default_factory=ModeSync)
    # ipvs
    ipvs_scheduler: str = ""
    ipvs_sync: ModeSync = field(default_factory=ModeSync)
    ipvs_exclude_cidrs: tuple[str, ...] = ()
    ipvs_strict_arp: bool = False
    ipvs_tcp_timeout: float = 0.0
    ipvs_tcp_fin_timeout: float = 0.0
    ipvs_udp_timeout: float = 0.0
    # conntrack
    conntrack_max_per_core: int | None = None
    conntrack_min: int | None = None
    conntrack_tcp_be_liberal: bool = False
    conntrack_tcp_established_timeout: float | None = None
    conntrack_tcp_close_wait_timeout: float | None = None
    conntrack_udp_timeout: float = 0.0
    conntrack_udp_stream_timeout: float = 0.0
    config_sync_period: float = 0.0
    feature_gates: tuple[tuple[str, bool], ...] = ()
    source: str = ""

    # --- derived, version-aware views -------------------------------------------------
    @property
    def effective_mode(self) -> str:
        """`""` means iptables on Linux in v1.36 (upstream warns the default will change)."""
        return self.mode or "iptables"

    @property
    def masquerade_all(self) -> bool:
        return self.nftables_masquerade_all if self.effective_mode == "nftables" else self.iptables_masquerade_all

    @property
    def masquerade_bit(self) -> int:
        bit = self.nftables_masquerade_bit if self.effective_mode == "nftables" else self.iptables_masquerade_bit
        return 14 if bit is None else bit

    @property
    def masquerade_mark(self) -> str:
        """`1 << masqueradeBit` as kube-proxy formats it (`%#08x`): `0x00004000`."""
        return f"{1 << self.masquerade_bit:#010x}"

    @property
    def localhost_node_ports(self) -> bool:
        return True if self.iptables_localhost_node_ports is None else self.iptables_localhost_node_ports

    @property
    def active_sync(self) -> ModeSync:
        return {"nftables": self.nftables_sync, "ipvs": self.ipvs_sync}.get(self.effective_mode, self.iptables_sync)

    @property
    def effective_detect_local_mode(self) -> str:
        return self.detect_local_mode or "ClusterCIDR"

    @property
    def effective_node_port_addresses(self) -> tuple[str, ...]:
        """nftables defaults to `["primary"]` (seen in v1.36 /configz); iptables/ipvs to all addresses."""
        if self.node_port_addresses is None:
            return ("primary",) if self.effective_mode == "nftables" else ()
        return self.node_port_addresses

    def with_defaults(self) -> KubeProxyConfig:
        """The defaulted configuration, as kube-proxy v1.36 reports it in /configz."""
        mode = self.effective_mode
        defaulted = ModeSync(
            self.active_sync.sync_period or 30.0,
            self.active_sync.min_sync_period or 1.0,
        )
        changes: dict[str, Any] = {
            "mode": mode,
            "detect_local_mode": self.effective_detect_local_mode,
            "healthz_bind_address": self.healthz_bind_address or "0.0.0.0:10256",
            "metrics_bind_address": self.metrics_bind_address or "127.0.0.1:10249",
            "iptables_masquerade_bit": self.iptables_masquerade_bit if self.iptables_masquerade_bit is not None else 14,
            "nftables_masquerade_bit": self.nftables_masquerade_bit if self.nftables_masquerade_bit is not None else 14,
            "iptables_localhost_node_ports": self.localhost_node_ports,
            "conntrack_min": 131072 if self.conntrack_min is None else self.conntrack_min,
            "conntrack_max_per_core": 32768 if self.conntrack_max_per_core is None else self.conntrack_max_per_core,
            "conntrack_tcp_established_timeout": 86400.0
            if self.conntrack_tcp_established_timeout is None
            else self.conntrack_tcp_established_timeout,
            "conntrack_tcp_close_wait_timeout": 3600.0
            if self.conntrack_tcp_close_wait_timeout is None
            else self.conntrack_tcp_close_wait_timeout,
            "config_sync_period": self.config_sync_period or 900.0,
            "node_port_addresses": self.node_port_addresses
            if self.node_port_addresses is not None or mode != "nftables"
            else ("primary",),
        }
        sync_field = {"nftables": "nftables_sync", "ipvs": "ipvs_sync"}.get(mode, "iptables_sync")
        changes[sync_field] = defaulted
        if mode == "ipvs":
            changes["ipvs_scheduler"] = self.ipvs_scheduler or "rr"
        return replace(self, **changes)


def _get(doc: dict[str, Any], *path: str) -> Any:
    cur: Any = doc
    for key in path:
        if not isinstance(cur, dict):
            return None
        cur = cur.get(key)
    return cur


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _opt_bool(value: Any) -> bool | None:
    return None if value is None else bool(value)


# Top-level fields of KubeProxyConfiguration v1alpha1 (k8s.io/kube-proxy/config/v1alpha1/types.go, v1.36).
KNOWN_FIELDS = frozenset(
    {
        "apiVersion", "kind", "featureGates", "clientConnection", "logging", "hostnameOverride",
        "bindAddress", "healthzBindAddress", "metricsBindAddress", "bindAddressHardFail", "enableProfiling",
        "showHiddenMetricsForVersion", "mode", "iptables", "ipvs", "nftables", "winkernel", "detectLocalMode",
        "detectLocal", "clusterCIDR", "nodePortAddresses", "oomScoreAdj", "conntrack", "configSyncPeriod",
        "portRange", "windowsRunAsService", "linux",
    }
)


def config_from_dict(doc: dict[str, Any], *, source: str = "", lenient: bool = False) -> KubeProxyConfig:
    """Build from a KubeProxyConfiguration document (YAML file, ConfigMap key, or /configz body).

    `lenient`: a config read from a running cluster. kube-proxy (cmd/kube-proxy/app/server.go, loadConfig) decodes
    strictly first and, on unknown fields, falls back to a lenient v1alpha1 decoder and logs a warning, so fields
    of older releases (e.g. `udpIdleTimeout` in EKS's 1.18-era kube-proxy-config) do not stop it: they are ignored
    here too and named in the config's source."""
    if "kubeproxy.config.k8s.io" in doc and isinstance(doc["kubeproxy.config.k8s.io"], dict):
        doc = doc["kubeproxy.config.k8s.io"]  # /configz wraps the config in its group name
    kind = doc.get("kind")
    if kind not in (None, "KubeProxyConfiguration"):
        raise InputError(f"expected kind KubeProxyConfiguration, found {kind!r}", where=source or None)
    unknown = sorted(str(k) for k in doc if k not in KNOWN_FIELDS)
    if unknown and lenient:
        source = f"{source} (fields unknown to v1.36 ignored, as kube-proxy's lenient decoding does: {', '.join(unknown)})"
    elif unknown:
        # kube-proxy decodes its config strictly and refuses to start on unknown fields; so do we,
        # rather than silently rendering the defaults for a file that is not a kube-proxy config.
        raise InputError(
            f"unknown KubeProxyConfiguration field(s) {', '.join(unknown)} (kube-proxy rejects them too)",
            where=source or None,
        )

    def dur(*path: str) -> float:
        return parse_duration(_get(doc, *path), where=f"{source}: {'.'.join(path)}" if source else ".".join(path))

    npa = doc.get("nodePortAddresses")
    gates = doc.get("featureGates") or {}
    return KubeProxyConfig(
        mode=str(doc.get("mode") or ""),
        cluster_cidr=str(doc.get("clusterCIDR") or ""),
        detect_local_mode=str(doc.get("detectLocalMode") or ""),
        bridge_interface=str(_get(doc, "detectLocal", "bridgeInterface") or ""),
        interface_name_prefix=str(_get(doc, "detectLocal", "interfaceNamePrefix") or ""),
        node_port_addresses=None if npa is None else tuple(str(a) for a in npa),
        hostname_override=str(doc.get("hostnameOverride") or ""),
        bind_address=str(doc.get("bindAddress") or "0.0.0.0"),
        healthz_bind_address=str(doc.get("healthzBindAddress") or ""),
        metrics_bind_address=str(doc.get("metricsBindAddress") or ""),
        iptables_masquerade_all=bool(_get(doc, "iptables", "masqueradeAll")),
        iptables_masquerade_bit=_opt_int(_get(doc, "iptables", "masqueradeBit")),
        iptables_localhost_node_ports=_opt_bool(_get(doc, "iptables", "localhostNodePorts")),
        iptables_sync=ModeSync(dur("iptables", "syncPeriod"), dur("iptables", "minSyncPeriod")),
        nftables_masquerade_all=bool(_get(doc, "nftables", "masqueradeAll")),
        nftables_masquerade_bit=_opt_int(_get(doc, "nftables", "masqueradeBit")),
        nftables_sync=ModeSync(dur("nftables", "syncPeriod"), dur("nftables", "minSyncPeriod")),
        ipvs_scheduler=str(_get(doc, "ipvs", "scheduler") or ""),
        ipvs_sync=ModeSync(dur("ipvs", "syncPeriod"), dur("ipvs", "minSyncPeriod")),
        ipvs_exclude_cidrs=tuple(_get(doc, "ipvs", "excludeCIDRs") or ()),
        ipvs_strict_arp=bool(_get(doc, "ipvs", "strictARP")),
        ipvs_tcp_timeout=dur("ipvs", "tcpTimeout"),
        ipvs_tcp_fin_timeout=dur("ipvs", "tcpFinTimeout"),
        ipvs_udp_timeout=dur("ipvs", "udpTimeout"),
        conntrack_max_per_core=_opt_int(_get(doc, "conntrack", "maxPerCore")),
        conntrack_min=_opt_int(_get(doc, "conntrack", "min")),
        conntrack_tcp_be_liberal=bool(_get(doc, "conntrack", "tcpBeLiberal")),
        conntrack_tcp_established_timeout=None
        if _get(doc, "conntrack", "tcpEstablishedTimeout") is None
        else dur("conntrack", "tcpEstablishedTimeout"),
        conntrack_tcp_close_wait_timeout=None
        if _get(doc, "conntrack", "tcpCloseWaitTimeout") is None
        else dur("conntrack", "tcpCloseWaitTimeout"),
        conntrack_udp_timeout=dur("conntrack", "udpTimeout"),
        conntrack_udp_stream_timeout=dur("conntrack", "udpStreamTimeout"),
        config_sync_period=dur("configSyncPeriod"),
        feature_gates=tuple(sorted((str(k), bool(v)) for k, v in gates.items())),
        source=source,
    )


def parse_config_text(text: str, *, source: str, lenient: bool = False) -> KubeProxyConfig:
    """Parse YAML or JSON text; errors name the source and the YAML line."""
    from kpdoctor.safeio import load_yaml

    doc = load_yaml(text, source)  # bounded: nesting, aliases (a ConfigMap value is someone else's text)
    if doc is None:
        return KubeProxyConfig(source=source)
    if not isinstance(doc, dict):
        raise InputError("a KubeProxyConfiguration must be a mapping", where=source)
    return config_from_dict(doc, source=source, lenient=lenient)


def load_config_file(path: str) -> KubeProxyConfig:
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", where=path) from None
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text (byte {exc.start}): not a KubeProxyConfiguration", where=path) from None
    return parse_config_text(text, source=path)


def apply_flags(config: KubeProxyConfig, argv: tuple[str, ...]) -> KubeProxyConfig:
    """Apply the kube-proxy command-line flags that override the config file.

    kube-proxy lets flags win over `--config` for a handful of fields; DaemonSets
    generated by some installers set `--proxy-mode` or `--cluster-cidr` there.
    """
    flags: dict[str, str] = {}
    pending: str | None = None
    for arg in argv:
        if pending is not None:
            flags[pending] = arg
            pending = None
        elif arg.startswith("--"):
            name, eq, value = arg[2:].partition("=")
            if eq:
                flags[name] = value
            else:
                pending = name
                flags[name] = "true"
    changes: dict[str, Any] = {}
    if "proxy-mode" in flags:
        changes["mode"] = flags["proxy-mode"]
    if "cluster-cidr" in flags:
        changes["cluster_cidr"] = flags["cluster-cidr"]
    if "masquerade-all" in flags:
        all_ = flags["masquerade-all"] != "false"
        changes["iptables_masquerade_all"] = all_
        changes["nftables_masquerade_all"] = all_
    if "nodeport-addresses" in flags:
        changes["node_port_addresses"] = tuple(a for a in flags["nodeport-addresses"].split(",") if a)
    if "ipvs-scheduler" in flags:
        changes["ipvs_scheduler"] = flags["ipvs-scheduler"]
    return replace(config, **changes) if changes else config


def config_path_from_args(argv: tuple[str, ...]) -> str | None:
    """The value of `--config` in a kube-proxy command line, if any."""
    for i, arg in enumerate(argv):
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
        if arg == "--config" and i + 1 < len(argv):
            return argv[i + 1]
    return None
