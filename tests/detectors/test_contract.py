"""Checks every detector must pass, run over all of them (like river's estimator checks)."""

from __future__ import annotations

import random
from itertools import groupby

import pytest

from fraudstream.config import DetectorSettings
from fraudstream.detectors import build_detectors
from fraudstream.detectors.replay import run_detector
from tests.conftest import BASE, make_order

DETECTORS = build_detectors(DetectorSettings())
CITIES = ["Mumbai", "Delhi", "Pune"]


def _stream(seed: int, n: int = 400):
    rng = random.Random(seed)
    t = BASE
    out = []
    for i in range(n):
        t += rng.choice([0, 1_000, 20_000, 90_000, 400_000, 4_000_000])
        out.append(
            make_order(
                t,
                user=f"u_{rng.randint(1, 4)}",
                device=f"d_{rng.randint(1, 3)}",
                city=rng.choice(CITIES),
                amount=rng.choice([100.0, 1500.0, 1600.0]),
                tx=f"t_{i}",
            )
        )
    return out


@pytest.mark.parametrize("detector", DETECTORS, ids=lambda d: d.alert_type)
def test_first_order_on_fresh_state_is_handled(detector):
    alerts = detector.evaluate(detector.new_state(), [make_order(BASE, amount=10.0)])
    assert alerts == []


@pytest.mark.parametrize("detector", DETECTORS, ids=lambda d: d.alert_type)
def test_deterministic(detector):
    assert run_detector(detector, _stream(1)) == run_detector(detector, _stream(1))


@pytest.mark.parametrize("detector", DETECTORS, ids=lambda d: d.alert_type)
def test_state_stays_bounded_by_the_window(detector):
    state = detector.new_state()
    orders = [make_order(BASE + i * 7_000, user="u_1", device="d_1", city=CITIES[i % 3]) for i in range(3000)]
    horizon_entries = detector.horizon_ms() // 7_000 + 1
    for o in orders:
        detector.evaluate(state, [o])
        sizes = [len(v) for v in vars(state).values() if isinstance(v, list | dict)]
        assert all(s <= max(horizon_entries, len(CITIES)) for s in sizes)


@pytest.mark.parametrize("detector", DETECTORS, ids=lambda d: d.alert_type)
@pytest.mark.parametrize("seed", range(5))
def test_state_can_be_dropped_after_the_horizon(detector, seed):
    """What the Flink cleanup timer relies on: once `horizon` has passed since a key's newest
    order, starting over from empty state changes no result."""
    orders = sorted(_stream(seed), key=lambda o: o.sort_key)
    keep, drop = detector.new_state(), detector.new_state()
    last = None
    for t, batch in groupby(orders, key=lambda o: o.event_time):
        batch = [o for o in batch if o.user_id == "u_1" and o.device_id == "d_1"]
        if not batch:
            continue
        if last is not None and t >= last + detector.horizon_ms():
            drop = detector.new_state()
        assert detector.evaluate(keep, batch) == detector.evaluate(drop, batch)
        last = t


def test_build_detectors_covers_both_keys():
    assert {d.key_field for d in DETECTORS} == {"user_id", "device_id"}
    assert len({d.alert_type for d in DETECTORS}) == 4
