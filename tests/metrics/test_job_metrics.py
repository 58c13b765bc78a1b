"""The Python operators' metrics (the DataStream engine's, and the SQL engine's alert text),
on plain objects: what is counted, under which group names (they become the Prometheus
names and labels that the SQL engine's JVM counters have)."""

from __future__ import annotations

import time
from collections import Counter

import orjson

from fraudstream.detectors.base import Alert
from fraudstream.events.parse import ParseLimits
from fraudstream.flink.functions import AdmitFunction, CountDeadLetters
from fraudstream.flink.job_metrics import JobMetrics


class RecordingGroup:
    """PyFlink's MetricGroup, recording each counter by its path of groups."""

    def __init__(self, path: tuple = (), counts: Counter | None = None) -> None:
        self.path = path
        self.counts = Counter() if counts is None else counts

    def add_group(self, name: str, extra: str | None = None) -> RecordingGroup:
        return RecordingGroup((*self.path, name if extra is None else (name, extra)), self.counts)

    def counter(self, name: str) -> RecordingCounter:
        return RecordingCounter(self.counts, (*self.path, name))


class RecordingCounter:
    def __init__(self, counts: Counter, key: tuple) -> None:
        self.counts, self.key = counts, key

    def inc(self, n: int = 1) -> None:
        self.counts[self.key] += n


class Value:
    def __init__(self) -> None:
        self.v = None

    def value(self):
        return self.v

    def update(self, v) -> None:
        self.v = v


def _order(tx: str, t: int) -> bytes:
    return orjson.dumps(
        {
            "transaction_id": tx, "user_id": "u_1", "device_id": "d_1", "restaurant_id": "r_1",
            "amount": 300.0, "city": "Pune", "payment_method": "UPI", "event_time": t,
        }
    )  # fmt: skip


def test_admission_counts_every_record_read_and_the_dead_letters_are_counted_by_reason():
    group = RecordingGroup()
    fn = AdmitFunction(ParseLimits(), 5_000, raw_latin1=False, max_future_ms=60_000)
    fn.max_seen, fn.metrics = Value(), JobMetrics(group)
    dead = CountDeadLetters()
    dead.metrics = JobMetrics(group)
    now = int(time.time() * 1000)
    records = [
        _order("a", now - 100_000),
        _order("b", now - 90_000),
        b"   ",  # blank: skipped, not read as an order
        b"{broken",
        _order("c", now - 200_000),  # behind this reader's watermark
        _order("d", now + 3_600_000),  # an hour ahead of the clock
        _order("e", now - 80_000),
    ]
    reasons = Counter()
    for raw in records:
        for out in fn.process_element(("reader-0", raw), None):
            if isinstance(out, tuple):
                reasons[dead.map(out[1]).reason] += 1
    assert reasons["late"] == 1 and reasons["future"] == 1 and sum(reasons.values()) == 3
    counted = dict(group.counts)
    assert counted.pop(("fraudstream", "orders_in")) == 6
    assert {k[1][1]: v for k, v in counted.items() if k[1][0] == "reason"} == reasons
    assert all(k[0] == "fraudstream" and k[-1] == "dead_letters" for k in counted)


def test_alerts_are_counted_by_type_and_severity_and_counters_are_made_once():
    group = RecordingGroup()
    metrics = JobMetrics(group)
    alert = Alert("id", "VELOCITY_FRAUD", "HIGH", "u_1", "u_1", "d_1", "t_1", 10.0, 0, "m")
    for _ in range(3):
        metrics.alert(alert)
    metrics.count("orders_valid", 5)
    metrics.count("orders_valid", 2)
    assert group.counts == {
        ("fraudstream", ("alert_type", "VELOCITY_FRAUD"), ("severity", "HIGH"), "alerts"): 3,
        ("fraudstream", "orders_valid"): 7,
    }
    assert len(metrics._counters) == 2  # one counter per name and labels, reused


def test_functions_used_without_flink_count_nowhere():
    fn = AdmitFunction(ParseLimits(), 5_000, raw_latin1=False)
    fn.max_seen = Value()
    assert len(list(fn.process_element(("reader-0", b"{broken"), None))) == 1
