from __future__ import annotations

from collections import Counter, defaultdict

import orjson

from fraudstream.events import Order, parse_record
from fraudstream.generator import BEHAVIORS, OrderGenerator


def test_same_seed_same_stream_other_seed_other_stream():
    a = list(OrderGenerator(seed=7).orders(2000))
    assert a == list(OrderGenerator(seed=7).orders(2000))
    assert a != list(OrderGenerator(seed=8).orders(2000))


def test_every_order_meets_the_contract():
    for raw in OrderGenerator(seed=1).orders(3000):
        assert isinstance(parse_record(orjson.dumps(raw)), Order)


def test_fraud_ratio_and_all_patterns_present():
    events = list(OrderGenerator(seed=3, fraud_ratio=0.2).orders(20_000))
    labels = Counter(e["behavior"] for e in events)
    assert set(labels) == set(BEHAVIORS)
    assert 0.17 < 1 - labels["normal"] / len(events) < 0.23
    none = Counter(e["behavior"] for e in OrderGenerator(seed=3, fraud_ratio=0.0).orders(5000))
    assert set(none) == {"normal"}


def test_normal_users_have_one_device_and_one_city():
    devices, cities = defaultdict(set), defaultdict(set)
    for e in OrderGenerator(seed=4, users=300).orders(10_000):
        if e["behavior"] == "normal":
            devices[e["user_id"]].add(e["device_id"])
            cities[e["user_id"]].add(e["city"])
            assert e["amount"] <= 1500
    assert all(len(v) == 1 for v in devices.values())
    assert all(len(v) == 1 for v in cities.values())


def test_event_time_advances_and_jitter_is_bounded():
    events = list(OrderGenerator(seed=5, jitter_ms=3000).orders(5000))
    times = [e["event_time"] for e in events]
    assert times[-1] - times[0] > 5000 * 100  # about 250 ms apart on average
    assert times != sorted(times)  # jitter really reorders
    newest = times[0]
    for t in times:
        assert t >= newest - 3000
        newest = max(newest, t)


def test_patterns_have_their_shape():
    events = list(OrderGenerator(seed=6).orders(20_000))
    farms = defaultdict(set)
    hops = defaultdict(set)
    for e in events:
        if e["behavior"] == "account_farm":
            farms[e["device_id"]].add(e["user_id"])
        if e["behavior"] == "city_hopping":
            hops[e["user_id"]].add(e["city"])
        if e["behavior"] == "high_value":
            assert e["amount"] > 1500
    # episodes that started in the last hour may not have finished when the stream ends
    cutoff = events[-1]["event_time"] - 3_600_000
    started = {e["device_id"] for e in events if e["behavior"] == "account_farm" and e["event_time"] < cutoff}
    assert started and all(len(farms[d]) >= 4 for d in started)
    assert sum(len(c) >= 2 for c in hops.values()) >= 0.9 * len(hops) > 0
