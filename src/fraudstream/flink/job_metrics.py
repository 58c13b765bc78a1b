"""The job's own metrics from Python operators, in Flink's metric groups (PyFlink's
`get_metrics_group()`), named as the JVM's (jvm/src: JobMetrics.java) so both engines give
the same Prometheus series: one `fraudstream` group, a key-value group per label.

    fraudstream.counter("orders_in")                   -> ..._fraudstream_orders_in
    fraudstream.add_group("reason", r).counter(...)    -> ..._fraudstream_reason_dead_letters{reason=r}

(`...` = `flink_taskmanager_job_task_operator`; docs/metrics.md lists them all.)
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from typing import Any

from fraudstream.detectors.base import Alert

GROUP = "fraudstream"
# The quantiles of `alert_latency_ms`, as the JVM's histogram reports them (Flink's Prometheus summary).
QUANTILES = ("0.5", "0.75", "0.95", "0.98", "0.99", "0.999")
WINDOW = 10_000  # latencies kept for the quantiles: the newest, as the JVM's DescriptiveStatisticsHistogram


class LatencyWindow:
    """The newest `size` latencies and their quantiles (nearest rank), recomputed only when a
    value was added since the last read: Flink reads a gauge at every scrape, not per alert."""

    def __init__(self, size: int = WINDOW) -> None:
        self.values: deque[int] = deque(maxlen=size)
        self.count = 0
        self._sorted: list[int] | None = None

    def add(self, ms: int) -> None:
        self.values.append(ms)
        self.count += 1
        self._sorted = None

    def quantile(self, q: float) -> int:
        """An int, as PyFlink's process mode ships gauges as Beam int64 gauges; 0 while empty
        (the gauges are registered at the first latency, so Prometheus sees none before)."""
        if not self.values:
            return 0
        if self._sorted is None:
            self._sorted = sorted(self.values)
        ranked = self._sorted
        return ranked[min(len(ranked) - 1, max(0, math.ceil(q * len(ranked)) - 1))]


class JobMetrics:
    """Counters of one operator, created on first use (a label value is a group of its own).

    `group` is any object with PyFlink's `MetricGroup` methods (`add_group(key, value)`,
    `counter(name)`); `from_context` takes it from a function's runtime context."""

    def __init__(self, group: Any) -> None:
        self.group = group.add_group(GROUP)
        self._counters: dict[tuple[str, tuple[tuple[str, str], ...]], Any] = {}

    @classmethod
    def from_context(cls, runtime_context: Any) -> JobMetrics:
        return cls(runtime_context.get_metrics_group())

    def count(self, name: str, n: int = 1, **labels: str) -> None:
        key = (name, tuple(labels.items()))
        counter = self._counters.get(key)
        if counter is None:
            group = self.group
            for label, value in labels.items():
                group = group.add_group(label, value)
            counter = self._counters[key] = group.counter(name)
        counter.inc(n)

    @classmethod
    def unregistered(cls) -> JobMetrics:
        """Counters that go nowhere: for a function used without Flink (tests, replays)."""
        return cls(_Nowhere())

    def gauge(self, name: str, value: Callable[[], int], **labels: str) -> None:
        """A value Flink reads when it reports (PyFlink: a callable)."""
        group = self.group
        for label, v in labels.items():
            group = group.add_group(label, v)
        group.gauge(name, value)

    def latency(self, window: LatencyWindow) -> None:
        """`alert_latency_ms` of the Python cooldown: a gauge per quantile of `window` (PyFlink
        has no histogram, and its `distribution` reaches Prometheus as one number, not
        quantiles) and `alert_latency_ms_count`, as the JVM's summary names its count."""
        for q in QUANTILES:
            self.gauge("alert_latency_ms", lambda q=float(q): window.quantile(q), quantile=q)
        self.gauge("alert_latency_ms_count", lambda: window.count)

    def dead_letter(self, reason: str) -> None:
        self.count("dead_letters", reason=reason)

    def alert(self, alert: Alert) -> None:
        self.count("alerts", alert_type=alert.alert_type, severity=alert.severity)


class _Nowhere:
    """A metric group (and counter) that records nothing, like Flink's UnregisteredMetricsGroup."""

    def add_group(self, name: str, extra: str | None = None) -> _Nowhere:
        return self

    def counter(self, name: str) -> _Nowhere:
        return self

    def gauge(self, name: str, value: Any) -> None:
        pass

    def inc(self, n: int = 1) -> None:
        pass
