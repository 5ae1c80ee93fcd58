"""`scan --transport pod --analyze-in-pod`: each node's checks run inside its collector pod; only the compact
node result (kpdoctor.noderesult) comes back, not the node's dumps.

The pod is podcollect's collector pod (hostNetwork, NET_ADMIN + NET_RAW only, read-only root filesystem,
nodeName-pinned, deleted on success, error, timeout and Ctrl-C) with two differences:
- its image must contain kpdoctor *and* the netfilter userland (iptables*-save, nft, ...): the node's
  kube-proxy image has no kpdoctor, so --collector-image is required and an image without kpdoctor is a
  one-line node error;
- it runs in namespace `kpdoctor` as ServiceAccount `kpdoctor` of deploy/rbac.yaml (read-only: list
  Services, EndpointSlices, Nodes, ServiceCIDRs; kube-proxy's ConfigMap, DaemonSets, Pods, pods/log in
  kube-system), with a projected token that expires with the pod: `kpdoctor node NAME --transport local
  --result-json` inside reads the cluster with the in-cluster config. That is the least privilege: the
  pod gets the same read-only rights as an in-cluster scan, never the caller's kubeconfig (which may be
  cluster-admin), and the caller needs no more than for `--transport pod`.
The result is read back through `pods/exec` (stdout, at most MAX_RESULT bytes) and decoded as hostile input
(noderesult.decode); anything wrong with it makes that node unreachable with the reason, never the scan.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from kpdoctor.checks_api import Check
from kpdoctor.engine import unreachable_finding
from kpdoctor.errors import InputError
from kpdoctor.node.fanout import Interrupted, Reporter, fan_out
from kpdoctor.node.podcollect import PodTransport
from kpdoctor.node.state import NodeState
from kpdoctor.node.transport import CancelToken, TransportError
from kpdoctor.noderesult import Interner, NodeResult, decode

NAMESPACE = "kpdoctor"  # deploy/rbac.yaml's namespace and ServiceAccount
SERVICE_ACCOUNT = "kpdoctor"
MAX_RESULT = 64 << 20  # bytes of node result read back (a 10,000-Service node with every note: a few MiB)
NO_KPDOCTOR = ("the collector image {image} has no kpdoctor (it could not be started there): --analyze-in-pod needs a kpdoctor image with the "
               "netfilter tools (deploy/Containerfile), not the kube-proxy image")  # fmt: skip


def node_argv(node: str, check_ids: Sequence[str], timeout: float) -> list[str]:
    """What runs in the pod: the node checks on this node from local collection, printed as a node result."""
    argv = ["kpdoctor", "node", node, "--transport", "local", "--result-json", "--timeout", f"{timeout:g}"]
    if check_ids:
        argv += ["--checks", ",".join(check_ids)]
    return argv


@dataclass
class InPodRun:
    """The node results of one fan-out and what came back over the wire (bytes of stdout per node)."""

    results: dict[str, NodeResult] = field(default_factory=dict)
    received: dict[str, int] = field(default_factory=dict)
    leftovers: list[str] = field(default_factory=list)  # pods that could not be deleted
    interrupted: bool = False


def _failed(name: str, error: str, address: str = "") -> NodeResult:
    """A node without a result; the reason on one line (it may quote the API's or the runtime's text)."""
    return NodeResult(NodeState(name=name, transport="pod", address=address, error=" ".join(error.split())[:1000]))


def _last_line(stderr: bytes) -> str:
    """kpdoctor's one-line error is its last stderr line (a progress line may precede it)."""
    lines = [ln.strip() for ln in stderr.decode(errors="replace").splitlines() if ln.strip()]
    return lines[-1][:300] if lines else "no error output"


def with_unreachable_finding(result: NodeResult, node_checks: Sequence[Check]) -> NodeResult:
    """A node whose analysis failed gets the finding a central scan gives a node it could not reach."""
    if not result.node.reachable and not result.findings:
        result.findings = [unreachable_finding(result.node, node_checks)]
    return result


def analyze_node(name: str, transport: PodTransport, *, check_ids: Sequence[str], timeout: float,
                 strings: Interner) -> tuple[NodeResult, int]:  # fmt: skip
    """Create the pod, run the node side in it, decode its result; the pod is deleted before returning."""
    try:
        transport.connect(timeout)
        where = f"node {name} ({transport.address})"
        res = transport.run(node_argv(name, check_ids, timeout * 0.75), timeout=timeout, max_bytes=MAX_RESULT)
    except TransportError as exc:
        return _failed(name, str(exc)), 0
    finally:
        transport.close()
    received = len(res.stdout)
    said = res.error + res.stderr[-4096:].decode(errors="replace")
    # containerd's "failed to start exec ... OCI runtime exec failed: ... executable file not found": the
    # kubernetes client's error-channel parse cuts that text at 200 characters, before the reason
    if res.exit_code in (126, 127) or res.error == "not installed" or any(
            needle in said for needle in ("executable file not found", "failed to start exec")):
        return _failed(name, NO_KPDOCTOR.format(image=transport.image), transport.address), received
    if res.timed_out or res.truncated or res.exit_code != 0:
        why = ("timed out" if res.timed_out else f"result larger than {MAX_RESULT} bytes" if res.truncated
               else f"exit {res.exit_code}: " + (res.error or _last_line(res.stderr)))
        return _failed(name, f"in-pod analysis failed: {why}", transport.address), received
    try:
        result = decode(json.loads(res.stdout), where, strings)
    except (ValueError, RecursionError) as exc:  # json.loads: not JSON, or nested too deep
        return _failed(name, f"in-pod analysis: not JSON: {str(exc)[:200]}", transport.address), received
    except InputError as exc:
        return _failed(name, f"in-pod analysis: {exc}", transport.address), received
    if result.node.name != name:
        return _failed(name, f"in-pod analysis: the result is for node {result.node.name!r}",
                       transport.address), received
    result.node = NodeState(name=name, transport="pod", address=f"{transport.address} (analyzed in pod)",
                            error=result.node.error)  # fmt: skip
    return result, received


def analyze_nodes(names: Sequence[str], *, options: Any, image: str, cluster: Any, check_ids: Sequence[str],
                  reporter: Reporter | None = None, cancel: CancelToken | None = None) -> InPodRun:  # fmt: skip
    """Every node's in-pod analysis, at most options.concurrency at once. On Ctrl-C the fan-out's cancel closes
    (deletes) every pod; the nodes without a result are then failed ones and `interrupted` is set."""
    run = InPodRun()
    strings = Interner()
    lock = threading.Lock()

    def one(name: str, cancel: CancelToken) -> NodeState:
        transport = PodTransport(name, api=options.kube_api, cluster=cluster, image=image, namespace=NAMESPACE,
                                 lifetime_s=int(options.timeout), service_account=SERVICE_ACCOUNT)  # fmt: skip
        cancel.on_cancel(transport.close)
        result, received = analyze_node(name, transport, check_ids=check_ids, timeout=options.timeout, strings=strings)
        with lock:
            run.results[name] = result
            run.received[name] = received
            if transport.leftover:
                run.leftovers.append(transport.leftover)
        return result.node

    try:
        states = fan_out(names, one, concurrency=options.concurrency, node_timeout=options.timeout * 2,
                         reporter=reporter, cancel=cancel)  # fmt: skip
    except Interrupted as exc:  # Ctrl-C: the pods are deleted (cancel closed them); the rest is "not reached"
        states = exc.partial
        run.interrupted = True
    for name in names:  # interrupted, timed out or crashed before a result: the fan-out's reason
        if name not in run.results:
            state = states.get(name)
            run.results[name] = _failed(name, (state.error if state else "") or "interrupted before analysis")
    run.results = {n: run.results[n] for n in names if n in run.results}
    return run
