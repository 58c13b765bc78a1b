from __future__ import annotations

from collections import Counter, defaultdict

import orjson
import pytest

from fraudstream.config import GeneratorSettings
from fraudstream.events import Order, parse_record
from fraudstream.generator import BEHAVIORS, PATTERNS, OrderGenerator, generator_from_settings


def test_same_seed_same_stream_other_seed_other_stream():
    a = list(OrderGenerator(seed=7).orders(2000))
    assert a == list(OrderGenerator(seed=7).orders(2000))
    assert a != list(OrderGenerator(seed=8).orders(2000))


def test_same_settings_same_stream_other_shares_other_stream():
    def stream(**overrides):
        cfg = GeneratorSettings(seed=12, users=5_000, jitter_ms=2_000, fraud_ratio=0.3, **overrides)
        return list(generator_from_settings(cfg).orders(5_000))

    a = stream(pattern_shares={"velocity_burst": 2, "city_hopping": 1})
    assert a == stream(pattern_shares={"velocity_burst": 2, "city_hopping": 1})
    assert a != stream(pattern_shares={"velocity_burst": 1, "city_hopping": 2})


def test_every_order_meets_the_contract():
    for raw in OrderGenerator(seed=1).orders(3000):
        order = parse_record(orjson.dumps(raw))
        assert isinstance(order, Order)
        assert order.behavior in BEHAVIORS


def test_transaction_ids_are_unique():
    ids = [e["transaction_id"] for e in OrderGenerator(seed=2).orders(50_000)]
    assert len(set(ids)) == len(ids)


def test_fraud_ratio_and_all_patterns_present():
    events = list(OrderGenerator(seed=3, fraud_ratio=0.2).orders(20_000))
    labels = Counter(e["behavior"] for e in events)
    assert set(labels) == set(BEHAVIORS)
    assert 0.18 < 1 - labels["normal"] / len(events) < 0.22
    none = Counter(e["behavior"] for e in OrderGenerator(seed=3, fraud_ratio=0.0).orders(5000))
    assert set(none) == {"normal"}


@pytest.mark.parametrize("ratio", [0.02, 0.2, 0.5])
def test_fraud_share_follows_fraud_ratio_over_50k_events(ratio):
    events = list(OrderGenerator(seed=31, fraud_ratio=ratio).orders(50_000))
    share = sum(e["behavior"] != "normal" for e in events) / len(events)
    assert abs(share - ratio) < 0.01
    # ... and it holds along the stream, not only on the whole
    first = events[:5_000]
    assert abs(sum(e["behavior"] != "normal" for e in first) / len(first) - ratio) < 0.02


def test_event_time_advances_and_jitter_is_bounded():
    events = list(OrderGenerator(seed=5, jitter_ms=3000).orders(5000))
    times = [e["event_time"] for e in events]
    assert times[-1] - times[0] > 5000 * 100  # about 250 ms apart on average
    assert times != sorted(times)  # jitter really reorders
    newest = times[0]
    for t in times:
        assert t >= newest - 3000
        newest = max(newest, t)


def test_without_jitter_event_time_never_goes_back():
    times = [e["event_time"] for e in OrderGenerator(seed=5).orders(20_000)]
    assert times == sorted(times)


def test_zero_gap_puts_every_order_at_one_instant_and_still_emits_whole_episodes():
    gen = OrderGenerator(seed=6, mean_gap_ms=0, start_ms=1_000)
    events = list(gen.orders(3_000))
    assert {e["event_time"] for e in events} == {1_000}
    assert 0.18 < sum(e["behavior"] != "normal" for e in events) / len(events) < 0.22
    assert len(gen._heap) <= 10  # scheduled orders do not pile up


def test_emitted_counts_every_order():
    gen = OrderGenerator(seed=9)
    list(gen.orders(1234))
    gen.next_order()
    assert gen.emitted == 1235


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
    # episodes that started in the last two hours may not have finished when the stream ends
    cutoff = events[-1]["event_time"] - 2 * 3_600_000
    started = {e["device_id"] for e in events if e["behavior"] == "account_farm" and e["event_time"] < cutoff}
    assert started and all(len(farms[d]) >= 3 for d in started)
    assert sum(len(farms[d]) >= 4 for d in started) >= 0.5 * len(started)
    assert sum(len(c) >= 2 for c in hops.values()) >= 0.9 * len(hops) > 0


def test_generator_from_settings_passes_every_setting():
    cfg = GeneratorSettings(
        seed=4,
        users=777,
        fraud_ratio=0.3,
        mean_gap_ms=900,
        jitter_ms=50,
        start_time="2026-03-01T12:00:00Z",
        pattern_shares={"high_value": 1.0},
    )
    gen = generator_from_settings(cfg)
    assert (gen.seed, gen.n_users, gen.fraud_ratio, gen.mean_gap_ms, gen.jitter_ms) == (4, 777, 0.3, 900, 50)
    assert gen.clock == 1_772_366_400_000
    assert gen.pattern_shares == {p: (1.0 if p == "high_value" else 0.0) for p in PATTERNS}
    fraud = {e["behavior"] for e in gen.orders(3_000)} - {"normal"}
    assert fraud == {"high_value"}


@pytest.mark.parametrize(
    "shares",
    [{"velocity_burst": -1, "high_value": 1}, {"high_value": 0}, {"phishing": 1}, {}],
)
def test_bad_pattern_shares_are_refused(shares):
    with pytest.raises(ValueError):
        OrderGenerator(seed=1, pattern_shares=shares)
