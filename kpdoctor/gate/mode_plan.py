"""The ordered rollout plan of a kube-proxy mode switch: per kube-proxy DaemonSet, back up, edit, restart, watch.

The plan changes how every Service is served, so it follows the destructive-command rules of the gates
(`kpdoctor.gate.safety`): printed runnable only under a PASS verdict, otherwise withheld (and with
`--show-plan` every command commented out). It is returned as a `CleanupPlan` (cluster steps, then one
item per node to watch) so the gates' renderers show it the same way.

What real kube-proxy leaves of the old mode (measured in the lab, `LEFT_BEHIND`) is said in the plan's notes;
`--phase post-switch` finds and lists what is really left, with cleanup commands.
"""

from __future__ import annotations

from kpdoctor.cluster.kube_proxy_node import ProxyMode
from kpdoctor.cluster.state import ClusterState
from kpdoctor.gate.mode_configmap_edit import patch_command
from kpdoctor.gate.model import CleanupItem, CleanupPlan, NodeCleanup
from kpdoctor.shellcmd import Lit, Name, command

PLAN_KIND = "rollout"
# what real kube-proxy v1.36.3 leaves of the old mode, measured in the lab (tests/test_klab_mode_switch.py)
LEFT_BEHIND = {
    ("iptables", "nftables"): (
        "kube-proxy removes its iptables Service chains itself but leaves filter KUBE-FIREWALL (\"block incoming "
        "localnet connections\") and net.ipv4.conf.all.route_localnet=1 (measured with kube-proxy v1.36.3); "
        "harmless, and listed with their cleanup by --phase post-switch. From the iptables-legacy backend it "
        "cleans only the backend its `iptables` names: legacy KUBE-* chains can stay (measured), and post-switch "
        "blocks on them"),
    ("nftables", "iptables"): "kube-proxy removes the ip/ip6 kube-proxy nft tables itself (measured with v1.36.3)",
}
NOT_MEASURED = "not measured in the lab (no IPVS here): --phase post-switch lists what is left, with its cleanup"


def rollout_plan(cluster: ClusterState, node_modes: dict[str, str | None], target: ProxyMode) -> CleanupPlan:
    """`node_modes`: node -> its current mode (None unknown). Nodes already in `target` need nothing."""
    steps: list[str] = []
    notes: list[str] = []
    groups: dict[tuple[str, str], tuple[str, str, list[str]]] = {}  # (ns, ds) -> (ns, cm, nodes)
    texts: dict[tuple[str, str], tuple[str, str]] = {}  # (ns, ds) -> (ConfigMap key, its text)
    manual: list[str] = []
    for node, mode in sorted(node_modes.items()):
        if mode == target:
            continue
        found = cluster.proxy_config_for(node)
        ds, cm = (found.daemonset, found.configmap) if found is not None else (None, None)
        if found is None or ds is None or cm is None:
            manual.append(node)
            continue
        groups.setdefault((ds.namespace, ds.name), (cm.namespace, cm.name, []))[2].append(node)
        texts.setdefault((ds.namespace, ds.name), (found.config_key, cm.data.get(found.config_key, "")))
    for (ns, ds_name), (cm_ns, cm_name, members) in sorted(groups.items()):
        backup = f"{cm_name}.before-{target}.yaml"
        notes.append(f"DaemonSet {ns}/{ds_name} (ConfigMap {cm_ns}/{cm_name}): nodes {', '.join(members)}")
        steps += [
            command("kubectl", "-n", Name(cm_ns), "get", "configmap", Name(cm_name), "-o", "yaml", Lit(">"), backup,
                    note="1. back up (the rollback)"),
            patch_command(cm_ns, cm_name, *texts[(ns, ds_name)], target,
                          note=f"2. set mode: {target} in [{texts[(ns, ds_name)][0]}], nothing else")
            or command("kubectl", "-n", Name(cm_ns), "edit", "configmap", Name(cm_name),
                       note=f"2. in config.conf set mode: {target}"),
            command("kubectl", "-n", Name(ns), "rollout", "restart", "daemonset", Name(ds_name), note="3. restart"),
            command("kubectl", "-n", Name(ns), "rollout", "status", "daemonset", Name(ds_name), "--timeout=10m",
                    note="4. wait; stop on a crash loop and roll back"),
            command("kubectl", "-n", Name(ns), "logs", "daemonset/" + ds_name, "--tail=200", Lit("|"), "grep", "-i",
                    "proxier", note=f"5. expect 'Using {target} Proxier'"),
            command("kubectl", "apply", "-f", backup, Lit("&&"), "kubectl", "-n", Name(ns), "rollout", "restart",
                    "daemonset", Name(ds_name), note="rollback only: restores the old mode"),
        ]
    for old in sorted({m for n, m in node_modes.items() if m and m != target}):
        notes.append(f"after {old} -> {target}: {LEFT_BEHIND.get((old, target), NOT_MEASURED)}")
    for node in manual:
        notes.append(f"node {node}: kube-proxy is not run by a DaemonSet with a ConfigMap here; set its mode "
                     f"({target}) where it is configured (flags or config file) and restart it by hand")
    per_node = tuple(
        NodeCleanup(node, inspected=True, items=(CleanupItem(
            f"check: kube-proxy reports {target}",
            (command("curl", "-s", "http://127.0.0.1:10249/proxyMode", on=node,
                     note=f": expect {target} (at metricsBindAddress)"),)),))
        for node, mode in sorted(node_modes.items()) if mode != target
    )
    return CleanupPlan(tuple(steps), tuple(notes), per_node, kind=PLAN_KIND)


def rollout_summary(plan: CleanupPlan) -> str:
    restarts = sum(1 for c in plan.cluster_commands if " rollout restart " in c and "kubectl apply" not in c)
    nodes = len(plan.nodes)
    return (f"edit {restarts} kube-proxy ConfigMap{'s' if restarts != 1 else ''} and restart "
            f"{restarts} DaemonSet{'s' if restarts != 1 else ''}, switching {nodes} node{'s' if nodes != 1 else ''}")
