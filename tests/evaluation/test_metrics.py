from __future__ import annotations

import pytest

from fraudstream.evaluation import ALL, MATCHING_RULE, AlertRecord, evaluate

from .streams import BASE, SEC, actor, alert, honest


def test_seven_of_ten_actors_caught_with_three_false_alerts():
    events = honest(20)
    alerts = []
    for i in range(10):
        events += actor(f"v{i}", "velocity_burst", [100 + i, 110 + i, 120 + i])
        if i < 7:
            alerts.append(alert("VELOCITY_FRAUD", f"v{i}-0"))  # on the actor's first order
    alerts += [alert("VELOCITY_FRAUD", f"h{i}") for i in (3, 8, 15)]

    report = evaluate(events, alerts)
    row = report.row("VELOCITY_FRAUD")

    assert (row.alerts, row.true_alerts, row.false_alerts, row.unmatched_alerts) == (10, 7, 3, 0)
    assert row.precision == pytest.approx(7 / 10)
    assert (row.actors_caught, row.actors) == (7, 10)
    assert row.actor_recall == pytest.approx(0.7)
    assert row.f1 == pytest.approx(0.7)  # 2 * 0.7 * 0.7 / 1.4
    assert (row.events_covered, row.fraud_events) == (21, 30)
    assert row.event_recall == pytest.approx(21 / 30)
    assert row.false_per_1k_honest == pytest.approx(3 / 20 * 1000)
    assert report.overall.precision == pytest.approx(0.7)
    assert report.overall.actor_recall == pytest.approx(0.7)
    c = report.counts
    assert (c.events, c.honest_orders, c.fraud_events, c.actors) == (50, 20, 30, 10)
    assert (c.alerts, c.true_alerts, c.false_alerts, c.unmatched_alerts) == (10, 7, 3, 0)
    velocity = next(p for p in report.patterns if p.pattern == "velocity_burst")
    assert (velocity.actors, velocity.actors_caught, velocity.fraud_events) == (10, 7, 30)


def test_actor_caught_by_two_detectors_counts_once_overall():
    events = honest(5) + actor("farm", "account_farm", [10, 20]) + actor("burst", "velocity_burst", [30, 31])
    alerts = [alert("DEVICE_SHARING_FRAUD", "farm-0"), alert("VELOCITY_FRAUD", "farm-1")]

    report = evaluate(events, alerts)

    assert (report.overall.actors_caught, report.overall.actors) == (1, 2)
    assert report.overall.actor_recall == pytest.approx(0.5)
    assert (report.overall.alerts, report.overall.true_alerts) == (2, 2)
    farm = next(p for p in report.patterns if p.pattern == "account_farm")
    assert (farm.actors, farm.actors_caught) == (1, 1)
    assert report.row("DEVICE_SHARING_FRAUD").actor_recall == pytest.approx(1.0)


def test_alert_on_another_patterns_actor_is_true_but_not_in_that_detectors_recall():
    events = honest(4) + actor("hv", "high_value", [5]) + actor("burst", "velocity_burst", [6, 7, 8])
    report = evaluate(events, [alert("VELOCITY_FRAUD", "hv-0")])

    velocity = report.row("VELOCITY_FRAUD")
    assert velocity.precision == pytest.approx(1.0)  # the order is fraud, so the alert is true
    assert (velocity.actors_caught, velocity.actors) == (0, 1)  # only velocity_burst actors count
    assert velocity.actor_recall == 0
    assert velocity.f1 == 0
    assert velocity.ttd_actors == 1  # time to detect covers every actor the detector caught
    high_value = report.row("HIGH_VALUE_FRAUD")
    assert (high_value.alerts, high_value.actors_caught, high_value.actors) == (0, 0, 1)
    assert high_value.precision is None
    assert report.overall.actors_caught == 1  # caught by some detector


def test_time_to_detect_median_and_p95_by_nearest_rank():
    # Actor i's first order is at 1000*i s; its earliest true alert is triggered `delay` s later.
    delays = [5, 1, 30, 12, 7, 60, 2, 9, 3, 20, 45]
    events = honest(3)
    alerts = []
    for i, delay in enumerate(delays):
        start = 1000 * i
        events += actor(f"v{i}", "velocity_burst", [start, start + delay, start + delay + 100])
        alerts.append(alert("VELOCITY_FRAUD", f"v{i}-2"))  # a later alert first: the earliest must win
        alerts.append(alert("VELOCITY_FRAUD", f"v{i}-1"))
    # Sorted by hand: 1 2 3 5 7 9 12 20 30 45 60. Nearest rank of 11 values:
    # p50 -> rank ceil(5.5) = 6 -> 9 s; p95 -> rank ceil(10.45) = 11 -> 60 s.
    row = evaluate(events, alerts).row("VELOCITY_FRAUD")
    assert row.ttd_actors == 11
    assert row.ttd_median_s == 9
    assert row.ttd_p95_s == 60


def test_time_to_detect_even_count_and_per_detector_versus_overall():
    # Four velocity actors caught by VELOCITY_FRAUD after 10, 40, 20, 30 s; the last one is also
    # caught by GEO_ANOMALY_FRAUD after 4 s, so overall its time to detect is 4 s.
    events = honest(2)
    for i, delay in enumerate([10, 40, 20, 30]):
        events += actor(f"v{i}", "velocity_burst", [1000 * i, 1000 * i + 4, 1000 * i + delay])
    alerts = [alert("VELOCITY_FRAUD", f"v{i}-2") for i in range(4)] + [alert("GEO_ANOMALY_FRAUD", "v3-1")]
    report = evaluate(events, alerts)

    velocity = report.row("VELOCITY_FRAUD")
    # 10 20 30 40: p50 rank ceil(2.0) = 2 -> 20 s; p95 rank ceil(3.8) = 4 -> 40 s.
    assert (velocity.ttd_median_s, velocity.ttd_p95_s) == (20, 40)
    geo = report.row("GEO_ANOMALY_FRAUD")
    assert (geo.ttd_actors, geo.ttd_median_s, geo.ttd_p95_s) == (1, 4, 4)
    # Overall: 4 10 20 40 -> p50 rank 2 -> 10 s; p95 rank 4 -> 40 s.
    assert (report.overall.ttd_median_s, report.overall.ttd_p95_s) == (10, 40)


def test_event_recall_counts_events_at_and_after_the_first_alert():
    events = (
        honest(3)
        + actor("late", "velocity_burst", [0, 10, 20, 30, 40])  # alert on the order at 20 s
        + actor("early", "velocity_burst", [100, 110])  # alert on the first order
        + actor("missed", "velocity_burst", [200, 210, 220])
    )
    alerts = [
        alert("VELOCITY_FRAUD", "late-3"),  # 30 s, then an earlier trigger at 20 s
        alert("VELOCITY_FRAUD", "late-2"),
        alert("VELOCITY_FRAUD", "early-0"),
        alert("GEO_ANOMALY_FRAUD", "missed-1"),  # not VELOCITY's: covers only in the overall row
    ]
    report = evaluate(events, alerts)

    velocity = report.row("VELOCITY_FRAUD")
    assert (velocity.events_covered, velocity.fraud_events) == (3 + 2, 10)
    assert velocity.event_recall == pytest.approx(0.5)
    assert (report.overall.events_covered, report.overall.fraud_events) == (3 + 2 + 2, 10)
    assert report.row("GEO_ANOMALY_FRAUD").fraud_events == 0  # no city_hopping in this stream
    assert report.row("GEO_ANOMALY_FRAUD").event_recall is None


def test_unmatched_alerts_are_false_and_counted_apart():
    events = honest(10) + actor("v", "velocity_burst", [50, 51])
    alerts = [
        alert("VELOCITY_FRAUD", "v-0"),
        alert("VELOCITY_FRAUD", "from-another-day"),
        alert("HIGH_VALUE_FRAUD", None),  # no triggering order at all
        alert("HIGH_VALUE_FRAUD", "h4"),  # honest: false but matched
    ]
    report = evaluate(events, alerts)

    c = report.counts
    assert (c.alerts, c.true_alerts, c.false_alerts, c.unmatched_alerts) == (4, 1, 3, 2)
    assert report.overall.precision == pytest.approx(1 / 4)
    assert report.overall.false_per_1k_honest == pytest.approx(3 / 10 * 1000)
    high_value = report.row("HIGH_VALUE_FRAUD")
    assert (high_value.false_alerts, high_value.unmatched_alerts) == (2, 1)
    assert high_value.false_per_1k_honest == pytest.approx(2 / 10 * 1000)


def test_no_alerts_gives_precision_na_and_recall_zero():
    events = honest(5) + actor("v", "velocity_burst", [10, 11]) + actor("g", "city_hopping", [20, 21])
    report = evaluate(events, [])

    for row in report.rows:
        assert row.alerts == 0
        assert row.precision is None
        assert row.f1 is None
        assert row.ttd_median_s is None and row.ttd_p95_s is None
        assert row.false_per_1k_honest == 0
    assert report.overall.actor_recall == 0
    assert report.overall.event_recall == 0
    assert report.row("VELOCITY_FRAUD").actor_recall == 0
    assert report.row("DEVICE_SHARING_FRAUD").actor_recall is None  # no account_farm actors: 0/0


def test_no_inputs_at_all():
    report = evaluate([], [])
    assert [row.detector for row in report.rows] == [
        "VELOCITY_FRAUD",
        "DEVICE_SHARING_FRAUD",
        "HIGH_VALUE_FRAUD",
        "GEO_ANOMALY_FRAUD",
        "ACCOUNT_TAKEOVER",
        ALL,
    ]
    overall = report.overall
    assert (overall.precision, overall.actor_recall, overall.event_recall, overall.false_per_1k_honest) == (
        None,
        None,
        None,
        None,
    )
    assert report.counts.events == 0


def test_alerts_without_events_are_all_unmatched():
    report = evaluate([], [alert("VELOCITY_FRAUD", "t1"), alert("VELOCITY_FRAUD", "t2")])
    assert (report.counts.unmatched_alerts, report.counts.false_alerts) == (2, 2)
    assert report.overall.precision == 0
    assert report.overall.false_per_1k_honest is None  # no honest orders: n/a


def test_f1_is_zero_when_precision_and_recall_are_both_zero():
    events = honest(4) + actor("v", "velocity_burst", [10])
    row = evaluate(events, [alert("VELOCITY_FRAUD", "h0")]).row("VELOCITY_FRAUD")
    assert (row.precision, row.actor_recall, row.f1) == (0, 0, 0)


def test_unknown_alert_type_has_its_own_row_without_recall():
    events = honest(4) + actor("v", "velocity_burst", [10, 11])
    report = evaluate(events, [alert("PROMO_ABUSE", "v-1"), alert("PROMO_ABUSE", "h2")])

    row = report.row("PROMO_ABUSE")
    assert row.target_pattern is None
    assert (row.alerts, row.true_alerts, row.false_alerts) == (2, 1, 1)
    assert row.precision == pytest.approx(0.5)
    assert row.actor_recall is None and row.event_recall is None and row.f1 is None
    assert row.ttd_actors == 1 and row.ttd_median_s == 1  # caught on the order 1 s after the first
    assert report.rows[-1].detector == ALL
    assert report.overall.actors_caught == 1


def test_repeated_transactions_and_alert_ids_count_once():
    events = honest(3) + actor("v", "velocity_burst", [10]) + honest(1)  # h0 twice
    dup = AlertRecord("VELOCITY_FRAUD", "v-0", alert_id="same")
    report = evaluate(events, [dup, dup, AlertRecord("VELOCITY_FRAUD", "h1", alert_id=None)])
    assert (report.counts.events, report.counts.duplicate_events) == (4, 1)
    assert (report.counts.alerts, report.counts.duplicate_alerts) == (2, 1)


def test_unknown_fraud_pattern_is_fraud_and_listed():
    events = honest(2) + actor("p", "promo_abuse", [5, 6])
    report = evaluate(events, [alert("VELOCITY_FRAUD", "p-0")])
    assert report.counts.fraud_events == 2
    assert report.row("VELOCITY_FRAUD").true_alerts == 1
    assert [p.pattern for p in report.patterns][-1] == "promo_abuse"


def test_time_to_detect_is_measured_in_event_time_of_the_labelled_order():
    # The alert's own event_time field is ignored: the labelled order's event time counts.
    events = actor("v", "velocity_burst", [0, 90])
    wrong_time = AlertRecord("VELOCITY_FRAUD", "v-1", alert_id="x", event_time=BASE + 5 * SEC)
    assert evaluate(events, [wrong_time]).overall.ttd_median_s == 90


def test_matching_rule_fits_a_terminal():
    assert all(len(line) <= 100 for line in MATCHING_RULE.splitlines())
    for name in ("VELOCITY_FRAUD", "DEVICE_SHARING_FRAUD", "HIGH_VALUE_FRAUD", "GEO_ANOMALY_FRAUD"):
        assert name in MATCHING_RULE
