"""One future-stamped order must not switch detection off (issue 13, item 1).

An order stamped days ahead used to be admitted and drag its reader's newest event time (and so
the watermark) days into the future: every honest order after it was `late`, no rule saw it.
Orders more than `pipeline.max_future_ms` ahead of the wall clock are `future` dead letters, and a
reader's newest event time never runs past the clock plus that skew, not even when a checkpoint
made under a laxer setting restores it.
"""

from __future__ import annotations

import time

import orjson
import pytest

from fraudstream.config import PipelineSettings, load_settings
from fraudstream.events import ParseLimits
from fraudstream.flink.functions import AdmitFunction
from tests.conftest import REPORT
from tests.flink.conftest import ValueStateStub, run_file, write_lines

MIN = 60_000
DAY = 86_400_000


def order(tx: str, t: int, user: str, amount: float = 300.0) -> dict:
    return {
        "transaction_id": tx, "user_id": user, "device_id": f"d_{user}", "restaurant_id": "r_1",
        "amount": amount, "city": "Mumbai", "payment_method": "UPI", "event_time": t,
    }  # fmt: skip


def poisoned_file(now: int) -> list[dict]:
    """The issue's file: one order six days ahead, then seven honest ones a few minutes old (a
    burst of five by one user, the 4th of which trips velocity, and two large amounts)."""
    honest = [order(f"v{i}", now - 10 * MIN + i * 30_000, "u_v") for i in range(5)]
    honest += [order("h1", now - 7 * MIN, "u_h1", 2_500.0), order("h2", now - 6 * MIN, "u_h2", 4_000.0)]
    return [order("f1", now + 6 * DAY, "u_f"), *honest]


@pytest.mark.flink
@pytest.mark.parametrize("engine", ["sql", "datastream"])
def test_one_order_six_days_ahead_does_not_blind_the_job(tmp_path, engine):
    now = int(time.time() * 1000)
    path = write_lines(tmp_path / "poisoned.jsonl", [orjson.dumps(e) for e in poisoned_file(now)])
    result = run_file(path, tmp_path / "data", **{"pipeline.engine": engine})
    assert [(d.reason, d.event_time) for d in result.dead] == [("future", now + 6 * DAY)]
    assert sorted((a.alert_type, a.transaction_id) for a in result.alerts) == [
        ("HIGH_VALUE_FRAUD", "h1"),
        ("HIGH_VALUE_FRAUD", "h2"),
        ("VELOCITY_FRAUD", "v3"),
    ]
    with REPORT.open("a") as fh:  # a line for the reliability table (docs/reliability.md)
        fh.write(
            f"{time.strftime('%Y-%m-%d %H:%M')} | {engine} | one order 6 days ahead, then 7 honest orders"
            " | 1 `future` dead letter, 3 alerts (velocity, 2 high value), 0 `late`\n"
        )


def test_the_default_skew_is_a_few_minutes_and_cannot_be_negative():
    assert 0 < PipelineSettings().max_future_ms <= 10 * MIN
    with pytest.raises(ValueError, match="max_future_ms"):
        load_settings(flags={"pipeline.max_future_ms": -1}, environ={})


def admit(fn: AdmitFunction, record: dict) -> str:
    """'order' or the dead letter's reason."""
    out = list(fn.process_element(("reader-0", orjson.dumps(record)), None))
    assert len(out) == 1
    return out[0][1].reason if isinstance(out[0], tuple) else "order"


def restored(skew: int, max_seen: int) -> AdmitFunction:
    """Admission as a `--resume` brings it back: its reader's newest time from the checkpoint."""
    fn = AdmitFunction(ParseLimits(), 5_000, raw_latin1=False, max_future_ms=skew)
    fn.max_seen = ValueStateStub()
    fn.max_seen.update(max_seen)
    return fn


def test_a_restored_newest_time_beyond_the_clock_plus_the_skew_is_dropped():
    """A checkpoint made under the old 7-day limit holds a newest time six days ahead; resumed
    with the default skew, honest orders published while the job was down are judged again."""
    now = int(time.time() * 1000)
    fn = restored(PipelineSettings().max_future_ms, now + 6 * DAY)
    assert [admit(fn, o) for o in poisoned_file(now)[1:]] == ["order"] * 7
    assert fn.max_seen.value() == now - 6 * MIN  # the reader started afresh with them
    assert admit(fn, order("old", now - 60 * MIN, "u_1")) == "late"  # lateness holds from there


def test_a_restored_newest_time_the_skew_allows_is_kept_and_0_keeps_everything():
    now = int(time.time() * 1000)
    skew = PipelineSettings().max_future_ms
    within = restored(skew, now + skew - 60_000)  # as if an order 4 minutes ahead had come
    assert admit(within, order("a", now, "u_1")) == "late"
    assert within.max_seen.value() == now + skew - 60_000
    unchecked = restored(0, now + 6 * DAY)
    assert admit(unchecked, order("a", now, "u_1")) == "late"
    assert admit(unchecked, order("b", now + 7 * DAY, "u_1")) == "order"  # 0: no check at all
