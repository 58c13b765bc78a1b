"""The Quix Streams peer's rules (pure functions over a State-like object, no Kafka) and the
benchmark's report of it: ratios to the peer and the alert counts beside the exact ones."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

import orjson

from fraudstream.bench import quix_peer
from fraudstream.bench.ceilings import python_ceiling
from fraudstream.bench.peers import rules_config
from fraudstream.bench.report import markdown, ratios
from fraudstream.config import DetectorSettings, GeneratorSettings
from fraudstream.detectors import AlertDeduplicator, build_detectors
from fraudstream.detectors.replay import replay
from fraudstream.events.parse import parse_record
from fraudstream.generator import generator_from_settings


class DictState:
    """What Quix's State offers a stateful function: get and set under the message's key."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def set(self, key: str, value: Any) -> None:
        # Quix serializes state values: keep a copy, as it would, not the caller's object.
        self.values[key] = orjson.loads(orjson.dumps(value))


def _peer_alerts(records: list[bytes], rules: dict[str, Any]) -> list[dict]:
    """The peer's pipeline in one process: by user, then re-keyed by device."""
    users: dict[str, DictState] = defaultdict(DictState)
    devices: dict[str, DictState] = defaultdict(DictState)
    alerts = []
    for value in records:
        order = quix_peer.parse(value)
        assert order is not None
        alerts += quix_peer.user_rules(order, users[order["user_id"]], rules)
        alerts += quix_peer.device_rules(order, devices[order["device_id"]], rules)
    return alerts


def _stream(count: int, users: int) -> list[bytes]:
    gen = generator_from_settings(GeneratorSettings(seed=7, count=count, rate=0, users=users))
    return [orjson.dumps(o) for o in gen.orders(count)]


def test_in_event_time_order_the_peer_finds_the_exact_alerts():
    """On one ordered stream (no arrival-order effects) the peer's rules and cooldown are the
    oracle's, so the bench's differences come from arrival order alone."""
    records = _stream(6_000, 1_500)
    d = DetectorSettings()
    orders = [parse_record(v) for v in records]
    assert [o.event_time for o in orders] == sorted(o.event_time for o in orders)
    exact = replay(orders, build_detectors(d), AlertDeduplicator.from_settings(d))
    got = _peer_alerts(records, rules_config(d))
    assert {a.alert_type for a in exact} == set(
        quix_peer.__dict__[n] for n in ("VELOCITY", "DEVICE_SHARING", "HIGH_VALUE", "GEO")
    )
    assert Counter(a["alert_type"] for a in got) == Counter(a.alert_type for a in exact)
    # The same alerts; of several orders at one instant the cooldown keeps the first to arrive
    # here, the oracle the lowest transaction id (the generator's account farms order so).
    assert sorted((a["alert_type"], a["key"], a["event_time"]) for a in got) == sorted(
        (a.alert_type, a.key, a.event_time) for a in exact
    )
    assert len({a["alert_id"] for a in got} & {a.alert_id for a in exact}) > 0.99 * len(exact)


def test_the_python_ceiling_counts_the_exact_alerts_per_type():
    records = _stream(3_000, 800)
    d = DetectorSettings()
    result = python_ceiling(records, d)
    exact = replay([parse_record(v) for v in records], build_detectors(d), AlertDeduplicator.from_settings(d))
    assert result["alerts_by_type"] == dict(sorted(Counter(a.alert_type for a in exact).items()))
    assert sum(result["alerts_by_type"].values()) == result["alerts"] == len(exact) > 0


def test_the_peer_takes_thresholds_windows_cooldowns_and_switches_from_the_settings():
    records = _stream(3_000, 800)
    base = Counter(a["alert_type"] for a in _peer_alerts(records, rules_config(DetectorSettings())))
    changed = DetectorSettings(
        high_value_threshold=100_000, velocity_threshold=1, geo_enabled=False, device_sharing_cooldown_ms=0
    )
    rules = rules_config(changed)
    assert "geo" not in rules and rules["device_sharing"]["cooldown_ms"] == 0 and rules["velocity"]["threshold"] == 1
    got = Counter(a["alert_type"] for a in _peer_alerts(records, rules))
    assert got["HIGH_VALUE_FRAUD"] == 0 < base["HIGH_VALUE_FRAUD"]
    assert got["GEO_ANOMALY_FRAUD"] == 0 < base["GEO_ANOMALY_FRAUD"]
    assert got["VELOCITY_FRAUD"] > base["VELOCITY_FRAUD"]
    assert got["DEVICE_SHARING_FRAUD"] > base["DEVICE_SHARING_FRAUD"]


def test_a_late_order_is_judged_in_arrival_order():
    """What sets the peer apart: an order arriving after a later one of its user is counted
    against what the user's state holds then, not slotted in by event time."""
    rules = rules_config(DetectorSettings(velocity_threshold=1, velocity_window_ms=60_000))
    state = DictState()

    def order(t: int) -> dict[str, Any]:
        return {
            "transaction_id": f"t{t}",
            "user_id": "u",
            "device_id": "d",
            "city": "Pune",
            "amount": 1.0,
            "event_time": t,
        }

    assert quix_peer.user_rules(order(100_000), state, rules) == []
    # 90 s earlier: outside the window of the order before it, but the peer keeps both times
    (alert,) = quix_peer.user_rules(order(10_000), state, rules)
    assert alert["alert_type"] == "VELOCITY_FRAUD" and alert["details"]["order_count"] == 2


def test_parse_skips_what_is_not_an_order():
    good = {"transaction_id": "t", "user_id": "u", "device_id": "d", "city": "c", "amount": 2, "event_time": 5}
    assert quix_peer.parse(orjson.dumps(good)) == good
    assert quix_peer.parse(b"{not json") is None
    assert quix_peer.parse(b"[1]") is None
    assert quix_peer.parse(orjson.dumps(good | {"amount": "2"})) is None
    assert quix_peer.parse(orjson.dumps(good | {"event_time": True})) is None


def _data(peer_rate: float, sql_rate: float) -> dict[str, Any]:
    exact = {"DEVICE_SHARING_FRAUD": 100, "VELOCITY_FRAUD": 50}
    peer = {
        "peer": "quix exactly-once",
        "processing_guarantee": "exactly-once",
        "records": 1000,
        "seconds": 1.0,
        "events_per_s": peer_rate,
        "source_events_per_s": peer_rate * 1.1,
        "startup_s": 0.8,
        "finished": True,
        "peak_rss_mb": 120.0,
        "exit_code": 0,
        "alerts_by_type": {"DEVICE_SHARING_FRAUD": 81, "VELOCITY_FRAUD": 50},
        "alerts": 131,
    }
    return {
        "options": {"orders": 1000, "users": 100},
        "machine": {"cpus": 2, "memory_gb": 8, "date": "2026-12-02"},
        "kafka_ceiling": {"events_per_s": 400_000.0, "records": 1000},
        "python_ceiling": {"events_per_s": 40_000.0, "alerts": 150, "alerts_by_type": exact},
        "peers": [peer | {"peer": "quix at-least-once", "processing_guarantee": "at-least-once"}, peer],
        "runs": [
            {
                "engine": "sql",
                "events_per_s": sql_rate,
                "records": 1000,
                "finished": True,
                "checkpoint_ms": {},
                "state_bytes": None,
                "peak_rss_mb": {},
                "startup_s": 9.0,
            }
        ],
        "latency": [],
    }


def test_engines_are_reported_as_ratios_to_the_exactly_once_peer_and_the_ceilings():
    data = _data(peer_rate=20_000.0, sql_rate=60_000.0)
    found = ratios(data)
    assert found["sql"] == {"quix exactly-once": 3.0, "python ceiling": 1.5, "kafka ceiling": 0.15}
    assert found["quix exactly-once"]["quix exactly-once"] == 1.0
    table = markdown(data)
    assert "÷ Quix peer (exactly-once)" in table
    sql_row = next(line for line in table.splitlines() if "SQL engine" in line)
    assert "| 60,000 | 3.00 | 1.50 | 0.15 |" in sql_row
    # the peer's alerts beside the exact counts, per type and in all
    assert "| DEVICE_SHARING_FRAUD | 100 | 81 (0.81) | 81 (0.81) |" in table
    assert "| all | 150 | 131 (0.87) | 131 (0.87) |" in table


def test_without_a_peer_the_ratios_to_it_are_absent():
    data = _data(peer_rate=20_000.0, sql_rate=60_000.0) | {"peers": []}
    assert ratios(data)["sql"] == {"python ceiling": 1.5, "kafka ceiling": 0.15}
    assert "Quix" not in markdown(data).split("\n\n")[1].splitlines()[2]


def test_the_model_runs_cost_is_one_ratio_to_the_plain_run():
    data = _data(peer_rate=20_000.0, sql_rate=60_000.0)
    data["runs"].append(data["runs"][0] | {"engine": "sql-model", "events_per_s": 45_000.0})
    assert "With the risk model the SQL engine keeps 0.75 of its throughput" in markdown(data)
    assert "keeps" not in markdown(_data(peer_rate=20_000.0, sql_rate=60_000.0))


def test_two_slots_are_reported_as_the_growth_over_one():
    data = _data(peer_rate=20_000.0, sql_rate=60_000.0)
    data["runs"].append(data["runs"][0] | {"engine": "sql-p2", "events_per_s": 78_000.0})
    table = markdown(data)
    assert "On two task slots the SQL engine runs 1.30 times as fast as on one." in table
    two_row = next(line for line in table.splitlines() if "two task slots (`" in line)
    assert "| 78,000 | 3.90 | 1.95 |" in two_row
    assert "two task slots" not in markdown(_data(peer_rate=20_000.0, sql_rate=60_000.0))
