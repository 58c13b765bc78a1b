"""An order stamped exactly at its key's cleanup time must still be evaluated.

The DataStream engine keeps one cleanup timer per key, one horizon after the key's newest
order, and moves it (delete, register) when a later batch arrives. Flink has one timer per
(key, time): an order waiting at exactly the old cleanup time shares that timer, and deleting
it used to drop the order unseen, without a dead letter. Here: a user orders at t0, again at
exactly t0 + horizon (a large amount), and at t0 + horizon - 1 s, arriving last; the timer of
the third moves the cleanup and, before the fix, took the second order's timer with it.
"""

from __future__ import annotations

import time

import orjson
import pytest

from fraudstream.config import RulesSettings
from fraudstream.events.redelivery import redelivery_horizon
from tests.flink.conftest import run_file, write_lines


def order(tx: str, t: int, amount: float) -> dict:
    return {
        "transaction_id": tx, "user_id": "u_1", "device_id": "d_1", "restaurant_id": "r_1",
        "amount": amount, "city": "Mumbai", "payment_method": "UPI", "event_time": t,
    }  # fmt: skip


@pytest.mark.flink
@pytest.mark.parametrize("engine", ["datastream", "sql"])
def test_an_order_at_the_keys_cleanup_time_is_evaluated(tmp_path, engine):
    horizon = redelivery_horizon(RulesSettings())  # when the re-delivery check forgets the key
    t0 = int(time.time() * 1000) - 2 * horizon
    orders = [order("a", t0, 300.0), order("big", t0 + horizon, 4_000.0), order("c", t0 + horizon - 1_000, 300.0)]
    path = write_lines(tmp_path / "orders.jsonl", [orjson.dumps(o) for o in orders])
    result = run_file(path, tmp_path / "data", **{"pipeline.engine": engine})
    assert result.dead == []
    assert [(a.alert_type, a.transaction_id) for a in result.alerts] == [("HIGH_VALUE_FRAUD", "big")]
