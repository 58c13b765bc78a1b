"""Drives the user's rule step (UserStep) through Flink's operator test harness, in a gateway JVM
of its own: the harness must sit on that JVM's class path (FLINK_TESTING / FLINK_TEST_LIBS),
beside our classes, which the test JVM shared by the other Flink tests does not have.

`python -m tests.flink.rule_step_harness` prints, as JSON, for each operator (`ours`:
RuleStepOperator, `flink`: Flink's CoBroadcastWithKeyedOperator) and each of SCENARIOS, what the
step emitted: `alerts` (the candidates' transaction ids), `late` (the late dead letters'
transaction ids) and `watermarks` (those it passed on).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from fraudstream.config import Settings
from fraudstream.events.redelivery import redelivery_horizon
from fraudstream.rules.model import FLAT_FIELDS, RuleSet
from tests.flink.test_job import order

T = 1_767_227_400_000  # an order's event time
BOUND = 5_000


def main() -> None:
    from pyflink.java_gateway import get_gateway

    from fraudstream.flink.gateway import start_gateway, stop_gateway

    start_gateway()
    try:
        gw = get_gateway()
        results = {op: {name: _run(gw, op, s) for name, s in SCENARIOS.items()} for op in ("ours", "flink")}
        print(orjson.dumps(results).decode())
    finally:
        stop_gateway()


def _run(gw: Any, operator: str, scenario: Callable[[Any, Any], None]) -> dict[str, list]:
    jvm = gw.jvm
    fl = jvm.io.fraudstream.flink
    rules = fl.rules
    settings = Settings()
    flat = rules.RuleRows.flatType(_array(gw, jvm.String, list(FLAT_FIELDS)))
    values = list(RuleSet.from_settings(settings).to_row())
    values[1] = -(2**63)  # effective_from, as the Stamper stamps the version in force at the start
    r = settings.rules
    step = rules.UserStep(
        flat,
        r.max_window_of("velocity"),
        r.max_window_of("geo"),
        10,
        settings.detectors.dedup_cooldown_ms,
        redelivery_horizon(r),
        300,
    )
    descriptors = jvm.java.util.List.of(rules.RuleStep.versions(flat))
    if operator == "ours":
        op = rules.RuleStepOperator(step, descriptors)
    else:
        op = jvm.org.apache.flink.streaming.api.operators.co.CoBroadcastWithKeyedOperator(step, descriptors)
    harness = jvm.org.apache.flink.streaming.util.KeyedTwoInputStreamOperatorTestHarness(
        op, fl.Redelivery.UserKey(), None, jvm.org.apache.flink.api.common.typeinfo.Types.STRING
    )
    harness.open()
    record = jvm.org.apache.flink.streaming.runtime.streamrecord.StreamRecord
    harness.processElement2(record(rules.RuleRows.fromValues(_array(gw, jvm.Object, values))))
    scenario(harness, _Inputs(gw))
    out = [str(x) for x in harness.getOutput().toArray()]
    letters = harness.getSideOutput(fl.OrderAdmission.DEAD_LETTERS)
    dead = [str(x) for x in letters.toArray()] if letters is not None else []
    state = {"entries": harness.numKeyedStateEntries(), "timers": harness.numEventTimeTimers()}
    harness.close()
    return {
        "alerts": [line.split(", ")[2] for line in out if line.startswith("Record")],
        "late": [_transaction(line) for line in dead if ": +I[late, " in line],
        "duplicates": [_transaction(line) for line in dead if ": +I[duplicate, " in line],
        "watermarks": [int(line.split("@ ")[1]) for line in out if line.startswith("Watermark @")],
        "timers_seen": _Inputs.timers_seen,
        "left": state,
    }


def _transaction(line: str) -> str:
    """The transaction id of a dead letter row's record as received."""
    return orjson.loads(line[line.index("{") : line.rindex("}") + 1])["transaction_id"]


class _Inputs:
    """Orders, watermarks and statuses as the step's inputs get them."""

    timers_seen: list[int] = []  # a scenario's counts of the step's event-time timers

    def __init__(self, gw: Any) -> None:
        _Inputs.timers_seen = []
        self.gw = gw
        jvm = gw.jvm
        self.record = jvm.org.apache.flink.streaming.runtime.streamrecord.StreamRecord
        self.watermark = jvm.org.apache.flink.streaming.api.watermark.Watermark
        status = jvm.org.apache.flink.streaming.runtime.watermarkstatus.WatermarkStatus
        self.idle, self.active = status.IDLE, status.ACTIVE

    def big_order(self, tx: str, t: int, user: str | None = None) -> Any:
        """An order above the high-value threshold, as admitted (the record as received kept);
        its user is its own unless `user` is given."""
        jvm = self.gw.jvm
        o = order(tx, t, user or f"u_{tx}", f"d_{tx}", amount=5000.0)
        values = [o["transaction_id"], o["user_id"], o["device_id"], o["restaurant_id"], jvm.Double(o["amount"]),
                  o["city"], o["payment_method"], jvm.Long(t), None, orjson.dumps(o).decode(), jvm.Long(t)]  # fmt: skip
        return self.record(jvm.org.apache.flink.types.Row.of(_array(self.gw, jvm.Object, values)), t)


def _array(gw: Any, kind: Any, values: list) -> Any:
    """A Java array of `kind` holding `values`."""
    array = gw.new_array(kind, len(values))
    for i, v in enumerate(values):
        array[i] = v
    return array


def _stamper_wakes_first(h: Any, i: _Inputs) -> None:
    """Every partition was idle, so both inputs are. Orders come again: the Stamper's path, which
    carries no records, brings their new watermark before the orders reach input 1."""
    h.processWatermarkStatus1(i.idle)
    h.processWatermarkStatus2(i.idle)
    h.processWatermarkStatus2(i.active)
    h.processWatermark2(i.watermark(T + 60_000 - BOUND))
    h.processElement1(i.big_order("first", T))
    h.processWatermarkStatus1(i.active)
    h.processWatermark1(i.watermark(T + 60_000 - BOUND))


def _stamper_idle_behind(h: Any, i: _Inputs) -> None:
    """The orders' watermark passes an order while the Stamper's path is idle and behind: the
    step must wait for it, as a version the Stamper has yet to stamp may apply from before the
    order."""
    h.processElement1(i.big_order("first", T))
    h.processWatermarkStatus2(i.idle)
    h.processWatermark1(i.watermark(T + 1))


HORIZON = redelivery_horizon(Settings().rules)


def _busy_user_then_quiet(h: Any, i: _Inputs) -> None:
    """One user orders three times a second apart (timers: the three instants, plus the user's
    expiry and forgetting), then sends a copy of the first a moment inside the horizon (a
    duplicate) and one at the horizon (forgotten: a new order), then nothing: every piece of the
    user's state must go once the watermark has passed its keeping."""
    h.processWatermark2(i.watermark(2**63 - 1))  # the Stamper never holds the step back here
    for n, tx in enumerate(("a", "b", "c")):
        h.processElement1(i.big_order(tx, T + 1_000 * n, "u_busy"))
    i.timers_seen.append(h.numEventTimeTimers())
    h.processWatermark1(i.watermark(T + 2_000))
    i.timers_seen.append(h.numEventTimeTimers())
    h.processElement1(i.big_order("a", T + HORIZON - 1, "u_busy"))
    h.processElement1(i.big_order("a", T + HORIZON + 2_000, "u_busy"))
    h.processWatermark1(i.watermark(T + HORIZON + 2_000))
    h.processWatermark1(i.watermark(T + 10 * HORIZON))


SCENARIOS: dict[str, Callable[[Any, _Inputs], None]] = {
    "stamper_wakes_first": _stamper_wakes_first,
    "stamper_idle_behind": _stamper_idle_behind,
    "busy_user_then_quiet": _busy_user_then_quiet,
}

if __name__ == "__main__":
    main()
