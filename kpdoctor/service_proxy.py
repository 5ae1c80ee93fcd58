"""Who implements Services on a node: the one definition every check and the gate use.

Found from the evidence, not assumed from a kubeadm layout:

- kube-proxy from a DaemonSet (pod -> owner DaemonSet -> the ConfigMap its volumes or `--config` name, flags
  overriding the file), or a DaemonSet whose nodeSelector matches the node (pod not listed);
- kube-proxy as a static pod (mirror pod `kube-proxy-<node>`, no owner DaemonSet: RKE2, kops, hand-made
  installs), configured by the flags in its pod spec and maybe a file on the host;
- kube-proxy embedded in k3s (no pod at all; the node reports `v1.30.4+k3s1`; `--kube-proxy-arg` values in the
  node's `k3s.io/node-args` annotation; unless `--disable-kube-proxy`);
- kube-proxy running outside the API (a systemd unit): nothing in the API, but the node answers on
  :10256/:10249 or has kube-proxy's journal;
- no kube-proxy by design: Cilium's kube-proxy replacement, Calico's eBPF dataplane, kube-router's service
  proxy, Antrea's proxyAll, OVN-Kubernetes;
- nothing (the API was read and shows none of the above), or unknown (not enough was collected to tell).

Node facts (rules, /healthz, /proxyMode) are optional: they add evidence and let a kube-proxy outside the API
be recognised, but every decision from the API alone stays the same when they are missing.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from kpdoctor.cluster.config import KubeProxyConfig, apply_flags, config_path_from_args
from kpdoctor.cluster.model import DaemonSet, Node, Pod
from kpdoctor.cluster.state import KUBE_SYSTEM, ClusterState, NodeProxyConfig, kube_proxy_argv
from kpdoctor.dataplane.chain_owners import kube_proxy_ipsets
from kpdoctor.node.parsed import ParsedNode

DAEMONSET = "daemonset"
STATIC_POD = "static-pod"
EMBEDDED = "embedded"
HOST_PROCESS = "host-process"
ASSUMED = "assumed"  # only kube-proxy's ConfigMap was collected (no workloads): the kubeadm default is assumed
REPLACED = "replaced"
ABSENT = "absent"
UNKNOWN = "unknown"
KUBE_PROXY_KINDS = frozenset({DAEMONSET, STATIC_POD, EMBEDDED, HOST_PROCESS, ASSUMED})

# kube-proxy's chains per mode (kubelet's KUBE-IPTABLES-HINT / KUBE-KUBELET-CANARY / KUBE-FIREWALL excluded).
IPTABLES_MARKER_CHAINS = ("KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-PROXY-CANARY")
IPVS_IPTABLES_MARKERS = ("KUBE-NODE-PORT", "KUBE-LOAD-BALANCER")
K3S_ARGS_ANNOTATION = "k3s.io/node-args"
K3S_DISABLED = "k3s with --disable-kube-proxy"
_K3S = re.compile(r"\+k3s\d*")
_RKE2 = re.compile(r"\+rke2r\d*")


@dataclass(frozen=True)
class ServiceProxy:
    """Who implements Services on one node, and the evidence for it."""

    node: str
    kind: str  # one of the constants above
    implementer: str  # "kube-proxy (DaemonSet kube-system/kube-proxy)", "Cilium kube-proxy replacement", ...
    evidence: tuple[str, ...] = ()
    config: NodeProxyConfig | None = None
    pod: Pod | None = None
    daemonset: DaemonSet | None = None

    @property
    def runs_kube_proxy(self) -> bool:
        return self.kind in KUBE_PROXY_KINDS

    @property
    def replaced(self) -> bool:
        return self.kind == REPLACED

    def line(self) -> str:
        """`kube-proxy: embedded in k3s (node version v1.30.4+k3s1; KUBE-* rules present; :10256 answered)`."""
        what = {
            DAEMONSET: self.implementer,
            STATIC_POD: self.implementer,
            EMBEDDED: self.implementer,
            HOST_PROCESS: self.implementer,
            ASSUMED: self.implementer,
            REPLACED: f"not run by design - Services are implemented by {self.implementer}",
            ABSENT: "none found - nothing implements Services on this node",
            UNKNOWN: "not determined",
        }[self.kind]
        return f"kube-proxy on {self.node}: {what}" + (f" ({'; '.join(self.evidence)})" if self.evidence else "")


# ----------------------------------------------------------------------------- dataplane presence


@dataclass(frozen=True)
class Presence:
    """Which kube-proxy dataplanes exist on a node, with one evidence line each."""

    iptables: str = ""  # evidence when KUBE-SERVICES & co. exist in the default/nft backend
    iptables_legacy: str = ""
    iptables_ipvs_chains: str = ""  # KUBE-NODE-PORT / KUBE-LOAD-BALANCER: written by IPVS mode only
    nftables: str = ""
    ipvs: str = ""

    def modes(self) -> list[str]:
        out = []
        if self.iptables or self.iptables_legacy:
            out.append("iptables")
        if self.nftables:
            out.append("nftables")
        if self.ipvs:
            out.append("ipvs")
        return out


def ipt_evidence(p: ParsedNode, key: str) -> str:
    dump = p.iptables(key)
    if dump is None:
        return ""
    # The markers are KUBE-* chains kubelet does not own, so "declared in the table" is "in kube_chains".
    names = [c for t in ("nat", "filter") for c in IPTABLES_MARKER_CHAINS if c in dump.policies.get(t, {})]
    if not names:
        return ""
    total = sum(len(v) for v in dump.kube_chains().values())
    return f"{key}: {total} kube-proxy chains (e.g. {', '.join(sorted(set(names))[:3])})"


def presence(p: ParsedNode) -> Presence:
    nft_key = "iptables-nft-save.txt" if p.has("iptables-nft-save.txt") else "iptables-save.txt"
    default = ipt_evidence(p, "iptables-save.txt") or ipt_evidence(p, nft_key)
    legacy = ipt_evidence(p, "iptables-legacy-save.txt")
    ipvs_chains = ""
    for key in ("iptables-save.txt", "iptables-legacy-save.txt"):
        dump = p.iptables(key)
        if dump is not None:
            nat = dump.policies.get("nat", {})  # == dump.chains("nat"), without building a 100k-name set
            hit = sorted(c for c in IPVS_IPTABLES_MARKERS if c in nat)
            if hit:
                ipvs_chains = f"{key}: IPVS-mode chains {', '.join(hit)}"
                break
    nft = ""
    if p.nft is not None:
        tables = [f"table {fam} {name}" for fam, name in p.nft.tables if name == "kube-proxy"]
        if tables:
            nft = f"nft-ruleset.json: {', '.join(tables)}"
    ipvs_parts = []
    if p.ipvs_services:
        ipvs_parts.append(f"ipvsadm-save.txt: {len(p.ipvs_services)} virtual servers")
    if any(i.name == "kube-ipvs0" for i in p.interfaces or ()):
        ipvs_parts.append("ip-addr.json: interface kube-ipvs0")
    kube_sets = kube_proxy_ipsets(p.ipsets or ())  # kube-router's KUBE-SRC-*/KUBE-DST-* are no IPVS evidence
    if kube_sets:
        ipvs_parts.append(f"ipset-list.txt: {len(kube_sets)} KUBE-* sets (e.g. {kube_sets[0]})")
    return Presence(default, legacy, ipvs_chains, nft, "; ".join(ipvs_parts))


# ----------------------------------------------------------------------------- the decision


def node_evidence(p: ParsedNode | None) -> list[str]:
    """What the node itself shows of a running kube-proxy (empty without node facts)."""
    if p is None:
        return []
    out: list[str] = []
    pres = presence(p)
    if pres.modes():
        out.append("KUBE-* rules present" if pres.iptables or pres.iptables_legacy else
                   f"kube-proxy {'/'.join(pres.modes())} state present")
    if p.has("kube-proxy/healthz.json"):
        out.append(":10256 answered")
    if p.proxy_mode:
        out.append(f"/proxyMode {p.proxy_mode}")
    return out


def _answers(p: ParsedNode | None) -> bool:
    return p is not None and (p.has("kube-proxy/healthz.json") or p.has("kube-proxy/metrics.txt")
                              or p.has("kube-proxy/proxyMode.txt"))


def k3s_args(node: Node | None) -> list[str] | None:
    """The k3s command line from the node's `k3s.io/node-args` annotation (None when absent or unreadable)."""
    if node is None or K3S_ARGS_ANNOTATION not in node.annotations:
        return None
    try:
        value = json.loads(node.annotations[K3S_ARGS_ANNOTATION])
    except ValueError:
        return None
    return [str(a) for a in value] if isinstance(value, list) else None


def _k3s_proxy_flags(args: list[str]) -> tuple[str, ...]:
    """`--kube-proxy-arg X` / `--kube-proxy-arg=X` values as kube-proxy flags (`--X`)."""
    out: list[str] = []
    for i, arg in enumerate(args):
        value = None
        if arg == "--kube-proxy-arg" and i + 1 < len(args):
            value = args[i + 1]
        elif arg.startswith("--kube-proxy-arg="):
            value = arg.split("=", 1)[1]
        if value:
            out.append(value if value.startswith("--") else f"--{value}")
    return tuple(out)


def _env_true(ds: DaemonSet, name: str) -> bool:
    return any(c.env.get(name, "").lower() == "true" for c in ds.containers)


def _args(ds: DaemonSet) -> list[str]:
    return [a for c in ds.containers for a in (*c.command, *c.args)]


def replacement(cluster: ClusterState, node_name: str, p: ParsedNode | None = None) -> tuple[str, list[str]] | None:
    """(what implements Services instead of kube-proxy, evidence) when the cluster is built without it."""
    from kpdoctor.cilium import parse_cilium_config

    cm = cluster.cilium_config
    if cm is not None and cluster.cilium_daemonsets:
        cfg = parse_cilium_config(cm)
        if cfg.kpr_enabled:
            evidence = [f"ConfigMap {KUBE_SYSTEM}/cilium-config: kube-proxy-replacement {cfg.kpr_raw!r}",
                        f"DaemonSet {cluster.cilium_daemonsets[0].key}"]
            agent = next((pod for pod in cluster.cilium_pods if pod.node_name == node_name), None)
            if agent is not None:
                evidence.append(f"agent pod {agent.key} {'ready' if agent.ready else 'not ready'}")
            return "Cilium kube-proxy replacement", evidence
    for ds in cluster.daemonsets:
        if (ds.name == "calico-node" or ds.labels.get("k8s-app") == "calico-node") and \
                _env_true(ds, "FELIX_BPFENABLED"):
            return "Calico eBPF dataplane", [f"DaemonSet {ds.key}: FELIX_BPFENABLED=true"]
        if ds.name == "kube-router" or ds.labels.get("k8s-app") == "kube-router":
            # `--run-service-proxy`: "If false, kube-router won't setup IPVS for services proxy. true by default."
            flags = [a for a in _args(ds) if a.startswith("--run-service-proxy")]
            if not flags or not flags[-1].endswith("=false"):
                shown = flags[-1] if flags else "--run-service-proxy not set (true by default)"
                return "kube-router service proxy", [f"DaemonSet {ds.key}: {shown}"]
        if ds.name in ("ovnkube-node",) or ds.labels.get("app") == "ovnkube-node":
            return "OVN-Kubernetes", [f"DaemonSet {ds.key} (OVN load balancers implement Services)"]
    for cm in cluster.configmaps:
        if cm.name.startswith("antrea-config"):
            conf = cm.data.get("antrea-agent.conf", "")
            if re.search(r"^\s*proxyAll:\s*true\b", conf, re.M):
                return "Antrea proxy (proxyAll)", [f"ConfigMap {cm.namespace}/{cm.name}[antrea-agent.conf]: proxyAll: true"]
    return None


def _versions(node: Node | None) -> str:
    if node is None:
        return ""
    return node.kubelet_version or node.kube_proxy_version


def decide(cluster: ClusterState, node_name: str, p: ParsedNode | None = None) -> ServiceProxy:
    """Who implements Services on `node_name`, from the API objects and (when given) the node's facts."""
    node = cluster.node_by_name.get(node_name)
    seen = node_evidence(p)
    pod = cluster.kube_proxy_pod_on(node_name)
    config = cluster.proxy_config_for(node_name)
    if pod is not None:
        ds = next((d for d in cluster.kube_proxy_daemonsets
                   if d.namespace == pod.namespace and d.name == pod.owner_name), None)
        if ds is not None:
            return ServiceProxy(node_name, DAEMONSET, f"DaemonSet {ds.key} (pod {pod.name})",
                                (f"pod {pod.key} {'ready' if pod.ready else 'not ready'}", *seen), config, pod, ds)
        if pod.owner_kind == "DaemonSet":  # its DaemonSet was not collected: still a DaemonSet pod
            return ServiceProxy(node_name, DAEMONSET, f"DaemonSet {pod.namespace}/{pod.owner_name} (pod {pod.name})",
                                (f"pod {pod.key} {'ready' if pod.ready else 'not ready'}",
                                 f"DaemonSet {pod.owner_name} not in the snapshot", *seen), config, pod, None)
        if config is not None and config.pod is not pod and config.daemonset is None:
            config = None  # the cluster-wide default ConfigMap does not configure a static pod
        owner = f"mirror pod of a static pod (owner {pod.owner_kind} {pod.owner_name})" if pod.owner_kind \
            else "pod without owner"
        host_file = config_path_from_args(kube_proxy_argv(pod.containers))
        if config is None and not host_file:
            config = NodeProxyConfig(KubeProxyConfig(source=f"pod {pod.key}"), f"pod {pod.key}: no flags, defaults",
                                     pod=pod)
        notes = [f"--config {host_file}: a file on the node, not collected (its settings replace the flags)"] \
            if config is None and host_file else []
        return ServiceProxy(node_name, STATIC_POD, f"static pod {pod.key}",
                            (owner, f"{'ready' if pod.ready else 'not ready'}", *notes, *seen), config, pod, None)
    ds = cluster.kube_proxy_daemonset_for(node_name)
    if ds is not None and (ds.desired or not cluster.pods):
        return ServiceProxy(node_name, DAEMONSET, f"DaemonSet {ds.key} (no pod listed on the node)",
                            (f"DaemonSet {ds.key} nodeSelector matches", *seen), config, None, ds)
    version = _versions(node)
    args = k3s_args(node)
    replaced = replacement(cluster, node_name, p)
    if _K3S.search(version) or args is not None:
        disabled = args is not None and "--disable-kube-proxy" in args
        # k3s runs its embedded kube-proxy unless --disable-kube-proxy: with the node's k3s arguments at hand that
        # holds even beside a replacement (k3s servers and agents are configured separately).
        if not disabled and (args is not None or not replaced or seen):
            flags = _k3s_proxy_flags(args or [])
            origin = f"k3s node-args ({' '.join(flags)})" if flags else "k3s defaults (no --kube-proxy-arg)"
            cfg = apply_flags(KubeProxyConfig(source=origin), flags)
            evidence = [f"node version {version}" if version else f"annotation {K3S_ARGS_ANNOTATION}", *seen]
            if flags:
                evidence.append(f"--kube-proxy-arg {' '.join(flags)}")
            return ServiceProxy(node_name, EMBEDDED, "embedded in k3s", tuple(evidence),
                                NodeProxyConfig(cfg, origin))
        if disabled and not replaced:
            return ServiceProxy(node_name, ABSENT, K3S_DISABLED,
                                (f"node version {version}", f"{K3S_ARGS_ANNOTATION}: --disable-kube-proxy", *seen))
    if replaced is not None:
        what, evidence = replaced
        if seen:
            evidence = [*evidence, "node still shows: " + ", ".join(seen)]
        return ServiceProxy(node_name, REPLACED, what, tuple(evidence))
    if _answers(p):
        cfg = p.configz if p is not None and p.configz is not None else KubeProxyConfig(source="defaults")
        origin = "kube-proxy/configz.json" if p is not None and p.configz is not None else \
            "kube-proxy defaults (no config visible in the API)"
        hint = f"node version {version}" if _RKE2.search(version) else "no pod in the API: a systemd unit or binary"
        return ServiceProxy(node_name, HOST_PROCESS, "kube-proxy process outside the API", (hint, *seen),
                            NodeProxyConfig(cfg, origin))
    if not cluster.daemonsets and not cluster.pods and config is not None:
        return ServiceProxy(node_name, ASSUMED, "kube-proxy assumed (kubeadm default)",
                            (f"{config.origin} present; pods and DaemonSets not collected", *seen), config)
    unlisted = sorted({pod.owner_name or "" for pod in cluster.pods if pod.owner_kind == "DaemonSet"}
                      - {d.name for d in cluster.daemonsets})
    if unlisted and not seen:  # pods name DaemonSets the snapshot does not hold: DaemonSets were not collected
        return ServiceProxy(node_name, UNKNOWN, "unknown", (
            f"pods owned by DaemonSets missing from the snapshot ({', '.join(unlisted[:3])}): DaemonSets not "
            "collected, so a replacement cannot be ruled out",))
    if cluster.pods or cluster.daemonsets:
        evidence = ["no kube-proxy pod or DaemonSet for the node, not k3s, no replacement found", *seen]
        return ServiceProxy(node_name, ABSENT, "none", tuple(evidence))
    return ServiceProxy(node_name, UNKNOWN, "unknown",
                        ("pods and DaemonSets not collected, no kube-proxy/ facts from the node", *seen))
