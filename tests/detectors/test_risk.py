"""ACCOUNT_TAKEOVER alerts and risk marks on rule alerts, from a score and its reasons."""

from __future__ import annotations

from fraudstream.config import AlertSettings, ModelSettings
from fraudstream.detectors.high_value import HighValueDetector
from fraudstream.detectors.risk import RiskAlerts, describe
from fraudstream.events.model import Order

ORDER = Order("t1", "u1", "d9", "r1", 1400.0, "Delhi", "UPI", 1_000)
REASONS = [
    {"feature": "device_orders", "value": 0.0, "usual": 4.0, "raised_by": 0.4},
    {"feature": "km_from_usual", "value": 1150.0, "usual": 0.0, "raised_by": 0.2},
]


def test_a_risky_order_raises_a_takeover_alert_with_its_reasons() -> None:
    ra = RiskAlerts(ModelSettings(takeover_risk=0.9, high_risk=0.97, critical_risk=0.995), AlertSettings(), "m-1")
    assert not ra.raises(0.89) and ra.raises(0.9) and not ra.raises(None)
    alert = ra.takeover(ORDER, 0.98, REASONS)  # type: ignore[arg-type]
    assert (alert.alert_type, alert.severity, alert.key, alert.risk) == ("ACCOUNT_TAKEOVER", "HIGH", "u1", 0.98)
    assert "a device new to them" in alert.message and "1,150 km from their usual city" in alert.message
    assert alert.details == {"risk": 0.98, "reasons": REASONS, "threshold": 0.9, "model": "m-1"}
    assert [ra.severity(r) for r in (0.9, 0.97, 0.995)] == ["MEDIUM", "HIGH", "CRITICAL"]
    assert ra.takeover(ORDER, 0.98, []).alert_id == alert.alert_id  # deterministic per order


def test_rule_alerts_below_min_risk_are_held_back_not_dropped() -> None:
    ra = RiskAlerts(ModelSettings(), AlertSettings(min_risk=0.05))
    rule = HighValueDetector(1000.0).alert(ORDER)
    assert ra.mark(rule, None) == rule  # no model: untouched
    low, high = ra.mark(rule, 0.01), ra.mark(rule, 0.05)
    assert (low.risk, low.held_back) == (0.01, True)
    assert (high.risk, high.held_back) == (0.05, False)
    assert low.to_dict()["held_back"] is True and low.alert_id == rule.alert_id


def test_reasons_in_words() -> None:
    assert describe({"feature": "city_orders", "value": 0.0, "usual": 3.0, "raised_by": 0.1}) == "a city new to them"
    assert describe({"feature": "amount_to_usual", "value": 4.26, "usual": 1.0, "raised_by": 0.1}) == (
        "4.3x their usual amount"
    )
    assert describe({"feature": "odd{0}", "value": 2.0, "usual": 0.0, "raised_by": 0.1}) == "odd{0} 2"
    assert describe({"feature": "prior_orders", "value": 0.0, "usual": 3.0, "raised_by": 0.1}) == "their first order"
    assert describe({"feature": "since_prev_h", "value": 0.25, "usual": 20.0, "raised_by": 0.1}) == (
        "15 min after their previous order"
    )
    assert describe({"feature": "account_age_h", "value": 0.0, "usual": 90.0, "raised_by": 0.1}) == "a new account"
    assert describe({"feature": "account_age_h", "value": 30.0, "usual": 90.0, "raised_by": 0.1}) == (
        "an account first seen 30.0 h before"
    )


def test_a_reason_that_is_not_a_number_is_said_not_failed() -> None:
    """The JVM writes a non-finite value as null: the alert's text still forms."""
    assert describe({"feature": "amount_to_usual", "value": None, "usual": 1.0, "raised_by": 0.1}) == (  # type: ignore[typeddict-item]
        "amount_to_usual None"
    )
    assert describe({"feature": "amount_z", "value": float("inf"), "usual": 0.0, "raised_by": 0.1}) == "amount_z inf"


def test_held_back_alerts_have_a_cooldown_chain_of_their_own() -> None:
    """A held-back alert must not silence a risky one on the same key: the risky one is delivered."""
    from fraudstream.detectors import AlertDeduplicator
    from fraudstream.detectors.replay import deduplicate

    ra = RiskAlerts(ModelSettings(), AlertSettings(min_risk=0.5))
    rule = HighValueDetector(1000.0)
    later = Order("t2", "u1", "d9", "r1", 1400.0, "Delhi", "UPI", ORDER.event_time + 120_000)
    held, risky = ra.mark(rule.alert(ORDER), 0.1), ra.mark(rule.alert(later), 0.95)
    assert held.held_back and not risky.held_back and held.dedup_key != risky.dedup_key
    kept = deduplicate([held, risky], AlertDeduplicator(600_000))
    assert [a.transaction_id for a in kept] == ["t1", "t2"]
    assert rule.alert(ORDER).dedup_key == "HIGH_VALUE_FRAUD|u1"  # without a model: the rule's key, as before
