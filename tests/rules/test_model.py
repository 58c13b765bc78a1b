"""The rules model's checks, no broker: what a change may say, reverting, and the topic's
message round trip (malformed messages refused, as the job refuses them)."""

from __future__ import annotations

import orjson
import pytest

from fraudstream.config import load_settings
from fraudstream.rules.model import Limits, RuleError, RuleSet, from_message


@pytest.fixture(scope="module")
def base():
    settings = load_settings(environ={})
    return RuleSet.from_settings(settings), Limits.from_settings(settings), settings


def test_version_0_is_the_settings_rules(base):
    rules, _, settings = base
    assert rules.version == 0
    assert rules.rules["velocity"].threshold == float(settings.detectors.velocity_threshold)
    assert rules.rules["geo"].threshold is None and rules.rules["high_value"].window_ms is None
    assert rules.min_risk == settings.alerts.min_risk


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"velocity.thresold": "5"}, "unknown rule setting 'velocity.thresold'"),
        ({"geo.threshold": "5"}, "unknown rule setting"),  # geo has no threshold
        ({"high_value.window_ms": "60000"}, "unknown rule setting"),
        ({"velocity.threshold": "five"}, "must be a number"),
        ({"velocity.threshold": "2.5"}, "whole number"),
        ({"velocity.threshold": "-1"}, "0 or more"),
        ({"velocity.enabled": "maybe"}, "true or false"),
        ({"geo.severity": "HUGE"}, "one of LOW, MEDIUM, HIGH, CRITICAL"),
        ({"velocity.window_ms": "0"}, "more than 0"),
        ({"velocity.cooldown_ms": "-5"}, "0 or more"),
        ({"model.min_risk": "1.5"}, "within [0, 1]"),
        ({"model.takeover_risk": "0.1"}, "rules.min_takeover_risk"),
        ({"velocity.window_minutes": "61"}, "rules.velocity_max_window_ms"),
        ({"velocity.threshold": "nan"}, "finite"),
        ({}, "no change given"),
    ],
)
def test_a_bad_change_is_refused_naming_the_key(base, change, says):
    rules, limits, _ = base
    with pytest.raises(RuleError) as exc:
        rules.with_changes(change, limits)
    assert says in str(exc.value)


def test_a_change_is_the_next_version_with_aliases_and_lines_for_history(base):
    rules, limits, _ = base
    v1 = rules.with_changes(
        {"velocity.threshold": "5", "geo.window_minutes": "45", "device.severity": "low", "alerts.min_risk": 0.2},
        limits,
        author="asha",
        comment="calmer",
    )
    assert v1.version == 1 and v1.author == "asha" and v1.comment == "calmer"
    assert v1.rules["velocity"].threshold == 5.0 and v1.rules["geo"].window_ms == 45 * 60_000
    assert v1.rules["device_sharing"].severity == "LOW" and v1.min_risk == 0.2
    assert f"velocity.threshold {rules.rules['velocity'].threshold:g} -> 5" in v1.changes
    assert len(v1.changes) == 4
    with pytest.raises(RuleError, match="nothing would change"):
        v1.with_changes({"velocity.threshold": 5}, limits)
    overrides = v1.to_overrides()
    assert overrides["detectors.velocity_threshold"] == 5 and overrides["detectors.geo_window_ms"] == 2_700_000


def test_revert_restores_an_old_version_as_the_next_one(base):
    rules, limits, _ = base
    v1 = rules.with_changes({"velocity.threshold": "5"}, limits)
    v2 = v1.with_changes({"geo.enabled": "off"}, limits)
    v3 = v2.reverted_to(rules, limits, author="ops")
    assert (v3.version, v3.reverts, v3.author) == (3, 0, "ops")
    assert dict(v3.items()) == dict(rules.items())
    assert sorted(v3.changes) == sorted(
        [f"velocity.threshold 5 -> {rules.rules['velocity'].threshold:g}", "geo.enabled off -> on"]
    )


def test_the_message_round_trips_and_malformed_ones_are_refused(base):
    rules, limits, _ = base
    v1 = rules.with_changes({"high_value.threshold": "2500.5", "geo.cooldown_minutes": 2}, limits, comment="x")
    back = from_message(v1.to_bytes(), limits)
    assert back == v1
    assert from_message(v1.to_message(), limits).to_row() == v1.to_row()
    good = v1.to_message()
    for bad, says in [
        (b"{not json", "JSON"),
        (b"[1, 2]", "JSON object"),
        ({**good, "rules": {**good["rules"], "velocity": {**good["rules"]["velocity"], "window_ms": 10**9}}}, "max"),
        ({**good, "model": {"takeover_risk": 2, "min_risk": 0.1}}, "takeover_risk"),
    ]:
        with pytest.raises(RuleError) as exc:
            from_message(orjson.dumps(bad) if isinstance(bad, dict) else bad, limits)
        assert says in str(exc.value), str(exc.value)
    missing = {k: v for k, v in good.items() if k != "version"}
    with pytest.raises(RuleError):
        from_message(missing, limits)
