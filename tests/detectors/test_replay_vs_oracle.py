"""The pure rules, replayed offline, agree with the brute-force oracle (no Flink involved)."""

from __future__ import annotations

import orjson
import pytest

from fraudstream.config import DetectorSettings
from fraudstream.detectors import AlertDeduplicator, build_detectors
from fraudstream.detectors.replay import replay
from fraudstream.events import parse_record
from fraudstream.generator import OrderGenerator
from tests.oracle import Params, expected_alerts


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_replay_matches_oracle(seed):
    raw = list(OrderGenerator(seed=seed, users=2_000).orders(6_000))
    orders = [parse_record(orjson.dumps(r)) for r in raw]
    got = replay(orders, build_detectors(DetectorSettings()), AlertDeduplicator())
    assert {(a.alert_type, a.key, a.transaction_id, a.event_time) for a in got} == expected_alerts(raw)
    assert len(got) > 100  # the stream really exercises the rules


def test_replay_matches_oracle_with_other_thresholds():
    raw = list(OrderGenerator(seed=9, users=300).orders(4_000))
    orders = [parse_record(orjson.dumps(r)) for r in raw]
    cfg = DetectorSettings(
        velocity_threshold=2,
        velocity_window_ms=120_000,
        device_sharing_threshold=1,
        geo_window_ms=60_000,
        high_value_threshold=900.0,
        dedup_cooldown_ms=30_000,
    )
    got = replay(orders, build_detectors(cfg), AlertDeduplicator(cfg.dedup_cooldown_ms))
    params = Params(2, 120_000, 1, cfg.device_sharing_window_ms, 900.0, 60_000, 30_000)
    assert {(a.alert_type, a.key, a.transaction_id, a.event_time) for a in got} == expected_alerts(raw, params)
