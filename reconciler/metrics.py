"""Counters, gauges and histograms for every control-plane component, in Prometheus text form.

``capstan up`` makes one :class:`Registry` and one :class:`CapstanMetrics` on it and hands the
latter to each component (sync loop, controller manager, scheduler, node pool, API server);
each records its own figures and the HTTP server's ``GET /metrics`` renders the registry.

WHY our own ~150 lines and not ``prometheus_client``: its default registry is module-global
mutable state (tests that build two servers collide on metric names), and all Capstan needs is
the text exposition of three metric types. Every update takes one small per-metric lock, so
components on different threads may record concurrently.
"""

from __future__ import annotations

import abc
import math
import threading
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "DEFAULT_BUCKETS",
    "CapstanMetrics",
    "Counter",
    "Gauge",
    "Histogram",
    "Registry",
]

#: Seconds; fine at the low end, where API requests and store writes live.
DEFAULT_BUCKETS: tuple[float, ...] = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)

MetricType = Literal["counter", "gauge", "histogram"]
LabelValues = tuple[str, ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


class _Metric(abc.ABC):
    type: MetricType = "counter"

    def __init__(self, name: str, help_text: str, labels: Sequence[str]) -> None:
        self.name = name
        self.help = help_text
        self.label_names: LabelValues = tuple(labels)
        self._lock = threading.Lock()

    def _key(self, values: Sequence[str]) -> LabelValues:
        if len(values) != len(self.label_names):
            raise ValueError(
                f"{self.name} takes labels {self.label_names}, got {len(values)} values"
            )
        return tuple(str(v) for v in values)

    def _labels_text(self, values: LabelValues, extra: str = "") -> str:
        parts = [f'{n}="{_escape(v)}"' for n, v in zip(self.label_names, values, strict=True)]
        if extra:
            parts.append(extra)
        return "{" + ",".join(parts) + "}" if parts else ""

    @abc.abstractmethod
    def _samples(self) -> list[str]: ...

    def render(self) -> str:
        head = f"# HELP {self.name} {self.help}\n# TYPE {self.name} {self.type}\n"
        return head + "".join(line + "\n" for line in self._samples())


class _Scalar(_Metric):
    """A metric that is one number per label set (counters and gauges)."""

    def __init__(self, name: str, help_text: str, labels: Sequence[str] = ()) -> None:
        super().__init__(name, help_text, labels)
        self._values: dict[LabelValues, float] = {}

    def _add(self, amount: float, label_values: Sequence[str]) -> None:
        key = self._key(label_values)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, *label_values: str) -> float:
        with self._lock:
            return self._values.get(self._key(label_values), 0.0)

    def _samples(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        return [f"{self.name}{self._labels_text(k)} {_number(v)}" for k, v in items]


class Counter(_Scalar):
    """A value that only goes up. ``inc(amount, *label_values)``."""

    type: MetricType = "counter"

    def inc(self, amount: float = 1.0, *label_values: str) -> None:
        if amount < 0:
            raise ValueError("a counter only goes up")
        self._add(amount, label_values)


class Gauge(_Scalar):
    """A value that goes up and down. ``set(value, *label_values)``, ``inc``, ``dec``."""

    type: MetricType = "gauge"

    def set(self, value: float, *label_values: str) -> None:
        key = self._key(label_values)
        with self._lock:
            self._values[key] = float(value)

    def inc(self, amount: float = 1.0, *label_values: str) -> None:
        self._add(amount, label_values)

    def dec(self, amount: float = 1.0, *label_values: str) -> None:
        self._add(-amount, label_values)

    def remove(self, *label_values: str) -> None:
        """Forget one label set (a node that left the fleet)."""
        key = self._key(label_values)
        with self._lock:
            self._values.pop(key, None)


@dataclass
class _Series:
    counts: list[int]
    total: float = 0.0
    count: int = 0


class Histogram(_Metric):
    """Observations counted into cumulative buckets. ``observe(seconds, *label_values)``."""

    type: MetricType = "histogram"

    def __init__(
        self,
        name: str,
        help_text: str,
        labels: Sequence[str] = (),
        *,
        buckets: Sequence[float] = DEFAULT_BUCKETS,
    ) -> None:
        super().__init__(name, help_text, labels)
        self.buckets = tuple(sorted(buckets))
        self._series: dict[LabelValues, _Series] = {}

    def observe(self, value: float, *label_values: str) -> None:
        key = self._key(label_values)
        index = bisect_left(self.buckets, value)
        with self._lock:
            series = self._series.get(key)
            if series is None:
                series = self._series[key] = _Series([0] * len(self.buckets))
            if index < len(self.buckets):
                series.counts[index] += 1
            series.total += value
            series.count += 1

    def count(self, *label_values: str) -> int:
        with self._lock:
            series = self._series.get(self._key(label_values))
            return series.count if series else 0

    def _samples(self) -> list[str]:
        with self._lock:
            snapshot = sorted(
                (k, list(s.counts), s.total, s.count) for k, s in self._series.items()
            )
        lines: list[str] = []
        for key, counts, total, count in snapshot:
            cumulative = 0
            for bound, n in zip(self.buckets, counts, strict=True):
                cumulative += n
                le = self._labels_text(key, f'le="{_number(bound)}"')
                lines.append(f"{self.name}_bucket{le} {cumulative}")
            inf = self._labels_text(key, 'le="+Inf"')
            lines.append(f"{self.name}_bucket{inf} {count}")
            lines.append(f"{self.name}_sum{self._labels_text(key)} {_number(total)}")
            lines.append(f"{self.name}_count{self._labels_text(key)} {count}")
        return lines


class Registry:
    """The metrics of one process. Names are unique; :meth:`render` is ``GET /metrics``."""

    def __init__(self) -> None:
        self._metrics: dict[str, _Metric] = {}
        self._lock = threading.Lock()

    def _add(self, metric: _Metric) -> None:
        with self._lock:
            if metric.name in self._metrics:
                raise ValueError(f"metric {metric.name} is already registered")
            self._metrics[metric.name] = metric

    def counter(self, name: str, help_text: str, *, labels: Sequence[str] = ()) -> Counter:
        metric = Counter(name, help_text, labels)
        self._add(metric)
        return metric

    def gauge(self, name: str, help_text: str, *, labels: Sequence[str] = ()) -> Gauge:
        metric = Gauge(name, help_text, labels)
        self._add(metric)
        return metric

    def histogram(
        self,
        name: str,
        help_text: str,
        *,
        labels: Sequence[str] = (),
        buckets: Sequence[float] = DEFAULT_BUCKETS,
    ) -> Histogram:
        metric = Histogram(name, help_text, labels, buckets=buckets)
        self._add(metric)
        return metric

    def render(self) -> str:
        """Prometheus text exposition format 0.0.4."""
        with self._lock:
            metrics = sorted(self._metrics.values(), key=lambda m: m.name)
        return "".join(metric.render() for metric in metrics)


@dataclass(frozen=True)
class CapstanMetrics:
    """Every metric Capstan exposes, registered on one :class:`Registry`. Components receive
    this object and record into the field that is theirs (see ``docs/api.md``)."""

    registry: Registry
    sync_duration: Histogram
    sync_total: Counter
    workqueue_depth: Gauge
    reconcile_duration: Histogram
    scheduler_attempts: Counter
    node_connected: Gauge
    node_push: Histogram
    store_revision: Gauge
    store_write: Histogram
    http_requests: Counter
    http_request_duration: Histogram

    @classmethod
    def create(cls, registry: Registry | None = None) -> CapstanMetrics:
        r = registry or Registry()
        return cls(
            registry=r,
            sync_duration=r.histogram(
                "capstan_sync_duration_seconds",
                "Time to apply one Git commit.",
                buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
            ),
            sync_total=r.counter(
                "capstan_sync_total",
                "Syncs by result (applied, noop, invalid, failed).",
                labels=("result",),
            ),
            workqueue_depth=r.gauge(
                "capstan_workqueue_depth",
                "Keys waiting in a controller's queue.",
                labels=("controller",),
            ),
            reconcile_duration=r.histogram(
                "capstan_reconcile_duration_seconds",
                "Time of one reconcile call.",
                labels=("controller",),
            ),
            scheduler_attempts=r.counter(
                "capstan_scheduler_attempts_total",
                "Scheduling attempts by result (scheduled, unschedulable, error).",
                labels=("result",),
            ),
            node_connected=r.gauge(
                "capstan_node_connected",
                "1 while the node's agent channel is up, else 0.",
                labels=("node",),
            ),
            node_push=r.histogram(
                "capstan_node_push_seconds", "Time to push a node's desired pod set."
            ),
            store_revision=r.gauge("capstan_store_revision", "The store's current revision."),
            store_write=r.histogram(
                "capstan_store_write_seconds", "Time of one API write (store transaction)."
            ),
            http_requests=r.counter(
                "capstan_http_requests_total",
                "HTTP API requests.",
                labels=("verb", "resource", "code"),
            ),
            http_request_duration=r.histogram(
                "capstan_http_request_duration_seconds",
                "HTTP API request latency (watches: time to first byte).",
                labels=("verb", "resource"),
            ),
        )
