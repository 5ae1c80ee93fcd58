"""Which cluster objects a trace's --from/--to name, so the loaders read only those: the Services
("ns/name", parsed out of a 10,000-Service snapshot) and the namespaces whose Pods must be loaded
(the snapshot and live loaders keep only kube-system Pods unless asked, as for `kpdoctor why`)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

SERVICE_KINDS = ("svc", "service")


@dataclass(frozen=True)
class NamedObjects:
    services: frozenset[str]  # "ns/name"
    pod_namespaces: tuple[str, ...]  # in the order named, without repeats


def named_objects(values: Iterable[str | None]) -> NamedObjects:
    services: set[str] = set()
    namespaces: list[str] = []
    for value in values:
        if not value:
            continue
        kind, sep, rest = value.strip().partition("/")
        if not sep:
            continue
        if kind in SERVICE_KINDS:
            services.add(rest.split(":", 1)[0])
        elif kind == "pod":
            ns, sep2, _ = rest.partition("/")
            if sep2 and ns and ns not in namespaces:
                namespaces.append(ns)
    return NamedObjects(frozenset(services), tuple(namespaces))
