"""Input idempotence, the pure rule: an order delivered twice counts once (no Flink)."""

from __future__ import annotations

import dataclasses
import random

import orjson

from fraudstream.config import DetectorSettings, RulesSettings
from fraudstream.detectors import AlertDeduplicator, build_detectors
from fraudstream.detectors.replay import deduplicate, first_copies, replay, run_detector
from fraudstream.events import parse_record
from fraudstream.events.redelivery import Redelivery, horizon_of, redelivery_horizon
from fraudstream.generator import OrderGenerator
from tests.conftest import BASE, MIN, make_order
from tests.oracle import REDELIVERY_HORIZON_MS, Params, expected_alerts, redeliveries
from tests.redeliveries import with_redeliveries

HORIZON = 30 * MIN


def _run(orders):
    """Feed `orders` (arrival order) through the rule as the job does; (kept, duplicates)."""
    kept, dups = [], []
    by_time = sorted(range(len(orders)), key=lambda i: orders[i].event_time)
    state = Redelivery(HORIZON).new_state()
    i = 0
    while i < len(by_time):
        t = orders[by_time[i]].event_time
        batch = []
        while i < len(by_time) and orders[by_time[i]].event_time == t:
            batch.append(orders[by_time[i]])
            i += 1
        a, d = Redelivery(HORIZON).admit(state, batch)
        kept += a
        dups += d
    return kept, dups


def test_an_identical_copy_is_a_duplicate_and_says_so():
    o = make_order(BASE, tx="t1")
    kept, dups = _run([o, o])
    assert kept == [o]
    assert [(d, detail) for d, detail in dups] == [
        (o, f"order t1 was already admitted with event_time {BASE}; this copy is identical")
    ]


def test_of_two_differing_copies_the_earlier_one_is_kept_whatever_arrived_first():
    early = make_order(BASE, tx="t1", amount=300.0)
    late = make_order(BASE + 2 * MIN, tx="t1", amount=320.0, city="Pune")
    kept, dups = _run([late, early])  # the later-stamped copy arrives first
    assert kept == [early]
    assert dups[0][0] == late
    assert dups[0][1].endswith("this copy differs in amount, city, event_time")


def test_at_the_same_instant_the_first_to_arrive_is_kept():
    first = make_order(BASE, tx="t1", device="d_a")
    second = make_order(BASE, tx="t1", device="d_b")
    kept, dups = _run([first, second])
    assert kept == [first]
    assert dups[0][1].endswith("differs in device_id")


def test_outside_the_horizon_the_same_id_is_a_new_order():
    o = make_order(BASE, tx="t1")
    just_inside = dataclasses.replace(o, event_time=BASE + HORIZON - 1)
    at_horizon = dataclasses.replace(o, event_time=BASE + HORIZON)
    assert _run([o, just_inside])[0] == [o]
    assert _run([o, at_horizon])[0] == [o, at_horizon]


def test_another_user_with_the_same_id_is_another_order():
    a = make_order(BASE, user="u_a", tx="t1")
    b = make_order(BASE, user="u_b", tx="t1")
    redelivery = Redelivery(HORIZON)
    assert redelivery.admit(redelivery.new_state(), [a])[0] == [a]
    assert first_copies([a, b], redelivery) == [a, b]


def test_state_holds_only_ids_inside_the_horizon():
    redelivery = Redelivery(HORIZON)
    state = redelivery.new_state()
    for n in range(200):
        redelivery.admit(state, [make_order(BASE + n * MIN, tx=f"t{n}")])
    assert len(state.admitted) == 30


def test_the_horizon_is_the_longest_rule_window():
    d = DetectorSettings()
    assert horizon_of(build_detectors(d)) == max(d.velocity_window_ms, d.device_sharing_window_ms, d.geo_window_ms)
    assert Params.of(d).horizon_ms == horizon_of(build_detectors(d))
    # the job's: the longest window any rules version may have, which the oracle judges by too
    r = RulesSettings()
    assert redelivery_horizon(r) == max(r.velocity_max_window_ms, r.geo_max_window_ms) == REDELIVERY_HORIZON_MS
    assert redelivery_horizon(r) >= horizon_of(build_detectors(d))


def test_three_orders_and_a_redelivery_raise_no_velocity_alert():
    """The issue's case: three distinct orders plus one re-delivery within five minutes."""
    orders = [make_order(BASE + n * MIN, tx=f"t{n}") for n in range(3)]
    orders.append(dataclasses.replace(orders[1], event_time=BASE + 3 * MIN))
    alerts = replay(orders, build_detectors(DetectorSettings()), AlertDeduplicator())
    assert [a.alert_type for a in alerts] == []
    raw = [o.to_dict() for o in orders]
    assert redeliveries(raw) == [3]
    assert expected_alerts(raw) == set()


def test_replay_with_redeliveries_matches_the_oracle():
    events = list(OrderGenerator(seed=5, users=1_500).orders(6_000))
    mixed = with_redeliveries(events, random.Random(5), every=40)
    dropped = redeliveries(mixed)
    assert len(dropped) > 60
    orders = [parse_record(orjson.dumps(r)) for r in mixed]
    kept = first_copies(orders, Redelivery(REDELIVERY_HORIZON_MS))
    assert len(kept) == len(mixed) - len(dropped)
    detectors = build_detectors(DetectorSettings())
    got = replay(orders, detectors, AlertDeduplicator())
    assert {(a.alert_type, a.key, a.transaction_id, a.event_time) for a in got} == expected_alerts(mixed)
    # and the re-deliveries matter: counted twice, the rules would say something else
    naive = deduplicate([a for d in detectors for a in run_detector(d, orders)], AlertDeduplicator())
    assert {(a.alert_type, a.key, a.transaction_id, a.event_time) for a in naive} != expected_alerts(mixed)
