"""Thin Flink glue: load state, call the pure rule, store state, emit.

Nothing here decides what is fraud; that lives in `fraudstream.detectors`.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

import orjson
from pyflink.common import Types
from pyflink.common.watermark_strategy import TimestampAssigner
from pyflink.datastream import OutputTag
from pyflink.datastream.functions import KeyedProcessFunction, MapFunction, RuntimeContext
from pyflink.datastream.state import ListStateDescriptor, MapStateDescriptor, ValueStateDescriptor

from fraudstream.detectors.base import Alert, Detector
from fraudstream.detectors.dedup import AlertDeduplicator, DedupState
from fraudstream.events.model import DeadLetter, Order
from fraudstream.events.parse import ParseLimits, dead_letter, parse_record
from fraudstream.events.redelivery import Redelivery
from fraudstream.flink.job_metrics import JobMetrics, LatencyWindow

DEAD_LETTERS = OutputTag("dead-letters", Types.PICKLED_BYTE_ARRAY())
# The orders a re-delivery check let through, for the steps keyed otherwise and the archive.
ADMITTED = OutputTag("admitted", Types.PICKLED_BYTE_ARRAY())


MIN_WATERMARK = -(2**63)  # Flink's watermark before the first: Long.MIN_VALUE


logger = logging.getLogger(__name__)
_announced: list[bool] = []


def announce_origin() -> None:
    """Log once per Python worker where its `fraudstream` package was imported from: on a
    cluster, the directory the job shipped (python.files), never a path of the submitting machine."""
    if _announced:
        return
    _announced.append(True)
    import fraudstream

    logger.warning("fraudstream worker: package imported from %s", fraudstream.__file__)


def now_ms() -> int:
    return int(time.time() * 1000)


def _subtask_index(ctx: RuntimeContext) -> int:
    try:
        return ctx.get_index_of_this_subtask()
    except AttributeError:
        # Thread mode on Flink 2: PyFlink asks the Java context for a method that moved to
        # its TaskInfo.
        return ctx._runtime_context.getTaskInfo().getIndexOfThisSubtask()  # type: ignore[attr-defined]


class TagReader(MapFunction):
    """Pairs each raw record with its reader's admission key, so that admission, which is
    keyed, keeps per-reader state that checkpoints restore (plain functions have none)."""

    def __init__(self, keys: list[str]) -> None:
        self.keys = keys

    def open(self, runtime_context: RuntimeContext) -> None:
        self.key = self.keys[_subtask_index(runtime_context)]

    def map(self, value: Any) -> tuple[str, Any]:
        return self.key, value


class AdmitFunction(KeyedProcessFunction):
    """Parse and validate raw lines; reject bad records and late events as dead letters.

    Keyed by reader (see `TagReader`): each key is one source reader, and its subtask sees
    only that reader's records, in the reader's order. Lateness is judged against the newest
    event time this reader has admitted, minus the out-of-orderness bound: the same watermark
    Flink's bounded-out-of-orderness strategy computes, but without its periodic emission
    delay, so which events count as late depends only on the input order, never on timing.
    That newest time is keyed state, so a resumed run judges exactly as an uninterrupted one.

    With `max_future_ms` (> 0), an order stamped further ahead of the wall clock is `future`,
    and the newest time never runs past the clock plus that skew. Admitted orders never exceed
    it, so only a checkpoint made under a laxer limit (or a clock stepped far back) can hold a
    newest time beyond it: one this setting could not have produced, left by an order it
    rejects. That value is dropped when read, and the reader starts afresh with its next
    order, as at the start of a run; kept, or only lowered to the cap, it would make the
    honest orders after a `--resume` late (for days, or for the skew).
    """

    metrics = JobMetrics.unregistered()  # open() gives the operator's: orders_in

    def __init__(self, limits: ParseLimits, out_of_orderness_ms: int, raw_latin1: bool, max_future_ms: int = 0) -> None:
        self.limits = limits
        self.bound = out_of_orderness_ms
        # The file source decodes bytes as ISO-8859-1 so that undecodable UTF-8 survives
        # losslessly; re-encoding gives back the exact bytes.
        self.raw_latin1 = raw_latin1
        # An order stamped far in the future would drag this reader's watermark along and
        # make every honest order after it late; it is rejected instead (0 = no check).
        self.max_future_ms = max_future_ms

    def open(self, runtime_context: RuntimeContext) -> None:
        self.max_seen = runtime_context.get_state(ValueStateDescriptor("max_seen", Types.LONG()))
        self.metrics = JobMetrics.from_context(runtime_context)

    def process_element(self, value: tuple[str, Any], ctx: KeyedProcessFunction.Context):
        line = value[1]
        raw: str | bytes = line.encode("latin-1") if self.raw_latin1 else line
        result = parse_record(raw, self.limits)
        if result is None:
            return
        self.metrics.count("orders_in")
        if isinstance(result, DeadLetter):
            yield DEAD_LETTERS, result
            return
        t = result.event_time
        max_seen = self.max_seen.value()
        if self.max_future_ms:
            cap = now_ms() + self.max_future_ms
            if t > cap:
                yield (
                    DEAD_LETTERS,
                    self._reject(
                        raw, "future", f"event_time {t} is more than {self.max_future_ms} ms ahead of the clock", t
                    ),
                )
                return
            if max_seen is not None and max_seen > cap:
                max_seen = None  # this order is admitted below and takes its place
        if max_seen is not None and t <= max_seen - self.bound - 1:
            yield (
                DEAD_LETTERS,
                self._reject(raw, "late", f"event_time {t} is behind the watermark {max_seen - self.bound - 1}", t),
            )
            return
        if max_seen is None or t > max_seen:
            self.max_seen.update(t)
        yield result

    def _reject(self, raw: str | bytes, reason: str, detail: str, event_time: int) -> DeadLetter:
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        return dead_letter(reason, detail, text, self.limits, event_time=event_time)


class OrderTimestamps(TimestampAssigner):
    def extract_timestamp(self, value: Any, record_timestamp: int) -> int:
        return value.event_time


class _StateBinding:
    """Maps one rule's plain state object (a detector's, or `Redelivery`'s) onto Flink keyed
    state, field by field: list -> ListState, dict -> MapState, anything else -> ValueState."""

    def __init__(self, ctx: RuntimeContext, detector: Detector | Redelivery) -> None:
        self.detector = detector
        prefix = type(detector).__name__
        self.fields: list[tuple[str, str, Any]] = []
        empty = detector.new_state()
        for f in dataclasses.fields(empty):
            name = f"{prefix}.{f.name}"
            default = getattr(empty, f.name)
            if isinstance(default, list):
                handle = ctx.get_list_state(ListStateDescriptor(name, Types.PICKLED_BYTE_ARRAY()))
                self.fields.append((f.name, "list", handle))
            elif isinstance(default, dict):
                handle = ctx.get_map_state(
                    MapStateDescriptor(name, Types.PICKLED_BYTE_ARRAY(), Types.PICKLED_BYTE_ARRAY())
                )
                self.fields.append((f.name, "map", handle))
            else:
                handle = ctx.get_state(ValueStateDescriptor(name, Types.PICKLED_BYTE_ARRAY()))
                self.fields.append((f.name, "value", handle))

    def load(self) -> Any:
        state = self.detector.new_state()
        for name, kind, handle in self.fields:
            if kind == "list":
                setattr(state, name, list(handle.get() or ()))
            elif kind == "map":
                setattr(state, name, dict(handle.items()))
            else:
                value = handle.value()
                if value is not None:
                    setattr(state, name, value)
        return state

    def store(self, state: Any) -> None:
        for name, kind, handle in self.fields:
            value = getattr(state, name)
            if kind == "list":
                handle.update(value)
            elif kind == "map":
                # put() per entry: put_all() takes a dict in thread mode but pairs in process mode.
                handle.clear()
                for k, v in value.items():
                    handle.put(k, v)
            elif value is None:
                handle.clear()
            else:
                handle.update(value)

    def clear(self) -> None:
        for _, _, handle in self.fields:
            handle.clear()


def _order_dead_letter(reason: str, detail: str, order: Order, limits: ParseLimits) -> DeadLetter:
    """A dead letter for an order already parsed: its fields, re-encoded, stand for the record."""
    return dead_letter(reason, detail, orjson.dumps(order.to_dict()).decode(), limits, event_time=order.event_time)


class DetectorFunction(KeyedProcessFunction):
    """Runs the detectors that share one key (user or device) in event-time order.

    Orders are buffered per event time and evaluated when the watermark passes that time,
    so results never depend on arrival order within the out-of-orderness bound. One
    cleanup timer per key, `horizon` after its newest order, drops all of its state.

    Keyed by user, it is also where an order delivered twice counts once: with `redelivery`,
    each batch first goes through it (`fraudstream.events.redelivery`), in arrival order, so
    of two copies the earlier-stamped one is kept, and at one instant the first to arrive.
    Re-deliveries become `duplicate` dead letters; the orders let through go on to the rules
    and to the `ADMITTED` side output (for the device-keyed rules and the archive).
    """

    # open() gives the operator's: with `count_valid`, each order that arrives in time is
    # `orders_valid`; with `measure_lag`, the gauge `event_time_lag_ms`
    metrics = JobMetrics.unregistered()
    watermark_seen: int | None = None

    def __init__(
        self,
        detectors: list[Detector],
        limits: ParseLimits,
        redelivery: Redelivery | None = None,
        count_valid: bool = False,
        measure_lag: bool = False,
    ) -> None:
        self.detectors = detectors
        # Set on the user-keyed step, the first after the watermarks are taken (as the SQL
        # engine's `redelivery`): wall clock minus the newest watermark this subtask saw.
        self.measure_lag = measure_lag
        # Set on the device-keyed step, which receives each order the re-delivery check let
        # through once: counted on arrival, as counters bumped in on_timer are lost in
        # PyFlink's process mode (only thread mode reports them).
        self.count_valid = count_valid
        self.limits = limits
        self.redelivery = redelivery
        self.horizon = max([d.horizon_ms() for d in detectors] + ([redelivery.horizon_ms] if redelivery else []))

    def open(self, runtime_context: RuntimeContext) -> None:
        announce_origin()
        self.pending = runtime_context.get_map_state(
            MapStateDescriptor("pending", Types.LONG(), Types.PICKLED_BYTE_ARRAY())
        )
        self.cleanup_at = runtime_context.get_state(ValueStateDescriptor("cleanup_at", Types.LONG()))
        # when the first order of each waiting instant arrived here (wall clock): the start of
        # its alerts' latency, carried to the cooldown in the alert's `detected_at`
        self.arrived = runtime_context.get_map_state(MapStateDescriptor("arrived_at", Types.LONG(), Types.LONG()))
        self.bindings = [_StateBinding(runtime_context, d) for d in self.detectors]
        self.redelivered = _StateBinding(runtime_context, self.redelivery) if self.redelivery else None
        self.metrics = JobMetrics.from_context(runtime_context)

    def saw_watermark(self, watermark: int) -> None:
        """Note the watermark for `event_time_lag_ms`; the gauge is registered at the first
        real one (before it, Flink's watermark is Long.MIN_VALUE and a lag means nothing)."""
        if not self.measure_lag or watermark <= MIN_WATERMARK:
            return
        if self.watermark_seen is None:
            self.metrics.gauge("event_time_lag_ms", self.lag_ms)
        self.watermark_seen = watermark

    def lag_ms(self) -> int:
        seen = self.watermark_seen
        return 0 if seen is None else max(0, now_ms() - seen)

    def process_element(self, value: Order, ctx: KeyedProcessFunction.Context):
        t = value.event_time
        watermark = ctx.timer_service().current_watermark()
        self.saw_watermark(watermark)
        if t <= watermark:  # possible after idleness, as this runs behind a shuffle
            detail = f"event_time {t} is behind the watermark {watermark}"
            yield DEAD_LETTERS, _order_dead_letter("late", detail, value, self.limits)
            return
        if self.count_valid:  # after the late check: a late order is a dead letter, not valid
            self.metrics.count("orders_valid")
        waiting = self.pending.get(t)
        self.pending.put(t, [value] if waiting is None else [*waiting, value])
        if waiting is None:
            self.arrived.put(t, now_ms())
        ctx.timer_service().register_event_time_timer(t)

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext):
        self.saw_watermark(ctx.timer_service().current_watermark())
        batch = self.pending.get(timestamp)
        if batch is None:
            if self.cleanup_at.value() == timestamp:
                for binding in self.bindings:
                    binding.clear()
                if self.redelivered is not None:
                    self.redelivered.clear()
                self.cleanup_at.clear()
            return
        self.pending.remove(timestamp)
        arrived = self.arrived.get(timestamp)
        self.arrived.remove(timestamp)
        if self.redelivery is not None and self.redelivered is not None:
            state = self.redelivered.load()
            batch, duplicates = self.redelivery.admit(state, batch)
            self.redelivered.store(state)
            for order, detail in duplicates:
                yield DEAD_LETTERS, _order_dead_letter("duplicate", detail, order, self.limits)
            for order in batch:
                yield ADMITTED, order
        batch.sort(key=lambda o: o.sort_key)
        alerts: list[Alert] = []
        for binding in self.bindings if batch else ():  # empty when every order was a re-delivery
            state = binding.load()
            alerts.extend(binding.detector.evaluate(state, batch))
            binding.store(state)
        cleanup = timestamp + self.horizon
        previous = self.cleanup_at.value()
        if previous != cleanup:
            # Flink keeps one timer per (key, time): an order waiting at exactly the old cleanup
            # time shares it, and deleting it would drop that order unseen.
            if previous is not None and self.pending.get(previous) is None:
                ctx.timer_service().delete_event_time_timer(previous)
            ctx.timer_service().register_event_time_timer(cleanup)
            self.cleanup_at.update(cleanup)
        for alert in alerts:
            yield alert if arrived is None else dataclasses.replace(alert, detected_at=arrived)


class CountDeadLetters(MapFunction):
    """Counts the DataStream engine's dead letters by reason, all in one place: every step's
    side output passes here (counters bumped in a timer, where duplicates are found, would be
    lost in PyFlink's process mode)."""

    def open(self, runtime_context: RuntimeContext) -> None:
        self.metrics = JobMetrics.from_context(runtime_context)

    def map(self, value: DeadLetter) -> DeadLetter:
        self.metrics.dead_letter(value.reason)
        return value


class DedupFunction(KeyedProcessFunction):
    """Cooldown per (alert_type, key). All alerts of one such key come from one upstream
    key, emitted in event-time order, so they arrive here in event-time order too."""

    # open() gives the operator's: alerts by type and severity, and `alert_latency_ms`
    metrics = JobMetrics.unregistered()

    def __init__(self, dedup: AlertDeduplicator) -> None:
        self.dedup = dedup
        self.latency = LatencyWindow()

    def open(self, runtime_context: RuntimeContext) -> None:
        self.last = runtime_context.get_state(ValueStateDescriptor("last_emitted", Types.LONG()))
        self.metrics = JobMetrics.from_context(runtime_context)
        self.latency = LatencyWindow()

    def process_element(self, value: Alert, ctx: KeyedProcessFunction.Context):
        state = DedupState(self.last.value())
        if not self.dedup.admit(state, value):
            return
        self.last.update(state.last_emitted)
        expires = self.dedup.expires_at(state)
        if expires is not None:
            ctx.timer_service().register_event_time_timer(expires)
        self.metrics.alert(value)
        now = now_ms()
        if value.detected_at is not None:  # here: when its order arrived at the rules' step
            if not self.latency.count:
                self.metrics.latency(self.latency)  # registered at the first: none before
            self.latency.add(max(0, now - value.detected_at))
        yield dataclasses.replace(value, detected_at=now)

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext):
        expires = self.dedup.expires_at(DedupState(self.last.value()))
        if expires is not None and expires <= timestamp:
            self.last.clear()
        return
        yield  # PyFlink needs on_timer to be a generator
