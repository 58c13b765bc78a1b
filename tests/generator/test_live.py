"""The live clock: a paced, unseeded stream is stamped with the wall clock as it is made."""

from __future__ import annotations

import time
from collections import defaultdict

import pytest

from fraudstream.config import GeneratorSettings, Settings
from fraudstream.generator import LIVE_START, OrderGenerator, generator_from_settings, is_live, live_users
from fraudstream.generator.orders import LIVE_MAX_USERS, SEEDED_START, _start_ms
from fraudstream.generator.pacing import paced

NOW = 1_790_000_000_000


class FakeClock:
    """Epoch ms that advance by `step_ms` each time they are read (one read per order)."""

    def __init__(self, step_ms: float, start: int = NOW) -> None:
        self.t = float(start)
        self.step = step_ms
        self.reads: list[int] = []

    def __call__(self) -> int:
        self.t += self.step
        self.reads.append(int(self.t))
        return int(self.t)


def test_each_order_is_stamped_with_the_clock_when_it_is_made():
    clock = FakeClock(20)  # 50 orders/s
    gen = OrderGenerator(seed=1, clock=clock)
    for _ in range(5_000):
        order = gen.next_order()
        assert order["event_time"] == clock.reads[-1]
    assert clock.reads[-1] - NOW == pytest.approx(5_001 * 20, abs=1)


def test_a_live_clock_that_stands_still_holds_back_scheduled_orders():
    """Unlike mean_gap_ms=0, a live stream emits an episode's later orders only when they are due."""
    clock = FakeClock(0)
    gen = OrderGenerator(seed=2, clock=clock)
    events = [gen.next_order() for _ in range(2_000)]
    assert {e["event_time"] for e in events} == {NOW}
    assert len(gen._heap) > 100  # bursts, farms and hops wait for their time
    clock.step = 60_000
    later = [gen.next_order() for _ in range(200)]
    assert sum(e["behavior"] != "normal" for e in later) > 100


def test_fraud_patterns_keep_their_real_spacing_on_the_live_clock():
    """A velocity burst's orders are 10 s - 2 min apart in wall-clock time, not compressed by the rate."""
    clock = FakeClock(20)
    gen = OrderGenerator(seed=3, clock=clock, pattern_shares={"velocity_burst": 1})
    actors: dict[str, list[int]] = defaultdict(list)
    for _ in range(200_000):  # about 67 minutes at 50/s
        e = gen.next_order()
        if "fraud_actor" in e:
            actors[e["fraud_actor"]].append(e["event_time"])
    gaps = [b - a for times in actors.values() for a, b in zip(times, times[1:], strict=False)]
    assert len(gaps) > 1_000
    first_burst = [g for g in gaps if g < 20 * 60_000]
    assert min(first_burst) >= 10_000 - 20 and max(first_burst) <= 120_000 + 20
    assert any(g >= 20 * 60_000 for g in gaps)  # some actors come back 20-90 minutes later


def test_live_population_keeps_each_customer_as_frequent_as_the_reproducible_stream():
    cfg = GeneratorSettings(rate=50, start_time=LIVE_START)
    assert live_users(cfg) == 250_000  # 20,000 customers at 4 orders/s, scaled to 50/s
    assert live_users(cfg.model_copy(update={"rate": 1})) == 5_000
    assert live_users(cfg.model_copy(update={"rate": 10_000})) == LIVE_MAX_USERS
    assert generator_from_settings(cfg).n_users == 250_000
    assert generator_from_settings(cfg.model_copy(update={"seed": 5})).n_users == 250_000


def test_which_settings_are_live():
    assert is_live(GeneratorSettings(start_time=LIVE_START, rate=50))
    assert not is_live(GeneratorSettings(start_time=LIVE_START, rate=0))  # flat out: its own clock, from now
    assert not is_live(GeneratorSettings(rate=50))
    assert not is_live(GeneratorSettings(seed=1, rate=50, start_time="2026-03-01T00:00:00Z"))


def test_live_settings_read_the_given_clock_and_flat_out_ones_start_now():
    clock = FakeClock(5)
    gen = generator_from_settings(GeneratorSettings(start_time=LIVE_START, rate=200, seed=7), clock=clock)
    times = [o["event_time"] for o in gen.orders(100)]
    assert times == clock.reads[1:]  # the first read is the start
    before = int(time.time() * 1000)
    flat = generator_from_settings(GeneratorSettings(start_time=LIVE_START, rate=0, seed=7))
    assert flat.live_clock is None and before - 1 <= flat.clock <= int(time.time() * 1000) + 1
    orders = list(flat.orders(2_000))
    assert orders[-1]["event_time"] - orders[0]["event_time"] > 2_000 * 100  # its own clock, 250 ms apart


def test_reproducible_streams_keep_their_own_clock():
    seeded = generator_from_settings(GeneratorSettings(seed=7, rate=50))
    assert seeded.live_clock is None and seeded.clock == _start_ms(SEEDED_START, True)
    assert list(seeded.orders(500)) == list(OrderGenerator(seed=7).orders(500))


def test_paced_takes_each_item_when_its_turn_comes():
    made: list[float] = []

    def items():
        for i in range(11):
            made.append(time.monotonic())
            yield i

    started = time.monotonic()
    received = []
    for item in paced(items(), rate=100):
        received.append((item, time.monotonic()))
    assert [i for i, _ in received] == list(range(11))
    assert time.monotonic() - started >= 10 / 100 - 0.005
    # Made just before it was handed over, not one interval earlier.
    assert all(at - m < 0.005 for m, (_, at) in zip(made, received, strict=True))
    # And never before its turn (the pacer keeps an absolute schedule: a late wake-up is caught
    # up by the next item, so the gap between two may be short under load, but none is early).
    assert all(m - started >= i / 100 - 0.005 for i, m in enumerate(made))


def test_pin_stream_makes_unseeded_paced_runs_live_and_leaves_the_others_alone():
    from fraudstream.cli.app import pin_stream

    live = pin_stream(Settings()).generator
    assert live.start_time == LIVE_START and live.seed is not None and is_live(live)
    for overrides in (
        {"generator.seed": 3},
        {"generator.rate": 0},
        {"generator.start_time": "2026-05-01T00:00:00Z"},
    ):
        g = pin_stream(Settings().with_overrides(overrides)).generator
        assert not is_live(g), overrides
        assert g.seed is not None
