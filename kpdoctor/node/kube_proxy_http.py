"""kube-proxy's HTTP surfaces as the node gave them: Prometheus `/metrics` text (samples, histogram quantiles),
`/healthz` JSON and `/configz` JSON. None raises on odd input: an unreadable body is "not known" (None / empty).
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kpdoctor.cluster.config import KubeProxyConfig, config_from_dict
from kpdoctor.errors import InputError

# ----------------------------------------------------------------------- Prometheus


@dataclass(frozen=True, slots=True)
class Sample:
    name: str
    labels: Mapping[str, str]
    value: float

    def render(self) -> str:
        if not self.labels:
            return f"{self.name} {_fmt(self.value)}"
        inner = ",".join(f'{k}="{v}"' for k, v in self.labels.items())
        return f"{self.name}{{{inner}}} {_fmt(self.value)}"


def _fmt(value: float) -> str:
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def _parse_labels(text: str) -> dict[str, str]:
    """Lenient label parser: handles escaped quotes/backslashes and commas inside values."""
    labels: dict[str, str] = {}
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i] in " ,":
            i += 1
        eq = text.find("=", i)
        if eq < 0:
            break
        key = text[i:eq].strip()
        i = eq + 1
        if i < n and text[i] == '"':
            i += 1
            buf: list[str] = []
            while i < n and text[i] != '"':
                if text[i] == "\\" and i + 1 < n:
                    nxt = text[i + 1]
                    buf.append({"n": "\n", '"': '"', "\\": "\\"}.get(nxt, nxt))
                    i += 2
                    continue
                buf.append(text[i])
                i += 1
            i += 1
            labels[key] = "".join(buf)
        else:
            end = text.find(",", i)
            end = n if end < 0 else end
            labels[key] = text[i:end].strip()
            i = end
    return labels


def _parse_value(text: str) -> float | None:
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        lowered = text.lower()
        if lowered in ("+inf", "inf"):
            return math.inf
        if lowered == "-inf":
            return -math.inf
        if lowered == "nan":
            return math.nan
        return None


@dataclass(frozen=True)
class Metrics:
    """Parsed Prometheus text exposition, indexed by metric name."""

    samples: Mapping[str, tuple[Sample, ...]]

    def __contains__(self, name: str) -> bool:
        return name in self.samples

    def get(self, name: str, **labels: str) -> list[Sample]:
        """Samples of `name` whose labels include all of `labels` (extra labels are fine)."""
        return [s for s in self.samples.get(name, ()) if all(s.labels.get(k) == v for k, v in labels.items())]

    def value(self, name: str, **labels: str) -> float | None:
        """The sum over matching samples (e.g. over ip_family), or None when the metric is absent."""
        found = self.get(name, **labels)
        return sum(s.value for s in found) if found else None

    def histogram_quantile(self, q: float, name: str, **labels: str) -> float | None:
        """Prometheus-style quantile from cumulative `_bucket` samples, merged over other labels."""
        by_le: dict[float, float] = defaultdict(float)
        for s in self.get(name + "_bucket", **labels):
            le = _parse_value(s.labels.get("le", ""))
            if le is not None:
                by_le[le] += s.value
        if not by_le:
            return None
        bounds = sorted(by_le)
        total = by_le[bounds[-1]]
        if total <= 0:
            return None
        rank = q * total
        prev_bound, prev_count = 0.0, 0.0
        for bound in bounds:
            count = by_le[bound]
            if count >= rank:
                if math.isinf(bound):
                    return prev_bound
                if count == prev_count:
                    return bound
                return prev_bound + (bound - prev_bound) * (rank - prev_count) / (count - prev_count)
            prev_bound, prev_count = bound, count
        return bounds[-1]


def parse_metrics(text: str | None) -> Metrics:
    grouped: dict[str, list[Sample]] = defaultdict(list)
    for raw in (text or "").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        brace = line.find("{")
        space = line.find(" ")
        if brace >= 0 and (space < 0 or brace < space):
            close = line.rfind("}")
            if close < brace:
                continue
            name = line[:brace]
            labels = _parse_labels(line[brace + 1 : close])
            rest = line[close + 1 :].split()
        else:
            parts = line.split()
            name, labels, rest = parts[0], {}, parts[1:]
        if not rest:
            continue
        value = _parse_value(rest[0])
        if value is None:
            continue
        grouped[name].append(Sample(name, labels, value))
    return Metrics({k: tuple(v) for k, v in grouped.items()})


# --------------------------------------------------------------- kube-proxy surfaces


def parse_go_time(text: str | None) -> datetime | None:
    """RFC 3339 with nanoseconds (Go's time.Time JSON), trimmed to microseconds for Python."""
    if not text:
        return None
    match = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)?$", text.strip())
    if match is None:
        return None
    frac = (match.group(2) or "")[:7]
    tz = match.group(3) or "Z"
    tz = "+00:00" if tz == "Z" else tz
    try:
        return datetime.fromisoformat(match.group(1) + frac + tz)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class Healthz:
    healthy: bool | None  # None when the body has no "healthy" field (older kube-proxy)
    last_updated: datetime | None
    current_time: datetime | None
    node_eligible: bool | None
    families: Mapping[str, tuple[bool | None, datetime | None]]
    raw: str

    @property
    def age_seconds(self) -> float | None:
        """currentTime - lastUpdated as the node saw it (no clock skew between node and scanner)."""
        if self.last_updated is None or self.current_time is None:
            return None
        return (self.current_time - self.last_updated).total_seconds()


def _json_object(text: str | None) -> dict[str, Any] | None:
    """A JSON object body; None when absent, blank, not JSON or not an object."""
    if not text or not text.strip():
        return None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        return None
    return doc if isinstance(doc, dict) else None


def parse_healthz(text: str | None) -> Healthz | None:
    doc = _json_object(text)
    if doc is None:
        return None
    families: dict[str, tuple[bool | None, datetime | None]] = {}
    status = doc.get("status")
    if isinstance(status, dict):
        for fam, body in status.items():
            if isinstance(body, dict):
                healthy = body.get("healthy")
                families[str(fam)] = (
                    healthy if isinstance(healthy, bool) else None,
                    parse_go_time(body.get("lastUpdated")),
                )
    healthy = doc.get("healthy")
    eligible = doc.get("nodeEligible")
    return Healthz(
        healthy=healthy if isinstance(healthy, bool) else None,
        last_updated=parse_go_time(doc.get("lastUpdated")),
        current_time=parse_go_time(doc.get("currentTime")),
        node_eligible=eligible if isinstance(eligible, bool) else None,
        families=families,
        raw=(text or "").strip(),
    )


def parse_configz(text: str | None, *, source: str = "kube-proxy/configz.json") -> KubeProxyConfig | None:
    """/configz body -> KubeProxyConfig (None when absent or unreadable)."""
    doc = _json_object(text)
    if doc is None:
        return None
    try:
        return config_from_dict(doc, source=source)
    except (InputError, TypeError, ValueError):
        return None
