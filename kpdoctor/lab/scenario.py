"""One call from "these Services" to "a lab node running kube-proxy's rules for them".

Other tests (checks against a real dataplane, the read-only collection test) want
a node with real kube-proxy rules without repeating render + apply + nfacct.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from kpdoctor.cluster.state import ClusterState
from kpdoctor.lab.apply import apply_rendered
from kpdoctor.lab.cluster import LabService, lab_cluster
from kpdoctor.lab.rules import render_rules
from kpdoctor.lab.topology import Lab


def load_services(
    lab: Lab,
    services: Iterable[LabService],
    *,
    mode: str = "iptables",
    backend: str = "nft",
    config_extra: dict[str, Any] | None = None,
) -> tuple[ClusterState, str]:
    """Render `services` for the lab's node in `mode`, load them into its node namespace.

    Returns the ClusterState (what a snapshot of this "cluster" holds) and the rules loaded.
    """
    cluster = lab_cluster(services, node_name=lab.node_name, mode=mode, config_extra=config_extra)
    rules = render_rules(cluster, lab.node_name, mode)
    apply_rendered(lab.node_ns, rules, mode=mode, backend=backend)
    return cluster, rules
