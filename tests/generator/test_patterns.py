"""Each fraud pattern has its shape and real variety from one actor to the next."""

from __future__ import annotations

from collections import Counter, defaultdict

import orjson
import pytest

from fraudstream.config import Settings
from fraudstream.detectors import AlertDeduplicator, build_detectors
from fraudstream.detectors.replay import replay
from fraudstream.events import parse_record
from fraudstream.generator import PATTERNS, OrderGenerator
from fraudstream.generator.orders import FAR_CITIES, TAKEOVER_LOCKOUT_MS

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
    assert all(len(by_kind[p]) > 100 for p in PATTERNS[:4]) and set(by_kind) == set(PATTERNS)
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


@pytest.fixture(scope="module")
def quiet():
    """The default mix among honest traffic (about 25 hours), the generator (for the truth it
    keeps about each customer) and its quiet episodes, complete ones only, by pattern."""
    gen = OrderGenerator(seed=22, users=USERS, fraud_ratio=0.25, mean_gap_ms=1_500)
    events = list(gen.orders(60_000))
    unfinished = {e["fraud_actor"] for _, _, e in gen._heap if "fraud_actor" in e}
    actors = defaultdict(list)
    for e in events:
        if e.get("fraud_actor") and e["fraud_actor"] not in unfinished:
            actors[e["fraud_actor"]].append(e)
    by_kind = defaultdict(list)
    for evs in actors.values():
        by_kind[evs[0]["behavior"]].append(evs)
    assert len(by_kind["account_takeover"]) > 200 and len(by_kind["promo_abuse"]) > 100
    return gen, events, by_kind


def _index(user_id: str) -> int:
    return int(user_id.removeprefix("u_")) - 1


def test_quiet_takeovers_strike_a_customer_with_a_history_from_a_new_device(quiet):
    gen, events, by_kind = quiet
    honest_before = Counter()  # honest orders of each user so far
    seen_devices = defaultdict(set)  # devices each user ordered from so far
    regulars = 0  # customers with 3 honest orders so far
    last_honest = {}  # user -> event time of their latest honest order
    at_start = {}  # actor -> (the victim's earlier honest orders, regulars then, devices seen)
    idle = {}  # actor -> the victim had not ordered for an hour (or never had)
    for e in events:
        actor = e.get("fraud_actor")
        if e["behavior"] == "account_takeover" and actor not in at_start:
            at_start[actor] = (honest_before[e["user_id"]], regulars, set(seen_devices[e["user_id"]]))
            idle[actor] = e["event_time"] - last_honest.get(e["user_id"], -(10**15)) >= 60 * MIN
        if e["behavior"] == "normal":
            honest_before[e["user_id"]] += 1
            regulars += honest_before[e["user_id"]] == 3
            last_honest[e["user_id"]] = e["event_time"]
        seen_devices[e["user_id"]].add(e["device_id"])
    counts, away, usual_payment, gaps, amounts = [], [], [], [], []
    for evs in by_kind["account_takeover"]:
        i = _index(evs[0]["user_id"])
        history, regulars, devices = at_start[evs[0]["fraud_actor"]]
        # 3 orders, or an idle customer with fewer rather than one who just ordered; anyone in the first hours
        assert i < USERS and (history >= 3 or idle[evs[0]["fraud_actor"]] or regulars < 100)
        assert len({e["device_id"] for e in evs}) == 1 and evs[0]["device_id"] not in devices
        assert evs[0]["device_id"] not in gen._devices.get(i, (f"d_{i + 1}", None))
        assert len({e["city"] for e in evs}) == 1  # never a hop for the geo rule
        away.append(evs[0]["city"] != gen._home[i])
        basket = gen._basket[i]
        for e in evs:
            assert 3 * basket - 0.01 <= e["amount"] <= 6 * basket + 0.01 and e["amount"] < 1_450
            amounts.append(e["amount"] / basket)
            usual_payment.append(e["payment_method"] == gen._payment[i])
            assert e["payment_method"] in (gen._payment[i], "Credit Card", "Debit Card")
        counts.append(len(evs))
        gaps += _gaps(evs)
    histories = [at_start[evs[0]["fraud_actor"]][0] for evs in by_kind["account_takeover"]]
    assert sum(h >= 3 for h in histories) / len(histories) > 0.9  # all but the first hours
    # an owner who ordered minutes before would be a hop for the geo rule: the first hour only
    assert sum(not v for v in idle.values()) / len(idle) < 0.05
    assert set(counts) == {2, 3, 4}
    assert 15 * MIN - 5_000 <= min(gaps) < 20 * MIN and 75 * MIN < max(gaps) <= 90 * MIN + 5_000
    assert 0.7 < sum(away) / len(away) < 0.9  # 80% from a city new to the customer
    assert 0.45 < sum(usual_payment) / len(usual_payment) < 0.8
    assert min(amounts) < 3.3 and max(amounts) > 4.5  # several times the usual, not one multiple


def test_a_taken_over_owner_is_locked_out_of_the_account(quiet):
    """The attacker changes the password: the owner's own orders stop for the episode and
    a while after, so no honest order lands beside the attacker's in another city."""
    _, events, by_kind = quiet
    honest = defaultdict(list)
    for e in events:
        if e["behavior"] == "normal":
            honest[e["user_id"]].append(e["event_time"])
    resumed = []
    for evs in by_kind["account_takeover"]:
        start, end = evs[0]["event_time"], evs[-1]["event_time"]
        times = honest[evs[0]["user_id"]]
        assert not [t for t in times if start <= t <= end + TAKEOVER_LOCKOUT_MS - 5_000]
        resumed += [t for t in times if t > end + TAKEOVER_LOCKOUT_MS]
    assert resumed  # ... and orders again later


def test_promo_abuse_is_fresh_accounts_one_order_each_on_one_device_slowly(quiet):
    _, events, by_kind = quiet
    orders_of = Counter(e["user_id"] for e in events)
    first_seen = {}
    for n, e in enumerate(events):
        first_seen.setdefault(e["device_id"], n)
    position = {e["transaction_id"]: n for n, e in enumerate(events)}
    accounts, gaps, amounts = [], [], []
    for evs in by_kind["promo_abuse"]:
        users = [e["user_id"] for e in evs]
        assert len(set(users)) == len(users) and all(orders_of[u] == 1 for u in users)  # one order each
        assert all(_index(u) >= USERS for u in users)  # fresh accounts
        assert len({e["device_id"] for e in evs}) == 1 and len({e["city"] for e in evs}) == 1
        assert first_seen[evs[0]["device_id"]] == position[evs[0]["transaction_id"]]  # a fresh device
        accounts.append(len(users))
        gaps += _gaps(evs)
        amounts += [e["amount"] for e in evs]
    assert set(accounts) == set(range(4, 11))
    assert 35 * MIN - 5_000 <= min(gaps) < 40 * MIN and 140 * MIN < max(gaps) <= 150 * MIN + 5_000
    assert 200 <= min(amounts) < 220 and 580 < max(amounts) <= 600


@pytest.mark.slow  # a model fit or a replay of the rules: make test, not make check
def test_the_rules_catch_almost_no_quiet_fraud(quiet):
    """Replayed through the four rules at their defaults, the quiet patterns stay quiet, while
    the loud ones in the same stream are caught as usual."""
    _, events, by_kind = quiet
    rules = Settings().detectors
    orders = [parse_record(orjson.dumps(e)) for e in events]
    alerts = replay(orders, build_detectors(rules), AlertDeduplicator.from_settings(rules))
    actor_of = {e["transaction_id"]: e.get("fraud_actor") for e in events}
    caught = {actor_of[a.transaction_id] for a in alerts} - {None}

    def rate(kind: str) -> float:
        actors = [evs[0]["fraud_actor"] for evs in by_kind[kind]]
        return sum(a in caught for a in actors) / len(actors)

    assert rate("account_takeover") <= 0.10
    assert rate("promo_abuse") <= 0.05
    assert min(rate(kind) for kind in ("velocity_burst", "high_value", "city_hopping")) > 0.8
