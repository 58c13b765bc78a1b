"""The job's own metrics from Python operators, in Flink's metric groups (PyFlink's
`get_metrics_group()`), named as the JVM's (jvm/src: JobMetrics.java) so both engines give
the same Prometheus series: one `fraudstream` group, a key-value group per label.

    fraudstream.counter("orders_in")                   -> ..._fraudstream_orders_in
    fraudstream.add_group("reason", r).counter(...)    -> ..._fraudstream_reason_dead_letters{reason=r}

(`...` = `flink_taskmanager_job_task_operator`; docs/metrics.md lists them all.)
"""

from __future__ import annotations

from typing import Any

from fraudstream.detectors.base import Alert

GROUP = "fraudstream"


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

    def inc(self, n: int = 1) -> None:
        pass
