"""The sql engine's pure parts (no Flink): alerts built from the facts the JVM rule steps
compute, which must equal the Python detectors' own alerts."""

from __future__ import annotations

from fraudstream.detectors.device_sharing import DeviceSharingDetector
from fraudstream.detectors.geo_anomaly import GeoAnomalyDetector
from fraudstream.detectors.high_value import HighValueDetector
from fraudstream.detectors.velocity import VelocityDetector
from fraudstream.events.model import Order
from fraudstream.flink.sql_engine import alert_from_candidate

MIN = 60_000


def _order(tx: str, t: int, user: str = "u1", device: str = "d1", city: str = "Pune", amount: float = 100.0) -> Order:
    return Order(tx, user, device, "r1", amount, city, "UPI", t)


def _replay(detector, orders):
    state = detector.new_state()
    alerts = []
    for o in orders:
        alerts = detector.evaluate(state, [o])
    return alerts


def test_velocity_alert_from_its_count_equals_the_detectors():
    d = VelocityDetector(threshold=3, window_ms=5 * MIN)
    orders = [_order(f"t{i}", i * MIN) for i in range(4)]
    assert alert_from_candidate(d, orders[-1], 4, None) == _replay(d, orders)[0]


def test_device_alert_from_its_users_equals_the_detectors():
    d = DeviceSharingDetector(threshold=3, window_ms=60 * MIN)
    orders = [_order(f"t{i}", i * MIN, user=f"u{i}") for i in range(4)]
    users = {o.user_id: o.event_time for o in orders}
    assert alert_from_candidate(d, orders[-1], None, users) == _replay(d, orders)[0]


def test_geo_alert_from_earlier_cities_equals_the_detectors():
    d = GeoAnomalyDetector(window_ms=10 * MIN)
    orders = [_order("a", 0, city="Mumbai"), _order("b", 2 * MIN, city="Delhi"), _order("c", 9 * MIN, city="Delhi")]
    # LATEST_BEFORE gives every city of the window before the current order's time, its own included
    before = {"Mumbai": 0, "Delhi": 2 * MIN}
    assert alert_from_candidate(d, orders[-1], None, before) == _replay(d, orders)[0]


def test_device_alert_from_the_newest_users_and_their_count_equals_the_detectors():
    d = DeviceSharingDetector(threshold=2, window_ms=60 * MIN, list_max=20)
    orders = [_order(f"t{i}", i * 100, user=f"u{i:05d}") for i in range(2_000)]
    # DISTINCT_LATEST gives the number of users and the newest 20 of them, not the whole window
    newest = {o.user_id: o.event_time for o in orders[-20:]}
    alert = alert_from_candidate(d, orders[-1], 2_000, newest)
    assert alert == _replay(d, orders)[0]
    assert alert.details["users_total"] == 2_000 and len(alert.details["users"]) == 20


def test_geo_alert_from_the_newest_earlier_cities_and_their_count_equals_the_detectors():
    d = GeoAnomalyDetector(window_ms=60 * MIN, list_max=3)
    cities = ["Agra", "Goa", "Pune", "Delhi", "Ooty", "Agra"]
    orders = [_order(f"t{i}", i * MIN, city=c) for i, c in enumerate(cities)]
    # LATEST_BEFORE: 5 cities before t5; the newest 4 (the cap + 1) and the row's own city, Agra
    before = {"Ooty": 4 * MIN, "Delhi": 3 * MIN, "Pune": 2 * MIN, "Goa": 1 * MIN, "Agra": 0}
    alert = alert_from_candidate(d, orders[-1], 5, before)
    assert alert == _replay(d, orders)[0]
    assert alert.details["other_cities"] == ["Ooty", "Delhi", "Pune"] and alert.details["cities_total"] == 4


def test_high_value_alert_equals_the_detectors():
    d = HighValueDetector(threshold=1500.0)
    o = _order("a", 0, amount=2000.0)
    assert alert_from_candidate(d, o, None, None) == _replay(d, [o])[0]
