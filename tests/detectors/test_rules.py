"""Boundary tests for each rule, straight from the table in the issue."""

from __future__ import annotations

from fraudstream.detectors import (
    AlertDeduplicator,
    DeviceSharingDetector,
    GeoAnomalyDetector,
    HighValueDetector,
    VelocityDetector,
)
from fraudstream.detectors.replay import deduplicate, run_detector
from tests.conftest import BASE, MIN, make_order


def fired(alerts):
    return [(a.alert_type, a.key, a.event_time) for a in alerts]


# ---------------------------------------------------------------- velocity
def test_velocity_fires_on_the_fourth_order_in_five_minutes():
    orders = [make_order(BASE + i * MIN) for i in range(4)]
    alerts = run_detector(VelocityDetector(), orders)
    assert fired(alerts) == [("VELOCITY_FRAUD", "u_1", BASE + 3 * MIN)]
    assert alerts[0].details["order_count"] == 4
    assert alerts[0].message == "User u_1 placed 4 orders in 5 minutes"
    assert alerts[0].severity == "HIGH"


def test_velocity_three_orders_is_not_enough():
    assert run_detector(VelocityDetector(), [make_order(BASE + i) for i in range(3)]) == []


def test_velocity_order_exactly_five_minutes_old_no_longer_counts():
    times = [BASE, BASE + 1, BASE + 2, BASE + 5 * MIN]
    assert run_detector(VelocityDetector(), [make_order(t) for t in times]) == []
    times[-1] = BASE + 5 * MIN - 1  # one millisecond inside the window
    assert len(run_detector(VelocityDetector(), [make_order(t) for t in times])) == 1


def test_velocity_orders_at_the_same_instant_see_each_other():
    orders = [make_order(BASE, tx=f"t{i}") for i in range(4)]
    alerts = run_detector(VelocityDetector(), orders)
    # every order at t has 4 orders in (t - 5 min, t]
    assert sorted(a.transaction_id for a in alerts) == ["t0", "t1", "t2", "t3"]


def test_velocity_is_per_user_and_configurable():
    orders = [make_order(BASE + i, user=f"u_{i % 2}") for i in range(6)]
    assert run_detector(VelocityDetector(), orders) == []
    assert len(run_detector(VelocityDetector(threshold=2), orders)) == 2


# ---------------------------------------------------------- device sharing
def test_device_sharing_fires_on_the_fourth_distinct_user():
    orders = [make_order(BASE + i * MIN, user=f"u_{i}", device="d_9") for i in range(4)]
    alerts = run_detector(DeviceSharingDetector(), orders)
    assert fired(alerts) == [("DEVICE_SHARING_FRAUD", "d_9", BASE + 3 * MIN)]
    assert alerts[0].user_id == "u_3"  # the user whose order tipped the device over
    assert alerts[0].severity == "CRITICAL"
    assert alerts[0].details["distinct_users"] == 4


def test_device_sharing_counts_users_not_orders():
    orders = [make_order(BASE + i, user=f"u_{i % 3}", device="d_9") for i in range(10)]
    assert run_detector(DeviceSharingDetector(), orders) == []


def test_device_sharing_user_exactly_sixty_minutes_old_no_longer_counts():
    times = [BASE, BASE + 1, BASE + 2, BASE + 60 * MIN]
    orders = [make_order(t, user=f"u_{i}", device="d_9") for i, t in enumerate(times)]
    assert run_detector(DeviceSharingDetector(), orders) == []
    orders[-1] = make_order(BASE + 60 * MIN - 1, user="u_3", device="d_9")
    assert len(run_detector(DeviceSharingDetector(), orders)) == 1


def test_device_sharing_a_returning_user_refreshes_their_time():
    # u_0 at 0 and again at 50 min: at 70 min u_0 (50 min ago) still counts.
    orders = [
        make_order(BASE, user="u_0", device="d"),
        make_order(BASE + 50 * MIN, user="u_0", device="d"),
        make_order(BASE + 65 * MIN, user="u_1", device="d"),
        make_order(BASE + 66 * MIN, user="u_2", device="d"),
        make_order(BASE + 70 * MIN, user="u_3", device="d"),
    ]
    assert fired(run_detector(DeviceSharingDetector(), orders)) == [("DEVICE_SHARING_FRAUD", "d", BASE + 70 * MIN)]


# -------------------------------------------------------------- high value
def test_high_value_is_strictly_above_the_threshold():
    orders = [make_order(BASE, amount=1500.0), make_order(BASE + 1, amount=1500.01)]
    alerts = run_detector(HighValueDetector(), orders)
    assert fired(alerts) == [("HIGH_VALUE_FRAUD", "u_1", BASE + 1)]
    assert alerts[0].severity == "MEDIUM"
    assert run_detector(HighValueDetector(threshold=2000), orders) == []


# ------------------------------------------------------------- geo anomaly
def test_geo_fires_on_another_city_within_ten_minutes():
    orders = [make_order(BASE, city="Mumbai"), make_order(BASE + 9 * MIN, city="Delhi")]
    alerts = run_detector(GeoAnomalyDetector(), orders)
    assert fired(alerts) == [("GEO_ANOMALY_FRAUD", "u_1", BASE + 9 * MIN)]
    assert alerts[0].details["previous_city"] == "Mumbai"


def test_geo_order_exactly_ten_minutes_old_does_not_count():
    orders = [make_order(BASE, city="Mumbai"), make_order(BASE + 10 * MIN, city="Delhi")]
    assert run_detector(GeoAnomalyDetector(), orders) == []
    orders[1] = make_order(BASE + 10 * MIN - 1, city="Delhi")
    assert len(run_detector(GeoAnomalyDetector(), orders)) == 1


def test_geo_same_instant_and_same_city_do_not_count():
    same_time = [make_order(BASE, city="Mumbai", tx="a"), make_order(BASE, city="Delhi", tx="b")]
    assert run_detector(GeoAnomalyDetector(), same_time) == []
    same_city = [make_order(BASE, city="Pune"), make_order(BASE + MIN, city="Pune")]
    assert run_detector(GeoAnomalyDetector(), same_city) == []


def test_geo_earlier_other_city_still_seen_after_an_order_at_the_same_time():
    # Mumbai at 0, Delhi at 5 min twice (same instant): both Delhi orders see Mumbai.
    orders = [
        make_order(BASE, city="Mumbai"),
        make_order(BASE + 5 * MIN, city="Delhi", tx="x"),
        make_order(BASE + 5 * MIN, city="Delhi", tx="y"),
    ]
    assert sorted(a.transaction_id for a in run_detector(GeoAnomalyDetector(), orders)) == ["x", "y"]


# ------------------------------------------------------------------- dedup
def _velocity_alerts_at(*times):
    det = VelocityDetector(threshold=0)
    return [det.make_alert(make_order(t), "m", {}) for t in times]


def test_dedup_cooldown_boundaries():
    alerts = _velocity_alerts_at(BASE, BASE + 5 * MIN - 1, BASE + 5 * MIN, BASE + 9 * MIN, BASE + 10 * MIN)
    kept = deduplicate(alerts, AlertDeduplicator())
    # suppressed alerts do not restart the cooldown
    assert [a.event_time for a in kept] == [BASE, BASE + 5 * MIN, BASE + 10 * MIN]


def test_dedup_is_per_type_and_key():
    det = VelocityDetector(threshold=0)
    a = det.make_alert(make_order(BASE, user="u_1"), "m", {})
    b = det.make_alert(make_order(BASE, user="u_2"), "m", {})
    c = HighValueDetector(threshold=0).make_alert(make_order(BASE, user="u_1"), "m", {})
    assert len(deduplicate([a, b, c], AlertDeduplicator())) == 3


def test_dedup_same_instant_keeps_one_deterministically():
    alerts = [VelocityDetector(threshold=0).make_alert(make_order(BASE, tx=tx), "m", {}) for tx in ("t_b", "t_a")]
    assert [a.transaction_id for a in deduplicate(alerts, AlertDeduplicator())] == ["t_a"]


def test_dedup_zero_cooldown_keeps_everything():
    alerts = _velocity_alerts_at(BASE, BASE + 1, BASE + 2)
    assert len(deduplicate(alerts, AlertDeduplicator(cooldown_ms=0))) == 3


def test_alert_ids_are_deterministic_and_distinct():
    first = _velocity_alerts_at(BASE, BASE + 1)
    again = _velocity_alerts_at(BASE, BASE + 1)
    assert [a.alert_id for a in first] == [a.alert_id for a in again]
    assert first[0].alert_id != first[1].alert_id
