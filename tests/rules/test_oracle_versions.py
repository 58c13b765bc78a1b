"""The versioned oracle (tests/oracle.py) judged on its own: with one version it agrees with
the unversioned oracle, and a scripted change acts from its event time on, per rule."""

from __future__ import annotations

import dataclasses

import pytest

from fraudstream.config import Settings
from fraudstream.generator import OrderGenerator
from fraudstream.rules.model import Limits, RuleSet
from tests.oracle import (
    REDELIVERY_HORIZON_MS,
    Params,
    expected_alerts,
    expected_alerts_versioned,
    redeliveries,
    schedule_of,
    severity_of,
    version_at,
)

MIN = 60_000
T0 = 1_700_000_000_000
BASE = RuleSet.from_settings(Settings())
LIMITS = Limits.from_settings(Settings())


def _order(tx: str, minutes: float, user: str = "u1", device: str = "d1", amount: float = 100.0, city: str = "Pune"):
    return {
        "transaction_id": tx, "user_id": user, "device_id": device, "restaurant_id": "r1", "amount": amount,
        "city": city, "payment_method": "UPI", "event_time": T0 + int(minutes * MIN),
    }  # fmt: skip


def _changed(**changes) -> RuleSet:
    return BASE.with_changes({k.replace("__", "."): v for k, v in changes.items()}, LIMITS, author="test")


def _at(minutes: float) -> int:
    return T0 + int(minutes * MIN)


@pytest.mark.parametrize("seed", [3, 8])
def test_one_version_is_the_unversioned_oracle(seed):
    orders = list(OrderGenerator(seed=seed, users=400).orders(3_000))
    other = Params(2, 120_000, 1, 600_000, 900.0, 60_000, 30_000)
    for params in (Params(), other):
        want = {(*a, 7) for a in expected_alerts(orders, params)}
        assert len(want) > 50
        assert expected_alerts_versioned(orders, [(None, params, 7)]) == want
    # a RuleSet reads the same as the Params of the same settings
    assert expected_alerts_versioned(orders, [(None, BASE, 0)]) == {(*a, 0) for a in expected_alerts(orders)}


def test_a_tightened_threshold_acts_from_its_event_time_on():
    """Three orders in five minutes: no alert at threshold 3; at 2 from the third order's time on
    the third alerts, with the new version; one millisecond later and it is judged by the old."""
    orders = [_order(f"t{i}", i) for i in range(3)]
    tight = _changed(velocity__threshold=2)
    assert expected_alerts_versioned(orders, [(None, BASE, 0)]) == set()
    at_third = expected_alerts_versioned(orders, [(None, BASE, 0), (_at(2), tight, 1)])
    assert at_third == {("VELOCITY_FRAUD", "u1", "t2", _at(2), 1)}
    assert expected_alerts_versioned(orders, [(None, BASE, 0), (_at(2) + 1, tight, 1)]) == set()


def test_a_rule_switched_off_stops_its_alerts_and_on_again_resumes_them():
    orders = [_order(f"t{i}", 10 * i, amount=2_000.0) for i in range(6)]  # 10 min apart: past the cooldown
    off = _changed(high_value__enabled=False)
    on = off.with_changes({"high_value.enabled": True}, LIMITS, author="test")
    got = expected_alerts_versioned(orders, [(None, BASE, 0), (_at(20), off, 1), (_at(40), on, 2)])
    assert sorted((a[2], a[4]) for a in got) == [("t0", 0), ("t1", 0), ("t4", 2), ("t5", 2)]


def test_the_cooldown_is_the_one_in_force_at_the_candidates_time():
    orders = [_order(f"t{i}", i, amount=2_000.0) for i in range(4)]  # a minute apart: inside 5 min
    short = _changed(high_value__cooldown_ms=30_000)
    high = "HIGH_VALUE_FRAUD"
    assert {a[2] for a in expected_alerts_versioned(orders, [(None, BASE, 0)]) if a[0] == high} == {"t0"}
    got = {a for a in expected_alerts_versioned(orders, [(None, BASE, 0), (_at(2), short, 1)]) if a[0] == high}
    # t1 held by the 5 min of version 0; t2 and t3 judged by 30 s against the last let through
    assert sorted((a[2], a[4]) for a in got) == [("t0", 0), ("t2", 1), ("t3", 1)]


def test_a_widened_window_counts_orders_before_the_change():
    """Device sharing: three users 20 min apart share a device. In 30 min only two are seen;
    widened to 60 min (the maximum is 2 h) from the third's time, all three are."""
    orders = [_order(f"t{i}", 20 * i, user=f"u{i}", device="dx") for i in range(3)]
    wide = _changed(device_sharing__window_ms=60 * MIN)
    assert expected_alerts_versioned(orders, [(None, BASE, 0)]) == set()
    got = expected_alerts_versioned(orders, [(None, BASE, 0), (_at(40), wide, 1)])
    assert got == {("DEVICE_SHARING_FRAUD", "dx", "t2", _at(40), 1)}


def test_geo_and_severity_follow_the_version():
    orders = [_order("a", 0, city="Pune"), _order("b", 1, city="Delhi"), _order("c", 20, city="Goa")]
    low = _changed(geo__severity="LOW", geo__window_ms=10 * MIN)
    sched = schedule_of([(None, BASE, 0), (_at(10), low, 1)])
    got = expected_alerts_versioned(orders, sched)
    # c, 19 min after b: inside version 0's 30 min, outside version 1's 10 min
    assert got == {("GEO_ANOMALY_FRAUD", "u1", "b", _at(1), 0)}
    assert [severity_of(sched, a) for a in got] == ["HIGH"]
    three = schedule_of([(None, BASE, 0), (_at(1), low, 1)])
    assert {(a[2], severity_of(three, a)) for a in expected_alerts_versioned(orders, three)} == {("b", "LOW")}


def test_equal_effective_times_take_the_higher_version_and_before_all_the_first():
    a, b = _changed(velocity__threshold=5), _changed(velocity__threshold=6)
    sched = schedule_of([(_at(5), b, 2), (None, BASE, 0), (_at(5), a, 1)])
    assert [v.version for v in sched] == [0, 1, 2]
    assert version_at(sched, _at(5)).version == 2
    assert version_at(sched, _at(5) - 1).version == 0
    assert version_at(schedule_of([(_at(5), a, 1)]), 0).version == 1


def test_the_redelivery_horizon_is_the_longest_maximum_window():
    assert REDELIVERY_HORIZON_MS == 2 * 60 * MIN
    first = _order("same", 0, amount=2_000.0)
    orders = [first, {**first, "event_time": _at(90)}, {**first, "event_time": _at(121)}]
    # 90 min later: a copy; 121 min after the first: new
    assert redeliveries(orders, horizon_ms=REDELIVERY_HORIZON_MS) == [1]
    assert redeliveries(orders) == [1]  # unversioned too: the job's horizon does not depend on the rules in force
    assert redeliveries(orders, horizon_ms=30 * MIN) == []
    assert redeliveries(orders, dataclasses.replace(Params(), redelivery_horizon_ms=30 * MIN)) == []
    got = expected_alerts_versioned(orders, [(None, BASE, 0)])
    assert sorted(a[3] for a in got) == [_at(0), _at(121)]
    assert len(expected_alerts_versioned(orders, [(None, BASE, 0)], horizon_ms=30 * MIN)) == 3
