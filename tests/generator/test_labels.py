"""Ground truth: every event says which pattern it belongs to and, for fraud, which actor."""

from __future__ import annotations

import re
from collections import Counter, defaultdict

import orjson
import pytest

from fraudstream.config import DEFAULT_PATTERN_SHARES, DetectorSettings
from fraudstream.detectors import AlertDeduplicator, build_detectors
from fraudstream.detectors.replay import replay
from fraudstream.events import parse_record
from fraudstream.generator import BEHAVIORS, PATTERNS, OrderGenerator

USERS = 20_000
RULES = DetectorSettings(velocity_threshold=3, device_sharing_threshold=3, high_value_threshold=1500.0)


def _index(user_id: str) -> int:
    return int(user_id.removeprefix("u_"))


@pytest.fixture(scope="module")
def events():
    return list(OrderGenerator(seed=11, users=USERS, fraud_ratio=0.25).orders(50_000))


def test_every_event_is_labelled_and_only_fraud_names_an_actor(events):
    for e in events:
        assert e["behavior"] in BEHAVIORS
        if e["behavior"] == "normal":
            assert "fraud_actor" not in e
        else:
            assert re.fullmatch(rf"{e['behavior']}-\d{{6,}}", e["fraud_actor"])


def test_an_actor_keeps_one_pattern_and_the_shape_of_one_episode(events):
    actors = defaultdict(list)
    for e in events:
        if "fraud_actor" in e:
            actors[e["fraud_actor"]].append(e)
    assert len(actors) > 1_000
    for actor, evs in actors.items():
        assert {e["behavior"] for e in evs} == {actor.rsplit("-", 1)[0]}
        kind = evs[0]["behavior"]
        users = {e["user_id"] for e in evs}
        devices = {e["device_id"] for e in evs}
        assert len(devices) == 1  # one actor, one device ...
        if kind not in ("account_farm", "promo_abuse"):
            assert len(users) == 1  # ... and one account, except for farms of accounts


def test_actor_ids_are_unique_per_episode(events):
    """Two episodes never share an id: a fresh account or device belongs to one actor only."""
    actor_of_user = {}
    actor_of_device = {}
    for e in events:
        if e["behavior"] in ("velocity_burst", "city_hopping", "account_farm", "promo_abuse"):
            assert actor_of_user.setdefault(e["user_id"], e["fraud_actor"]) == e["fraud_actor"]
        if e["behavior"] not in ("normal", "high_value"):  # a quiet takeover's device is new too
            assert actor_of_device.setdefault(e["device_id"], e["fraud_actor"]) == e["fraud_actor"]


def test_fresh_accounts_are_fresh_and_taken_over_accounts_exist(events):
    normal_users = {e["user_id"] for e in events if e["behavior"] == "normal"}
    assert all(_index(u) <= USERS for u in normal_users)
    for e in events:
        if e["behavior"] in ("high_value", "account_takeover"):
            assert _index(e["user_id"]) <= USERS
        elif e["behavior"] != "normal":
            assert _index(e["user_id"]) > USERS and e["user_id"] not in normal_users


def _actor_patterns(events) -> Counter:
    return Counter(e["behavior"] for e in {e["fraud_actor"]: e for e in events if "fraud_actor" in e}.values())


def test_default_pattern_shares(events):
    counts = _actor_patterns(events)
    total = sum(counts.values())
    assert set(counts) == set(PATTERNS) == set(DEFAULT_PATTERN_SHARES)
    for p in PATTERNS:
        assert abs(counts[p] / total - DEFAULT_PATTERN_SHARES[p]) < 0.03, counts


def test_pattern_shares_set_the_mix_of_episodes_and_zero_or_missing_turns_one_off():
    shares = {"velocity_burst": 3, "account_farm": 1, "high_value": 0}  # the others missing
    events = list(OrderGenerator(seed=12, pattern_shares=shares).orders(50_000))
    counts = _actor_patterns(events)
    total = sum(counts.values())
    assert set(counts) == {"velocity_burst", "account_farm"}
    assert abs(counts["velocity_burst"] / total - 0.75) < 0.04, counts
    assert 0.18 < sum(e["behavior"] != "normal" for e in events) / len(events) < 0.22

    only = _actor_patterns(OrderGenerator(seed=12, pattern_shares={"city_hopping": 0.1}).orders(20_000))
    assert set(only) == {"city_hopping"}


def test_detectors_do_not_read_the_labels(events):
    """Stripping the labels changes no alert."""
    sample = events[:20_000]
    detectors = build_detectors(RULES)

    def alerts(raw):
        orders = [parse_record(orjson.dumps(r)) for r in raw]
        return sorted(a.alert_id for a in replay(orders, detectors, AlertDeduplicator()))

    blind = [{k: v for k, v in e.items() if k not in ("behavior", "fraud_actor")} for e in sample]
    labelled = alerts(sample)
    assert labelled and labelled == alerts(blind)
