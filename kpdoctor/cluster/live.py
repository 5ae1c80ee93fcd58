"""Load a ClusterState from a live API server with the kubernetes client (imported lazily).

Honours --kubeconfig, $KUBECONFIG, --context and in-cluster config. Every list
is paginated (limit/continue) so a 10,000-Service cluster is read in pages
instead of one giant response. Raw JSON is parsed by the same code as
snapshots, so a live cluster and its `kpdoctor collect` bundle cannot disagree.
An unreachable API or rejected credentials is UnreachableError (exit 3); a 403
on one kind is a ResourceGap in ClusterState.gaps (checks needing it say so),
never a crash. ServiceCIDRs (networking.k8s.io/v1, GA in 1.33) are read too:
kube-proxy's nftables mode drops traffic to unallocated ClusterIPs inside them.
A cluster that does not serve that API (404: older than 1.33, or the API
disabled) simply has none, which is what kube-proxy sees there as well.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from kpdoctor.cluster.incluster import load_incluster, serviceaccount_dir
from kpdoctor.cluster.kubeconfig import (
    NO_CREDENTIALS,
    check_kubeconfig,
    credentials_source,
    require_credentials,
)
from kpdoctor.cluster.model import WORKLOAD_PODS_GAP, ResourceGap
from kpdoctor.cluster.snapshot import load_objects
from kpdoctor.cluster.state import KUBE_SYSTEM, ClusterState
from kpdoctor.errors import InputError, UnreachableError

PAGE = 500
LOG_TAIL_LINES = 100
REQUEST_TIMEOUT = (10.0, 60.0)  # connect, read

# (bundle/snapshot name, Kind, API call suffix, namespaced in kube-system?)
KINDS: tuple[tuple[str, str, str, bool], ...] = (
    ("services", "Service", "core:list_service_for_all_namespaces", False),
    ("endpointslices", "EndpointSlice", "discovery:list_endpoint_slice_for_all_namespaces", False),
    ("nodes", "Node", "core:list_node", False),
    ("configmaps", "ConfigMap", "core:list_namespaced_config_map", True),
    ("daemonsets", "DaemonSet", "apps:list_namespaced_daemon_set", True),
    ("pods", "Pod", "core:list_namespaced_pod", True),
    ("servicecidrs", "ServiceCIDR", "networking:list_service_cidr", False),
)
# kinds whose API may legitimately not exist on the server: 404 means "none", not a gap
OPTIONAL_KINDS = frozenset({"ServiceCIDR"})


@dataclass
class LiveResult:
    state: ClusterState
    objects: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # raw API objects, for bundles
    logs: dict[str, str] = field(default_factory=dict)
    gaps: list[ResourceGap] = field(default_factory=list)
    server: str = ""


def kubeconfig_available() -> bool:
    """$KUBECONFIG, ~/.kube/config or in-cluster config exists: the live API can be tried without flags."""
    return credentials_source().kind != "none"


def api_client(kubeconfig: str | None = None, context: str | None = None) -> Any:
    """An ApiClient from --kubeconfig / $KUBECONFIG / ~/.kube/config (+ --context), else in-cluster config."""
    source = credentials_source(kubeconfig, context)
    if source.kind == "none":
        raise UnreachableError(NO_CREDENTIALS)
    from kubernetes import client, config

    cfg = client.Configuration()
    path = source.path
    try:
        if source.kind == "kubeconfig":
            user = check_kubeconfig(path, context)  # malformed: InputError (exit 2)
            try:
                config.load_kube_config(config_file=path, context=context, client_configuration=cfg,
                                        persist_config=False)  # fmt: skip
            except (TypeError, AttributeError, KeyError, IndexError) as exc:  # shapes check_kubeconfig let pass
                raise InputError(f"malformed kubeconfig: {exc}", where=path) from None
            require_credentials(cfg, user, path)
        else:
            path = str(serviceaccount_dir())  # named in errors
            load_incluster(cfg)
    except config.ConfigException as exc:
        raise UnreachableError(f"cannot load cluster credentials: {exc}", where=path or "kubeconfig") from None
    except (OSError, ValueError) as exc:  # unreadable file, bad YAML, failing exec credential plugin
        raise UnreachableError(f"cannot load cluster credentials: {exc}", where=path or "kubeconfig") from None
    cfg.retries = 1
    return client.ApiClient(cfg)


# Raw list paths of KINDS' calls. Reading them through ApiClient.param_serialize/call_api (auth, TLS and
# proxy exactly as the generated API classes do) skips importing CoreV1Api & co., which costs 1.5-5 s of
# start-up (pydantic model classes): the live read at 10k Services is measured against kubectl (issue 12).
RAW_PATHS: dict[str, str] = {
    "core:list_service_for_all_namespaces": "/api/v1/services",
    "discovery:list_endpoint_slice_for_all_namespaces": "/apis/discovery.k8s.io/v1/endpointslices",
    "core:list_node": "/api/v1/nodes",
    "core:list_namespaced_config_map": "/api/v1/namespaces/{namespace}/configmaps",
    "apps:list_namespaced_daemon_set": "/apis/apps/v1/namespaces/{namespace}/daemonsets",
    "core:list_namespaced_pod": "/api/v1/namespaces/{namespace}/pods",
    "networking:list_service_cidr": "/apis/networking.k8s.io/v1/servicecidrs",
    "core:read_namespaced_pod_log": "/api/v1/namespaces/{namespace}/pods/{name}/log",
}
_QUERY_NAMES = {"_continue": "continue", "tail_lines": "tailLines"}


class _RawCall:
    """One GET with the generated clients' calling convention (namespace/name positional, limit=, _continue=,
    _preload_content=False, _request_timeout=); raises ApiException on HTTP errors like they do."""

    def __init__(self, client_obj: Any, path: str) -> None:
        self.client, self.path = client_obj, path

    def __call__(self, *args: str, **kwargs: Any) -> Any:
        from kubernetes.client.exceptions import ApiException

        names = [n for n in ("name", "namespace") if "{" + n + "}" in self.path]
        path_params = dict(zip(sorted(names, key=lambda n: n != "name"), args, strict=False))
        timeout = kwargs.pop("_request_timeout", REQUEST_TIMEOUT)
        kwargs.pop("_preload_content", None)
        query = [(_QUERY_NAMES.get(k, k), str(v).lower() if isinstance(v, bool) else v)
                 for k, v in kwargs.items() if v is not None]  # fmt: skip
        method, url, headers, _, _ = self.client.param_serialize(
            "GET", self.path, path_params=path_params, query_params=query,
            header_params={"Accept": "application/json, */*"}, auth_settings=["BearerToken"])  # fmt: skip
        resp = self.client.call_api(method, url, header_params=headers, _request_timeout=timeout)
        resp.read()
        if not 200 <= resp.status <= 299:
            raise ApiException(http_resp=resp, body=resp.data.decode("utf-8", "replace") if resp.data else None)
        return resp


class _RawApi:
    def __init__(self, client_obj: Any) -> None:
        self.client = client_obj

    def __getattr__(self, method: str) -> _RawCall:
        for call_name, path in RAW_PATHS.items():
            if call_name.endswith(":" + method):
                return _RawCall(self.client, path)
        raise AttributeError(method)


def _apis(api_client_obj: Any) -> dict[str, Any]:
    if hasattr(api_client_obj, "param_serialize") and hasattr(api_client_obj, "call_api"):
        raw = _RawApi(api_client_obj)
        return {"core": raw, "discovery": raw, "apps": raw, "networking": raw}
    from kubernetes import client  # an older generated client: its API classes

    return {
        "core": client.CoreV1Api(api_client_obj),
        "discovery": client.DiscoveryV1Api(api_client_obj),
        "apps": client.AppsV1Api(api_client_obj),
        "networking": client.NetworkingV1Api(api_client_obj),
    }


def _is_connection_error(exc: BaseException) -> bool:
    import urllib3

    return isinstance(exc, urllib3.exceptions.HTTPError | ConnectionError | TimeoutError | OSError)


def _status(exc: BaseException) -> int | None:
    status = getattr(exc, "status", None)
    return status if isinstance(status, int) else None


def _raw_json(response: Any) -> Any:
    data = getattr(response, "data", response)
    if isinstance(data, bytes | bytearray | str):
        from kpdoctor.safeio import load_json

        try:
            return load_json(bytes(data) if isinstance(data, bytearray) else data, "API response")
        except InputError as exc:  # absurdly deep or non-finite: an invalid response (a gap), not a crash
            raise ValueError(str(exc)) from None
    return data


def list_all(
    call: Callable[..., Any], kind: str, *, namespace: str | None = None, page: int | None = None
) -> list[dict[str, Any]]:
    """Every object of a list call, page by page (limit/continue), as raw API dicts with `kind` set."""
    items: list[dict[str, Any]] = []
    token: str | None = None
    for _ in range(100000):  # bounded: one iteration per page
        kwargs: dict[str, Any] = {"limit": page or PAGE, "_preload_content": False, "_request_timeout": REQUEST_TIMEOUT}
        if token:
            kwargs["_continue"] = token
        doc = _raw_json(call(namespace, **kwargs) if namespace is not None else call(**kwargs))
        for item in doc.get("items") or []:
            item.setdefault("kind", kind)
            items.append(item)
        token = (doc.get("metadata") or {}).get("continue") or None
        if not token:
            break
    return items


def load_live(
    kubeconfig: str | None = None,
    context: str | None = None,
    *,
    client_obj: Any = None,
    with_logs: bool = True,
    pod_namespaces: Collection[str] = (),
) -> LiveResult:
    """Read the cluster: UnreachableError when the API cannot be used at all, ResourceGap per forbidden kind."""
    client_obj = client_obj if client_obj is not None else api_client(kubeconfig, context)
    server = str(getattr(getattr(client_obj, "configuration", None), "host", "") or "")
    apis = _apis(client_obj)
    objects: dict[str, list[dict[str, Any]]] = {}
    gaps: list[ResourceGap] = []
    for name, kind, call_name, namespaced in KINDS:
        group, method = call_name.split(":")
        call = getattr(apis[group], method, None)
        if call is None:  # a kubernetes client older than the API (ServiceCIDR v1 came with client 33)
            gaps.append(ResourceGap(kind, f"this kubernetes Python client cannot list {kind}s; upgrade it"))
            continue
        try:
            objects[name] = list_all(call, kind, namespace=KUBE_SYSTEM if namespaced else None)
        except Exception as exc:
            if kind in OPTIONAL_KINDS and _status(exc) == 404:
                objects[name] = []  # the API is not served: the cluster has none
                continue
            _classify(exc, kind, namespaced, server, gaps)
    if not any(kind not in OPTIONAL_KINDS and name in objects for name, kind, _, _ in KINDS):
        # every list was refused or failed: nothing was read, so nothing can pass (like the gate)
        reasons = "; ".join(f"{g.kind}: {g.reason}" for g in gaps[:3])
        raise UnreachableError(f"cannot read the cluster: every list failed ({reasons})", where=server or None)
    workload = _workload_pods(apis["core"], pod_namespaces, server, gaps)
    objects.setdefault("pods", []).extend(workload)
    state = load_objects(
        ((obj, f"{server} {name}") for name, objs in objects.items() for obj in objs), source=server or "live API",
        pod_namespaces=pod_namespaces,
    )
    logs: dict[str, str] = {}
    if with_logs:
        logs = _pod_logs(apis["core"], state, gaps)
    state = replace(state, logs=MappingProxyType(logs), gaps=tuple(gaps))
    return LiveResult(state, objects, logs, gaps, server)


def _workload_pods(core: Any, namespaces: Collection[str], server: str, gaps: list[ResourceGap]) -> list[dict[str, Any]]:
    """Pods of the asked namespaces (besides kube-system, which is always read); 403 -> a gap."""
    items: list[dict[str, Any]] = []
    for namespace in sorted(set(namespaces) - {KUBE_SYSTEM}):
        try:
            items += list_all(core.list_namespaced_pod, "Pod", namespace=namespace)
        except Exception as exc:
            status = _status(exc)
            if status is None and _is_connection_error(exc):
                raise UnreachableError(f"cannot reach the API server: {exc}", where=server or None) from None
            if status is None and not isinstance(exc, ValueError):
                raise
            why = f"forbidden (403): cannot list Pods in {namespace}" if status == 403 else \
                f"listing Pods in {namespace} failed: {f'HTTP {status}' if status else exc}"
            gaps.append(ResourceGap(WORKLOAD_PODS_GAP, why))
    return items


def _classify(exc: BaseException, kind: str, namespaced: bool, server: str, gaps: list[ResourceGap]) -> None:
    status = _status(exc)
    scope = f" in {KUBE_SYSTEM}" if namespaced else ""
    if status == 401:
        raise UnreachableError("the API server rejected the credentials (401 Unauthorized): the token or client "
                               "certificate is expired or invalid; refresh your kubeconfig", where=server) from None  # fmt: skip
    if status == 403:
        gaps.append(ResourceGap(kind, f"forbidden (403): cannot list {kind}s{scope}; RBAC needs list on it"))
        return
    if status is not None:
        gaps.append(ResourceGap(kind, f"listing {kind}s{scope} failed: HTTP {status} {getattr(exc, 'reason', '')}".strip()))
        return
    if _is_connection_error(exc):
        reason = str(getattr(exc, "reason", "") or exc).splitlines()[0][:300]
        raise UnreachableError(f"cannot reach the API server: {reason}", where=server or None) from None
    if isinstance(exc, ValueError):
        gaps.append(ResourceGap(kind, f"listing {kind}s{scope}: invalid response ({exc})"))
        return
    raise exc


def _pod_logs(core: Any, state: ClusterState, gaps: list[ResourceGap]) -> dict[str, str]:
    """Last lines of each kube-proxy and Cilium pod; a crash-looping container's previous run."""
    logs: dict[str, str] = {}
    for pod in (*state.kube_proxy_pods, *state.cilium_pods):
        container = next((c.name for c in pod.containers if c.name in ("kube-proxy", "cilium-agent")), None)
        container = container or (pod.containers[0].name if pod.containers else None)
        status = next((s for s in pod.container_statuses if s.name == container), None)
        previous = bool(status and status.state != "running" and status.restart_count > 0)
        try:
            resp = core.read_namespaced_pod_log(
                pod.name, pod.namespace, container=container, tail_lines=LOG_TAIL_LINES, previous=previous,
                _preload_content=False, _request_timeout=REQUEST_TIMEOUT,
            )  # fmt: skip
        except Exception as exc:
            status_code = _status(exc)
            if status_code == 403 and not any(g.kind == "pods/log" for g in gaps):
                gaps.append(ResourceGap("pods/log", "forbidden (403): cannot read kube-proxy pod logs"))
            if status_code is None and _is_connection_error(exc):
                raise UnreachableError(f"cannot reach the API server: {exc}") from None
            continue
        data = getattr(resp, "data", resp)
        logs[pod.key] = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else str(data)
    return logs
