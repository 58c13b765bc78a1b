"""Each fraud pattern has its shape and real variety from one actor to the next."""

from __future__ import annotations

from collections import defaultdict

import pytest

from fraudstream.generator import OrderGenerator
from fraudstream.generator.orders import FAR_CITIES

MIN = 60_000
USERS = 20_000


@pytest.fixture(scope="module")
def episodes():
    """Complete episodes (started at least 3 hours before the stream ends), by pattern."""
    events = list(OrderGenerator(seed=21, users=USERS, fraud_ratio=0.5, mean_gap_ms=1_000).orders(40_000))
    end = events[-1]["event_time"]
    actors = defaultdict(list)
    for e in events:
        if "fraud_actor" in e:
            actors[e["fraud_actor"]].append(e)
    by_kind = defaultdict(list)
    for evs in actors.values():
        if evs[0]["event_time"] < end - 3 * 60 * MIN:
            by_kind[evs[0]["behavior"]].append(evs)
    assert all(len(v) > 100 for v in by_kind.values()) and len(by_kind) == 4
    return by_kind


def _gaps(evs):
    times = [e["event_time"] for e in evs]
    return [b - a for a, b in zip(times, times[1:], strict=False)]


def test_velocity_bursts_vary_in_size_and_pace(episodes):
    sizes, gaps, bursts_per_actor = [], [], []
    for evs in episodes["velocity_burst"]:
        bursts = [[evs[0]]]
        for gap, e in zip(_gaps(evs), evs[1:], strict=True):
            if gap > 10 * MIN:
                assert 20 * MIN <= gap <= 91 * MIN + 2 * MIN  # a later burst
                bursts.append([e])
            else:
                gaps.append(gap)
                bursts[-1].append(e)
        bursts_per_actor.append(len(bursts))
        sizes += [len(b) for b in bursts]
        assert len({(e["user_id"], e["device_id"], e["city"]) for e in evs}) == 1
    assert set(sizes) == set(range(3, 10))  # every size from 3 to 9 occurs, and no other
    assert set(bursts_per_actor) == {1, 2}
    assert 0.15 < bursts_per_actor.count(2) / len(bursts_per_actor) < 0.45
    assert 9_000 <= min(gaps) < 15_000 and 100_000 < max(gaps) <= 121_000
    quick = sum(g < 30_000 for g in gaps) / len(gaps)
    assert 0.25 < quick < 0.65  # log-uniform 10-120 s: about 44% under 30 s


def test_account_farms_vary_in_accounts_and_spread(episodes):
    accounts, spreads = [], []
    for evs in episodes["account_farm"]:
        users = {e["user_id"] for e in evs}
        assert len({e["device_id"] for e in evs}) == 1 and len({e["city"] for e in evs}) == 1
        assert len(evs) >= len(users)  # some accounts order twice
        accounts.append(len(users))
        spreads.append(evs[-1]["event_time"] - evs[0]["event_time"])
    assert set(accounts) == set(range(3, 9))
    assert min(spreads) >= 10 * MIN - 5_000 and max(spreads) <= 90 * MIN + 5_000
    assert max(spreads) - min(spreads) > 60 * MIN
    assert any(len(evs) > len({e["user_id"] for e in evs}) for evs in episodes["account_farm"])


def test_high_value_takeovers_are_one_or_two_large_orders(episodes):
    counts, amounts, new_device = [], [], []
    for evs in episodes["high_value"]:
        counts.append(len(evs))
        amounts += [e["amount"] for e in evs]
        assert int(evs[0]["user_id"].removeprefix("u_")) <= USERS  # an existing account
        new_device.append(int(evs[0]["device_id"].removeprefix("d_")) > USERS * 1.1)
    assert set(counts) == {1, 2}
    assert 1_600 <= min(amounts) < 2_000 and 7_000 < max(amounts) <= 9_000
    assert 0.4 < sum(new_device) / len(new_device) < 0.8  # the attacker's phone, or the victim's


def test_city_hopping_goes_far_and_fast_enough_to_be_impossible(episodes):
    stops, gaps = [], []
    for evs in episodes["city_hopping"]:
        cities = [e["city"] for e in evs]
        assert len(set(cities)) == len(cities)
        for a, b in zip(cities, cities[1:], strict=False):
            assert b in FAR_CITIES[a]
        stops.append(len(cities))
        gaps += _gaps(evs)
    assert set(stops) == {2, 3, 4}
    assert 2 * MIN - 2_000 <= min(gaps) < 3 * MIN and 25 * MIN < max(gaps) <= 30 * MIN + 2_000
    under_geo_window = sum(g < 10 * MIN for g in gaps) / len(gaps)
    assert 0.5 < under_geo_window < 0.85  # log-uniform 2-30 min: ~59% within the default 10 min


def test_far_cities_are_symmetric_and_exclude_neighbours():
    for city, far in FAR_CITIES.items():
        assert city not in far and len(far) >= 8
        assert all(city in FAR_CITIES[other] for other in far)
    assert "Pune" not in FAR_CITIES["Mumbai"] and "Delhi" in FAR_CITIES["Mumbai"]
