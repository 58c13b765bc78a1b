"""The Python operators' metrics (the DataStream engine's, and the SQL engine's alert text),
on plain objects: what is counted, under which group names (they become the Prometheus
names and labels that the SQL engine's JVM counters have)."""

from __future__ import annotations

import dataclasses
import time
from collections import Counter

import orjson

from fraudstream.detectors import AlertDeduplicator
from fraudstream.detectors.base import Alert
from fraudstream.detectors.high_value import HighValueDetector
from fraudstream.events.model import Order
from fraudstream.events.parse import ParseLimits
from fraudstream.flink.functions import MIN_WATERMARK, AdmitFunction, CountDeadLetters, DedupFunction, DetectorFunction
from fraudstream.flink.job_metrics import JobMetrics, LatencyWindow
from fraudstream.store.mirror import copier_lag


class RecordingGroup:
    """PyFlink's MetricGroup, recording each counter by its path of groups."""

    def __init__(self, path: tuple = (), counts: Counter | None = None, gauges: dict | None = None) -> None:
        self.path = path
        self.counts = Counter() if counts is None else counts
        self.gauges = {} if gauges is None else gauges  # path -> the gauge's callable

    def add_group(self, name: str, extra: str | None = None) -> RecordingGroup:
        return RecordingGroup((*self.path, name if extra is None else (name, extra)), self.counts, self.gauges)

    def counter(self, name: str) -> RecordingCounter:
        return RecordingCounter(self.counts, (*self.path, name))

    def gauge(self, name: str, value) -> None:
        assert (*self.path, name) not in self.gauges, "a gauge registered twice"
        self.gauges[(*self.path, name)] = value


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

    def clear(self) -> None:
        self.v = None


class MapValue(dict):
    """PyFlink's MapState on a dict."""

    def put(self, k, v) -> None:
        self[k] = v

    def remove(self, k) -> None:
        del self[k]


class ListValue(Value):
    def get(self):
        return self.v


class Runtime:
    """A runtime context: keyed state of one key, and the metric group."""

    def __init__(self, group: RecordingGroup) -> None:
        self.group = group

    def get_state(self, descriptor) -> Value:
        return Value()

    def get_map_state(self, descriptor) -> MapValue:
        return MapValue()

    def get_list_state(self, descriptor) -> ListValue:
        return ListValue()

    def get_metrics_group(self) -> RecordingGroup:
        return self.group


class Timers:
    def __init__(self) -> None:
        self.watermark = MIN_WATERMARK
        self.timers: set[int] = set()

    def current_watermark(self) -> int:
        return self.watermark

    def register_event_time_timer(self, t: int) -> None:
        self.timers.add(t)

    def delete_event_time_timer(self, t: int) -> None:
        self.timers.discard(t)


class Ctx:
    def __init__(self) -> None:
        self.timers = Timers()

    def timer_service(self) -> Timers:
        return self.timers


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


def _plain_order(tx: str, t: int, amount: float = 300.0) -> Order:
    return Order(tx, "u_1", "d_1", "r_1", amount, "Pune", "UPI", t)


def test_the_detector_step_counts_valid_orders_after_its_own_late_check_and_measures_the_lag():
    """The device-keyed step (count_valid) turns an order behind its watermark into a `late`
    dead letter: counted as that, not also as valid. The user-keyed step (measure_lag) has
    `event_time_lag_ms` from its first watermark on, none before."""
    group = RecordingGroup()
    fn = DetectorFunction([HighValueDetector(1500.0)], ParseLimits(), count_valid=True, measure_lag=True)
    fn.open(Runtime(group))
    ctx = Ctx()
    assert list(fn.process_element(_plain_order("early", 50_000), ctx)) == []  # before any watermark
    assert group.gauges == {}, "no lag before the first watermark"
    ctx.timers.watermark = 60_000
    late = list(fn.process_element(_plain_order("late", 60_000), ctx))  # at the watermark: late
    assert [(tag.tag_id, d.reason) for tag, d in late] == [("dead-letters", "late")]
    before = int(time.time() * 1000)
    assert list(fn.process_element(_plain_order("big", 70_000, 2500.0), ctx)) == []
    assert group.counts == {("fraudstream", "orders_valid"): 2}  # "early" and "big", not "late"
    lag = group.gauges[("fraudstream", "event_time_lag_ms")]
    assert before - 60_000 <= lag() <= int(time.time() * 1000) - 60_000
    ctx.timers.watermark = 70_000
    alerts = list(fn.on_timer(70_000, ctx))
    assert [a.transaction_id for a in alerts] == ["big"]
    # the alert carries when its order arrived here, for the cooldown's latency
    assert before <= alerts[0].detected_at <= int(time.time() * 1000)

    dedup = DedupFunction(AlertDeduplicator(60_000))
    dedup.open(Runtime(group))
    emitted = list(
        dedup.process_element(dataclasses.replace(alerts[0], detected_at=alerts[0].detected_at - 4_000), ctx)
    )
    assert len(emitted) == 1 and emitted[0].detected_at >= before
    assert group.gauges[("fraudstream", "alert_latency_ms_count")]() == 1
    p99 = group.gauges[("fraudstream", ("quantile", "0.99"), "alert_latency_ms")]()
    assert 4_000 <= p99 < 10_000


def test_the_latency_window_keeps_the_newest_and_ranks_them():
    window = LatencyWindow(size=100)
    assert window.quantile(0.5) == 0
    for ms in range(1, 201):
        window.add(ms)
    assert window.count == 200  # every latency counted, the newest 100 kept
    assert (window.quantile(0.5), window.quantile(0.99), window.quantile(1.0)) == (150, 199, 200)


def test_copier_lag_counts_from_the_partitions_low_offset_when_nothing_was_copied_yet():
    """A partition whose first 40 records retention deleted: a copier that copied nothing is
    behind by the 10 left, not by 50."""
    assert copier_lag(low=40, high=50, position=-1, next_offset=0) == 10
    assert copier_lag(low=40, high=50, position=45, next_offset=44) == 5
    assert copier_lag(low=0, high=50, position=-1, next_offset=50) == 0


def test_the_reporters_endpoint_is_read_from_what_it_wrote(tmp_path, caplog):
    """What `run` prints: the URL of the port the reporter got, or one warning saying why not
    (the reporter's own words: the Java side writes them, tests/metrics/test_prometheus_run.py
    reads a real one)."""
    from fraudstream.config import load_settings
    from fraudstream.flink.reporter import endpoint, status_file

    settings = load_settings(flags={"data_dir": str(tmp_path)}, environ={})
    path = status_file(settings, "job-1")
    path.parent.mkdir(parents=True)
    path.write_text("port 9251\n")
    assert endpoint(settings, "job-1", 0) == "http://127.0.0.1:9251/metrics"
    why = "no free port for the Prometheus reporter on 127.0.0.1 (tried 9249; the last: java.net.BindException: x)"
    path.write_text(f"error {why}\n")
    with caplog.at_level("WARNING", logger="fraudstream.flink.reporter"):
        assert endpoint(settings, "job-1", 0) is None
        assert endpoint(settings, "job-2", 0.2) is None  # said nothing
    assert [r.getMessage() for r in caplog.records][0] == f"the job's metrics are not exposed: {why}"
    assert "said nothing within" in caplog.records[1].getMessage()
    off = load_settings(flags={"data_dir": str(tmp_path), "metrics.enabled": "false"}, environ={})
    assert endpoint(off, "job-1", 0) is None


class _Conf:
    """The two calls `reporter.configure` makes of Flink's Configuration, on a dict."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values = dict(values)

    def get_string(self, key: str, default: str) -> str:
        return self.values.get(key, default)

    def set_string(self, key: str, value: str) -> None:
        self.values[key] = value


def test_a_missing_reporter_jar_is_said_once_and_run_does_not_wait_for_the_reporter(tmp_path, caplog):
    """Without our jar the reporter never starts: `endpoint` must say so at once (one warning),
    not wait its timeout for a status the reporter will never write."""
    import time

    from fraudstream.config import load_settings
    from fraudstream.flink.reporter import configure, endpoint

    settings = load_settings(flags={"data_dir": str(tmp_path), "broker.jars_dir": str(tmp_path / "nojars")}, environ={})
    conf = _Conf({"$internal.pipeline.job-id": "job-9"})
    with caplog.at_level("WARNING", logger="fraudstream.flink.reporter"):
        configure(conf, settings)  # type: ignore[arg-type]
        started = time.monotonic()
        assert endpoint(settings, "job-9", 10.0) is None
        waited = time.monotonic() - started
    assert waited < 1.0
    assert not any(k.startswith("metrics.reporter.") for k in conf.values)
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1 and "fraudstream-flink.jar not found" in messages[0], messages
