"""Cilium's kube-proxy replacement as kpdoctor sees it: `cilium-config`, agent status, agent service table.

Three inputs, three parsers, one rule: anything kpdoctor does not recognise is
*unknown*, never "fine". The gate (`kpdoctor gate kube-proxy-removal`) and the
Cilium check both stand on this module, so a field Cilium renames in a future
release makes them say "cannot prove" instead of silently passing.

Field names follow Cilium's API models (`api/v1/models/kube_proxy_replacement.go`,
`status_response.go`, `service_spec.go`, `frontend_address.go`,
`backend_address.go`) for the releases kpdoctor knows: 1.14 to 1.18. Two traps
from those models shape the code:

- go-swagger emits `enabled` with `omitempty`: a disabled feature is `{}`,
  not `{"enabled": false}`. Absent `enabled` therefore means *off*.
- The agent fills `kube-proxy-replacement.mode` only for the config values
  `true`/`false`; the legacy `strict` leaves it empty (and, from 1.15, does not
  switch the features on either — cilium/cilium#32711). No mode is no proof.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kpdoctor.addresses import join_host_port
from kpdoctor.cluster.model import ConfigMap, Pod

if TYPE_CHECKING:
    from kpdoctor.node.state import NodeState

SUPPORTED_MIN = (1, 14)
SUPPORTED_MAX = (1, 18)
SUPPORTED_RANGE = "1.14-1.18"

STATUS_FACT = "cilium/status.json"
SERVICE_LIST_FACT = "cilium/service-list.json"



@dataclass(frozen=True, slots=True)
class KprValue:
    """What one cilium-config `kube-proxy-replacement` value means (Cilium 1.14 reduced them to true/false)."""

    value: str
    replaces: bool  # asks for the full replacement of kube-proxy
    legacy: bool = False  # a pre-1.14 value, still accepted with a deprecation
    migrate_to: str = ""  # what a legacy value becomes from 1.14 on
    relies_on_kube_proxy: bool = False  # partial/probe: kube-proxy serves what they skip


_REST_BY_KEY = "false (plus the explicit enable-* feature keys)"
# The one classification of the values; everything below and every user derives from it.
KPR_VALUES: Mapping[str, KprValue] = {
    "true": KprValue("true", replaces=True),
    "false": KprValue("false", replaces=False),
    "strict": KprValue("strict", replaces=True, legacy=True, migrate_to="true"),
    "partial": KprValue("partial", replaces=False, legacy=True, migrate_to=_REST_BY_KEY, relies_on_kube_proxy=True),
    "probe": KprValue("probe", replaces=False, legacy=True, migrate_to=_REST_BY_KEY, relies_on_kube_proxy=True),
    "disabled": KprValue("disabled", replaces=False, legacy=True, migrate_to="false"),
}
KPR_TRUE = "true"
KPR_LEGACY_ACCEPTED = frozenset(v for v, c in KPR_VALUES.items() if c.replaces and c.legacy)
KPR_FAILING = frozenset(v for v, c in KPR_VALUES.items() if not c.replaces)
KPR_LEGACY_MIGRATION: Mapping[str, str] = {v: c.migrate_to for v, c in KPR_VALUES.items() if c.legacy}


def classify_kpr(raw: str | None) -> KprValue | None:
    """The meaning of a `kube-proxy-replacement` value as written (any case, spaces); None: absent or unknown."""
    return KPR_VALUES.get((raw or "").strip().lower())

_VERSION = re.compile(r"^\s*v?(\d+)\.(\d+)(?:\.(\d+))?")
_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


class CiliumShapeError(ValueError):
    """A Cilium document kpdoctor does not recognise: the caller turns it into "cannot prove"."""


# ---------------------------------------------------------------------------------------------
# cilium-config ConfigMap
# ---------------------------------------------------------------------------------------------


def _flag(data: Mapping[str, str], key: str) -> bool | None:
    """A boolean ConfigMap key: True/False when set to a boolean word, None when absent or unreadable."""
    raw = data.get(key)
    if raw is None:
        return None
    text = raw.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    return None


@dataclass(frozen=True, slots=True)
class CiliumConfig:
    """The keys of `kube-system/cilium-config` that decide whether Cilium can stand in for kube-proxy."""

    kpr_raw: str | None  # the value as written, None when the key is absent
    k8s_service_host: str
    k8s_service_port: str
    enable_node_port: bool | None
    enable_external_ips: bool | None
    enable_host_port: bool | None
    enable_session_affinity: bool | None
    socket_lb: bool | None  # `bpf-lb-sock`
    socket_lb_hostns_only: bool | None  # `bpf-lb-sock-hostns-only`
    health_check_node_port: bool | None  # `enable-health-check-nodeport`
    source_range_check: bool | None  # `enable-svc-source-range-check`
    enable_ipv4: bool | None
    enable_ipv6: bool | None
    enable_sctp: bool | None
    node_port_range: tuple[int, int] | None
    service_proxy_name: str  # `k8s-service-proxy-name`
    source: str = ""

    @property
    def kpr(self) -> str:
        """The normalised value: a key of `KPR_VALUES`, `` (absent) or another, unknown value."""
        return (self.kpr_raw or "").strip().lower()

    @property
    def kpr_enabled(self) -> bool:
        """Whether the config asks for a full replacement (`true`, or the legacy `strict`)."""
        return self.kpr == KPR_TRUE or self.kpr in KPR_LEGACY_ACCEPTED

    def expected_feature(self, explicit: bool | None) -> bool:
        """A feature's configured state: its own key if set, else on exactly when `kube-proxy-replacement: true`.

        `strict` does not default the features on (cilium/cilium#32711), so it is
        treated like `false` here: only explicit keys turn features on.
        """
        if explicit is not None:
            return explicit
        return self.kpr == KPR_TRUE


def parse_cilium_config(cm: ConfigMap) -> CiliumConfig:
    data = cm.data
    port_range: tuple[int, int] | None = None
    raw_range = data.get("node-port-range")
    if raw_range:
        parts = re.split(r"[-,]", raw_range.strip())
        if len(parts) == 2 and all(p.strip().isdecimal() for p in parts):
            port_range = (int(parts[0]), int(parts[1]))
    return CiliumConfig(
        kpr_raw=data.get("kube-proxy-replacement"),
        k8s_service_host=(data.get("k8s-service-host") or "").strip(),
        k8s_service_port=(data.get("k8s-service-port") or "").strip(),
        enable_node_port=_flag(data, "enable-node-port"),
        enable_external_ips=_flag(data, "enable-external-ips"),
        enable_host_port=_flag(data, "enable-host-port"),
        enable_session_affinity=_flag(data, "enable-session-affinity"),
        socket_lb=_flag(data, "bpf-lb-sock"),
        socket_lb_hostns_only=_flag(data, "bpf-lb-sock-hostns-only"),
        health_check_node_port=_flag(data, "enable-health-check-nodeport"),
        source_range_check=_flag(data, "enable-svc-source-range-check"),
        enable_ipv4=_flag(data, "enable-ipv4"),
        enable_ipv6=_flag(data, "enable-ipv6"),
        enable_sctp=_flag(data, "enable-sctp"),
        node_port_range=port_range,
        service_proxy_name=(data.get("k8s-service-proxy-name") or "").strip(),
        source=cm.source or f"ConfigMap {cm.namespace}/{cm.name}",
    )


# ---------------------------------------------------------------------------------------------
# `cilium-dbg status -o json`
# ---------------------------------------------------------------------------------------------


def parse_version(text: str) -> tuple[int, int, int] | None:
    match = _VERSION.match(text or "")
    if not match:
        return None
    return int(match.group(1)), int(match.group(2)), int(match.group(3) or 0)


def version_supported(version: tuple[int, int, int] | None) -> bool:
    return version is not None and SUPPORTED_MIN <= version[:2] <= SUPPORTED_MAX


@dataclass(frozen=True, slots=True)
class KprFeatures:
    """`kube-proxy-replacement.features` as the agent reports it (absent `enabled` = off)."""

    node_port: bool = False
    node_port_min: int = 0
    node_port_max: int = 0
    node_port_mode: str = ""
    external_ips: bool = False
    host_port: bool = False
    socket_lb: bool = False
    socket_lb_hostns_only: bool = False
    session_affinity: bool = False
    annotations: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AgentStatus:
    """One agent's `cilium-dbg status -o json`, reduced to what the removal decision needs."""

    node: str
    version: tuple[int, int, int] | None
    version_text: str
    cilium_state: str  # Ok | Warning | Failure | Disabled | ""
    cilium_msg: str
    kubernetes_state: str
    kubernetes_msg: str
    kpr_mode: str  # "True" | "False" | "" (legacy strict leaves it empty) | anything else = unknown
    features: KprFeatures
    devices: tuple[str, ...] = ()
    source: str = ""

    @property
    def version_label(self) -> str:
        return ".".join(str(v) for v in self.version) if self.version else (self.version_text or "unknown")

    @property
    def supported(self) -> bool:
        return version_supported(self.version)

    @property
    def kpr_true(self) -> bool:
        return self.kpr_mode == "True"


def _obj(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise CiliumShapeError(f"{where}: expected an object, found {type(value).__name__}")
    return value


def _enabled(features: dict[str, Any], key: str) -> bool:
    sub = features.get(key)
    if sub is None:
        return False
    if not isinstance(sub, dict):
        raise CiliumShapeError(f"kube-proxy-replacement.features.{key}: expected an object")
    value = sub.get("enabled", False)
    if not isinstance(value, bool):
        raise CiliumShapeError(f"kube-proxy-replacement.features.{key}.enabled: expected a boolean")
    return value


def _int(value: Any) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def parse_agent_status(text: str, *, node: str, source: str = "") -> AgentStatus:
    """Parse `cilium-dbg status -o json`; raise CiliumShapeError for anything that is not that document."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CiliumShapeError(f"not JSON: {exc.msg} (line {exc.lineno})") from None
    if not isinstance(doc, dict):
        raise CiliumShapeError(f"expected a JSON object, found {type(doc).__name__}")
    if "cilium" not in doc and "kube-proxy-replacement" not in doc:
        raise CiliumShapeError("no 'cilium' or 'kube-proxy-replacement' key: not a `cilium-dbg status -o json` output")
    cilium = _obj(doc.get("cilium"), "cilium")
    k8s = _obj(doc.get("kubernetes"), "kubernetes")
    kpr = _obj(doc.get("kube-proxy-replacement"), "kube-proxy-replacement")
    features_doc = _obj(kpr.get("features"), "kube-proxy-replacement.features")
    node_port = _obj(features_doc.get("nodePort"), "kube-proxy-replacement.features.nodePort")
    annotations = features_doc.get("annotations") or ()
    if not isinstance(annotations, list | tuple):
        raise CiliumShapeError("kube-proxy-replacement.features.annotations: expected a list")
    features = KprFeatures(
        node_port=_enabled(features_doc, "nodePort"),
        node_port_min=_int(node_port.get("portMin")),
        node_port_max=_int(node_port.get("portMax")),
        node_port_mode=str(node_port.get("mode") or ""),
        external_ips=_enabled(features_doc, "externalIPs"),
        host_port=_enabled(features_doc, "hostPort"),
        socket_lb=_enabled(features_doc, "socketLB"),
        socket_lb_hostns_only=bool(features_doc.get("bpfSocketLBHostnsOnly", False)),
        session_affinity=_enabled(features_doc, "sessionAffinity"),
        annotations=tuple(str(a) for a in annotations),
    )
    msg = str(cilium.get("msg") or "")
    mode = kpr.get("mode", "")
    return AgentStatus(
        node=node,
        version=parse_version(msg),
        version_text=msg.split()[0] if msg.split() else "",
        cilium_state=str(cilium.get("state") or ""),
        cilium_msg=msg,
        kubernetes_state=str(k8s.get("state") or ""),
        kubernetes_msg=str(k8s.get("msg") or ""),
        kpr_mode=mode if isinstance(mode, str) else repr(mode),
        features=features,
        devices=tuple(str(d) for d in kpr.get("devices") or ()),
        source=source,
    )


def read_agent_status(name: str, state: NodeState) -> tuple[AgentStatus | None, str]:
    """The agent status collected on a node, or (None, why there is none usable)."""
    if not state.reachable:
        return None, f"node not reachable: {state.error}"
    fact = state.facts.get(STATUS_FACT)
    if fact is None or fact.content is None:
        reason = fact.error if fact is not None and fact.error else "not collected"
        return None, f"{STATUS_FACT} absent ({reason})"
    try:
        return parse_agent_status(fact.content, node=name, source=fact.source or STATUS_FACT), ""
    except CiliumShapeError as exc:
        return None, f"{STATUS_FACT} not recognised: {exc}"


def agent_ready(pods: Iterable[Pod]) -> bool:
    """Some Cilium agent pod of the node is Running and Ready."""
    return any(p.phase == "Running" and p.ready for p in pods)


def proves_replacement(status: AgentStatus | None, ready: bool) -> bool:
    """The agent on a node proves it replaces kube-proxy: ready, a known version, healthy, mode True."""
    return ready and status is not None and status.supported and status.kpr_true and status.cilium_state == "Ok"


# ---------------------------------------------------------------------------------------------
# `cilium-dbg service list -o json`
# ---------------------------------------------------------------------------------------------

# Frontend types of ServiceSpecFlags.type (`service_spec.go`).
TYPE_CLUSTER_IP = "ClusterIP"
TYPE_NODE_PORT = "NodePort"
TYPE_EXTERNAL_IPS = "ExternalIPs"
TYPE_LOAD_BALANCER = "LoadBalancer"
TYPE_HOST_PORT = "HostPort"
TYPE_LOCAL_REDIRECT = "LocalRedirect"
KNOWN_TYPES = frozenset(
    {TYPE_CLUSTER_IP, TYPE_NODE_PORT, TYPE_EXTERNAL_IPS, TYPE_LOAD_BALANCER, TYPE_HOST_PORT, TYPE_LOCAL_REDIRECT}
)
# Backend states (`backend_address.go`); "" is what agents before the state field wrote.
ACTIVE_STATES = frozenset({"", "active"})
TERMINATING_STATES = frozenset({"terminating"})
KNOWN_STATES = frozenset({"", "active", "terminating", "quarantined", "maintenance"})
# Frontend protocols that match any L4 protocol (agents that did not key services by protocol).
WILDCARD_PROTOCOLS = frozenset({"", "ANY", "NONE"})


@dataclass(frozen=True, slots=True)
class Backend:
    ip: str
    port: int
    state: str = "active"
    node_name: str = ""
    protocol: str = ""

    @property
    def key(self) -> str:
        return join_host_port(self.ip, self.port)


@dataclass(frozen=True, slots=True)
class CiliumFrontend:
    """One entry of the agent's service table: a frontend and the backends it load-balances to."""

    id: int
    ip: str
    port: int
    protocol: str  # upper-case; "" / ANY when the agent does not key by protocol
    scope: str  # "external" (default) or "internal" (the in-cluster copy of an eTP=Local frontend)
    type: str
    namespace: str
    name: str
    ext_traffic_policy: str
    int_traffic_policy: str
    backends: tuple[Backend, ...] = ()

    @property
    def service_key(self) -> str:
        return f"{self.namespace}/{self.name}" if self.name else ""

    @property
    def address(self) -> str:
        return join_host_port(self.ip, self.port)

    @property
    def label(self) -> str:
        proto = f"/{self.protocol}" if self.protocol else ""
        scope = " (internal scope)" if self.scope == "internal" else ""
        return f"{self.address}{proto} {self.type}{scope}"

    @property
    def active_backends(self) -> frozenset[str]:
        return frozenset(b.key for b in self.backends if b.state in ACTIVE_STATES)

    @property
    def terminating_backends(self) -> frozenset[str]:
        return frozenset(b.key for b in self.backends if b.state in TERMINATING_STATES)

    @property
    def serving_backends(self) -> frozenset[str]:
        """What new connections go to: active backends, or the terminating ones when no backend is active."""
        return self.active_backends or self.terminating_backends

    def matches_protocol(self, protocol: str) -> bool:
        return self.protocol in WILDCARD_PROTOCOLS or self.protocol == protocol.upper()

    @property
    def is_wildcard_address(self) -> bool:
        try:
            return ipaddress.ip_address(self.ip).is_unspecified
        except ValueError:
            return False


def _normal_ip(text: Any, where: str) -> str:
    try:
        return str(ipaddress.ip_address(str(text).strip()))
    except ValueError:
        raise CiliumShapeError(f"{where}: {text!r} is not an IP address") from None


def _port(value: Any, where: str) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
        raise CiliumShapeError(f"{where}: {value!r} is not a port number")
    return value


def _parse_backend(doc: Any, where: str) -> Backend:
    obj = _obj(doc, where)
    if "ip" not in obj:
        raise CiliumShapeError(f"{where}: backend has no 'ip'")
    state = str(obj.get("state") or "").lower()
    if state not in KNOWN_STATES:
        raise CiliumShapeError(f"{where}: unknown backend state {state!r}")
    return Backend(
        ip=_normal_ip(obj["ip"], where),
        port=_port(obj.get("port"), where),
        state=state or "active",
        node_name=str(obj.get("nodeName") or ""),
        protocol=str(obj.get("protocol") or "").upper(),
    )


def _parse_entry(doc: Any, index: int) -> CiliumFrontend:
    where = f"[{index}]"
    entry = _obj(doc, where)
    # `status.realized` is what the datapath holds; `spec` is what was asked for.
    status = _obj(entry.get("status"), f"{where}.status")
    spec = status.get("realized") or entry.get("spec")
    spec = _obj(spec, f"{where}.spec")
    if "frontend-address" not in spec:
        raise CiliumShapeError(f"{where}: no 'frontend-address' (spec/status.realized): not a Cilium service entry")
    fe = _obj(spec["frontend-address"], f"{where}.frontend-address")
    flags = _obj(spec.get("flags"), f"{where}.flags")
    svc_type = str(flags.get("type") or TYPE_CLUSTER_IP)
    if svc_type not in KNOWN_TYPES:
        raise CiliumShapeError(f"{where}: unknown service type {svc_type!r}")
    backends_doc = spec.get("backend-addresses") or []
    if not isinstance(backends_doc, list):
        raise CiliumShapeError(f"{where}.backend-addresses: expected a list")
    ext = str(flags.get("extTrafficPolicy") or flags.get("trafficPolicy") or "Cluster")
    return CiliumFrontend(
        id=_int(spec.get("id")),
        ip=_normal_ip(fe.get("ip"), f"{where}.frontend-address"),
        port=_port(fe.get("port"), f"{where}.frontend-address"),
        protocol=str(fe.get("protocol") or "").upper(),
        scope=str(fe.get("scope") or "external").lower(),
        type=svc_type,
        namespace=str(flags.get("namespace") or ""),
        name=str(flags.get("name") or ""),
        ext_traffic_policy=ext,
        int_traffic_policy=str(flags.get("intTrafficPolicy") or "Cluster"),
        backends=tuple(
            _parse_backend(b, f"{where}.backend-addresses[{i}]") for i, b in enumerate(backends_doc)
        ),
    )


@dataclass(frozen=True)
class ServiceTable:
    """An agent's service table, indexed by (ip, port) so a frontend lookup is O(1)."""

    node: str
    frontends: tuple[CiliumFrontend, ...]
    source: str = ""
    _by_address: dict[tuple[str, int], list[CiliumFrontend]] = field(default_factory=dict, repr=False, compare=False)
    _node_ports: dict[int, list[CiliumFrontend]] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        for fe in self.frontends:
            self._by_address.setdefault((fe.ip, fe.port), []).append(fe)
            if fe.type == TYPE_NODE_PORT:
                self._node_ports.setdefault(fe.port, []).append(fe)

    def at(self, ip: str, port: int, protocol: str) -> list[CiliumFrontend]:
        return [fe for fe in self._by_address.get((ip, port), ()) if fe.matches_protocol(protocol)]

    def node_ports(self, port: int, protocol: str) -> list[CiliumFrontend]:
        return [fe for fe in self._node_ports.get(port, ()) if fe.matches_protocol(protocol)]


def parse_service_list(text: str, *, node: str, source: str = "") -> ServiceTable:
    """Parse `cilium-dbg service list -o json` (a JSON list of models.Service)."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CiliumShapeError(f"not JSON: {exc.msg} (line {exc.lineno})") from None
    if doc is None:
        doc = []
    if not isinstance(doc, list):
        raise CiliumShapeError(f"expected a JSON list of services, found {type(doc).__name__}")
    return ServiceTable(node=node, frontends=tuple(_parse_entry(e, i) for i, e in enumerate(doc)), source=source)
