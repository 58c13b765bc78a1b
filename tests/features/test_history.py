"""The behavioural features: hand-made histories, and a brute-force oracle over a whole stream."""

from __future__ import annotations

import dataclasses
import math
import random
import statistics

import orjson
import pytest

from fraudstream.config import Settings
from fraudstream.detectors.replay import first_copies
from fraudstream.events.model import Order
from fraudstream.events.parse import parse_record
from fraudstream.events.redelivery import Redelivery, redelivery_horizon
from fraudstream.features import FEATURES, DeviceHistory, FeatureSpec, UserHistory, device_step, user_step
from fraudstream.features.replay import feature_rows
from fraudstream.generator import OrderGenerator

H = 3_600_000
SPEC = FeatureSpec()


def order(
    t: int, user: str = "u1", device: str = "d1", city: str = "Mumbai", amount: float = 300.0, tx: str | None = None
) -> Order:
    return Order(tx or f"t{t}-{user}-{device}", user, device, "r1", amount, city, "UPI", t)


def vector(rows: list[Order], spec: FeatureSpec = SPEC) -> list[dict[str, float]]:
    return [dict(zip(FEATURES, f, strict=True)) for _, f in feature_rows(rows, spec)]


def test_a_first_order_has_no_history_behind_it() -> None:
    (f,) = vector([order(10 * H, amount=420.0)])
    assert f["amount"] == 420.0
    assert f["prior_orders"] == 0
    assert f["amount_to_usual"] == 1.0 and f["amount_z"] == 0.0
    assert f["account_age_h"] == 0.0 and f["since_prev_h"] == SPEC.history_ms / H
    assert f["device_orders"] == 0 and f["city_orders"] == 0 and f["km_from_usual"] == 0
    assert f["orders_last_hour"] == 0 and f["device_users_24h"] == 0


def test_a_customers_usual_amount_device_and_city() -> None:
    history = [order(k * 5 * H, amount=a) for k, a in enumerate((200.0, 300.0, 400.0))]
    takeover = order(16 * H, device="d9", city="Delhi", amount=1400.0)
    *_, f = vector([*history, takeover])
    mean, std = 300.0, statistics.pstdev([200.0, 300.0, 400.0])
    assert f["prior_orders"] == 3
    assert f["amount_to_usual"] == pytest.approx(1400.0 / mean)
    assert f["amount_z"] == pytest.approx((1400.0 - mean) / (std + 0.1 * mean + 1.0))
    assert f["account_age_h"] == 16.0 and f["since_prev_h"] == 6.0
    assert f["device_orders"] == 0 and f["city_orders"] == 0  # both new to this customer
    assert f["km_from_usual"] == SPEC.distances["Mumbai"]["Delhi"] > 1000
    same = vector([*history, order(16 * H, amount=310.0)])[-1]
    assert same["device_orders"] == 3 and same["city_orders"] == 3 and same["km_from_usual"] == 0


def test_orders_in_the_last_hour_and_users_on_a_device() -> None:
    rows = [order(0), order(20 * 60_000), order(50 * 60_000), order(70 * 60_000)]
    assert [f["orders_last_hour"] for f in vector(rows)] == [0, 1, 2, 2]  # 60 min back is outside
    shared = [order(0, "a"), order(H, "b"), order(2 * H, "c"), order(2 * H + 1, "a"), order(26 * H, "d")]
    assert [f["device_users_24h"] for f in vector(shared)] == [0, 1, 2, 2, 1]  # only c within 24 h of d


def test_one_instant_is_folded_in_id_order_whatever_the_arrival_order() -> None:
    rows = [order(H, tx="b"), order(H, tx="a"), order(H, tx="c")]
    forward = vector(rows)
    assert [f["prior_orders"] for f in forward] == [0, 1, 2]
    assert vector(list(reversed(rows))) == forward


def test_bounded_state_evicts_the_least_recently_seen() -> None:
    spec = dataclasses.replace(SPEC, max_devices=2, device_users_max=2)
    rows = [order(0, device="d1"), order(H, device="d2"), order(2 * H, device="d3"), order(3 * H, device="d1")]
    assert [f["device_orders"] for f in vector(rows, spec)] == [0, 0, 0, 0]  # d1 was evicted by d3
    assert [f["device_orders"] for f in vector([*rows[:2], order(2 * H, device="d1")], spec)][-1] == 1
    h = UserHistory()
    for k in range(500):
        user_step(spec, h, order(k * 60_000, device=f"d{k}", city=f"c{k}"), 0)
    assert len(h.devices) == 2 and len(h.cities) == spec.max_cities and len(h.recent) <= spec.recent_max
    d = DeviceHistory()
    for k in range(50):
        device_step(spec, d, order(k, user=f"u{k}"))
    assert len(d.users) == 2


def test_a_customer_silent_for_the_history_span_starts_again() -> None:
    spec = dataclasses.replace(SPEC, history_ms=10 * H)
    f = vector([order(0), order(H), order(11 * H)], spec)
    assert [x["prior_orders"] for x in f] == [0, 1, 0]


def _oracle(orders: list[Order], spec: FeatureSpec) -> dict[str, dict[str, float]]:
    """Each order's features from the whole stream by brute force (caps never reached)."""
    ordered = sorted(orders, key=lambda o: o.sort_key)
    out = {}
    for i, o in enumerate(ordered):
        t = o.event_time
        before = [p for p in ordered[:i] if p.user_id == o.user_id]
        # the history is what follows the last silence of history_ms or more
        start = 0
        times = [p.event_time for p in before] + [t]
        for k in range(1, len(times)):
            if times[k] - times[k - 1] >= spec.history_ms:
                start = k
        hist = before[start:]
        amounts = [p.amount for p in hist]
        f: dict[str, float] = {"amount": o.amount, "prior_orders": len(hist)}
        if hist:
            mean = statistics.fmean(amounts)
            std = statistics.pstdev(amounts)
            f["amount_to_usual"] = o.amount / mean
            f["amount_z"] = (o.amount - mean) / (std + 0.1 * mean + 1.0)
            f["account_age_h"] = (t - hist[0].event_time) / H
            f["since_prev_h"] = (t - hist[-1].event_time) / H
            counts: dict[str, list[int]] = {}
            for p in hist:
                c = counts.setdefault(p.city, [0, 0])
                c[0] += 1
                c[1] = p.event_time
            usual = min(counts, key=lambda c: (-counts[c][0], -counts[c][1], c))
            f["km_from_usual"] = spec.distances.get(usual, {}).get(o.city, -1)
        else:
            f.update(amount_to_usual=1.0, amount_z=0.0, account_age_h=0.0, since_prev_h=spec.history_ms / H)
            f["km_from_usual"] = 0
        f["orders_last_hour"] = sum(1 for p in hist if t - p.event_time < spec.recent_ms)
        f["device_orders"] = sum(1 for p in hist if p.device_id == o.device_id)
        f["city_orders"] = sum(1 for p in hist if p.city == o.city)
        f["device_users_24h"] = len(
            {p.user_id for p in ordered[:i] if p.device_id == o.device_id and p.user_id != o.user_id
             and t - p.event_time < spec.device_window_ms}
        )  # fmt: skip
        out[o.transaction_id] = f
    return out


def test_the_features_of_a_generated_stream_equal_a_brute_force_oracle() -> None:
    spec = dataclasses.replace(
        SPEC, history_ms=6 * H, max_devices=1000, max_cities=1000, recent_max=1000, device_users_max=1000
    )
    gen = OrderGenerator(seed=5, users=150, mean_gap_ms=20_000, jitter_ms=30_000)
    orders = [parse_record(orjson.dumps(e)) for e in gen.orders(2_500)]
    rng = random.Random(1)
    rng.shuffle(orders)  # arrival order must not matter
    orders = first_copies(orders, Redelivery(redelivery_horizon(Settings().rules)))
    expected = _oracle(orders, spec)
    got = vector(orders, spec)
    assert len(got) == len(expected) == len(orders)
    ids = [o.transaction_id for o in sorted(orders, key=lambda o: o.sort_key)]
    assert any(f["prior_orders"] >= 5 for f in got) and any(f["device_users_24h"] >= 1 for f in got)
    for tx, f in zip(ids, got, strict=True):
        for name in FEATURES:
            assert math.isclose(f[name], expected[tx][name], rel_tol=1e-9, abs_tol=1e-9), (tx, name)


def test_every_feature_is_finite_after_a_tiny_amount() -> None:
    """A valid 1e-309 (a subnormal) then 1,000 once gave amount_to_usual = inf: the rupee's
    floor keeps it, and every other feature, a finite number."""
    amounts = [1e-309, 1000.0, 1.7e308, 1.7e308, 5.0]  # then a spread that overflows to inf: z stays finite
    rows = vector([order((i + 1) * H, amount=a) for i, a in enumerate(amounts)])
    assert all(math.isfinite(v) for f in rows for v in f.values()), rows
    assert rows[1]["amount_to_usual"] == 1000.0  # amount / max(mean, 1)
