"""Read each Cilium agent's own view through the API: `cilium-dbg status -o json` and `service list -o json`.

Read-only commands only, run by exec in the agent container; `cilium-dbg` is
the binary's name from Cilium 1.15, `cilium` before (1.14). Each agent that
cannot be reached becomes a NodeState with an error — an unknown for the gate,
never a pass — and the other agents are still read.
"""

from __future__ import annotations

import time
from types import MappingProxyType
from typing import Any

from kpdoctor.cilium import SERVICE_LIST_FACT, STATUS_FACT
from kpdoctor.cluster.model import Pod
from kpdoctor.cluster.state import ClusterState
from kpdoctor.node.state import Fact, NodeState

COMMANDS = {
    STATUS_FACT: (["cilium-dbg", "status", "-o", "json"], ["cilium", "status", "-o", "json"]),
    SERVICE_LIST_FACT: (["cilium-dbg", "service", "list", "-o", "json"], ["cilium", "service", "list", "-o", "json"]),
}


def _exec(api: Any, pod: Pod, argv: list[str], timeout: float) -> tuple[str | None, str]:
    from kubernetes.stream import stream

    try:
        out = stream(api.connect_get_namespaced_pod_exec, pod.name, pod.namespace, command=argv,
                     container="cilium-agent", stderr=True, stdin=False, stdout=True, tty=False,
                     _request_timeout=timeout)
    except Exception as exc:  # noqa: BLE001 - ApiException, websocket and socket errors alike
        return None, f"{' '.join(argv)}: {exc}"
    text = out if isinstance(out, str) else str(out)
    if not text.strip().startswith(("{", "[")):
        return None, f"{' '.join(argv)}: unexpected output {text.strip()[:120]!r}"
    return text, ""


def agent_node_states(cluster: ClusterState, client_obj: Any, *, timeout: float = 30.0) -> dict[str, NodeState]:
    """One NodeState per node with a Cilium agent pod, holding the agent's status and service table."""
    if not cluster.cilium_pods:
        return {}
    from kubernetes import client

    api = client.CoreV1Api(client_obj)
    states: dict[str, NodeState] = {}
    for pod in sorted(cluster.cilium_pods, key=lambda p: (p.node_name or "", p.phase != "Running", p.name)):
        node = pod.node_name
        if not node or node in states:
            continue
        if pod.phase != "Running":
            states[node] = NodeState(node, "kube-exec", error=f"agent pod {pod.key} is {pod.phase or 'not running'}")
            continue
        facts: dict[str, Fact] = {}
        for key, variants in COMMANDS.items():
            errors = []
            for argv in variants:
                started = time.monotonic()
                text, err = _exec(api, pod, argv, timeout)
                if text is not None:
                    facts[key] = Fact(key, text, f"kubectl exec {pod.key} -- {' '.join(argv)}", 0,
                                      duration=time.monotonic() - started)
                    break
                errors.append(err)
            else:
                facts[key] = Fact(key, None, f"kubectl exec {pod.key}", error="; ".join(errors))
        states[node] = NodeState(node, "kube-exec", MappingProxyType(facts), address=pod.pod_ip or "")
    return states
