"""Which rules a job starts with, and whether it follows the topic (fraudstream.rules.live), no broker:
the topic's reads are plain functions returning a History."""

from __future__ import annotations

import pytest

from fraudstream.config import Settings
from fraudstream.rules import live
from fraudstream.rules.model import Limits, RuleSet
from fraudstream.rules.topic import History


def _settings(**flags: object) -> Settings:
    return Settings().with_overrides({k: v for k, v in flags.items()})


def _history(settings: Settings) -> History:
    v1 = RuleSet.from_settings(settings).with_changes({"velocity.threshold": 5}, Limits.from_settings(settings))
    return History(versions=[v1], rejected=[(1, "not JSON")], end_offsets={0: 2})


@pytest.mark.parametrize(
    ("flags", "source", "expected"),
    [
        ({}, "kafka", "live"),
        ({"kafka.bounded": True}, "kafka", "latest"),
        ({}, "generator", "settings"),
        ({}, "file", "settings"),
        ({"rules.live": "off"}, "kafka", "settings"),
        ({"rules.live": "on"}, "generator", "live"),
        ({"rules.live": "on", "kafka.bounded": True}, "kafka", "latest"),
        ({"pipeline.engine": "datastream"}, "kafka", "settings"),
        ({"pipeline.engine": "datastream", "rules.live": "off"}, "kafka", "settings"),
    ],
)
def test_what_each_mode_engine_and_source_wants(flags, source, expected):
    assert live.wanted(_settings(**flags), source) == expected


def test_live_on_with_an_engine_that_cannot_apply_versions_is_one_line():
    with pytest.raises(live.LiveRulesRefused, match="rules.live=on needs --engine sql"):
        live.wanted(_settings(**{"pipeline.engine": "datastream", "rules.live": "on"}), "kafka")


def test_a_bounded_run_keeps_the_newest_version_and_a_file_run_the_settings(monkeypatch):
    s = _settings(**{"kafka.bounded": True})
    got = live.plan(s, "kafka", read=_history)
    assert (got.initial.version, got.initial.rules["velocity"].threshold, got.live) == (1, 5, False)
    # a version may widen a window up to its maximum: ids are remembered that long
    assert got.redelivery_horizon_ms == 2 * 3_600_000
    got = live.plan(s, "kafka", read=lambda s: History())
    assert (got.initial.version, got.redelivery_horizon_ms) == (0, None)  # the settings' rules: their windows
    got = live.plan(s, "file", read=_history)
    assert (got.initial.version, got.live, got.redelivery_horizon_ms) == (0, False, None)


def test_a_live_run_starts_with_the_newest_version_at_the_end_offsets(monkeypatch):
    created = []
    monkeypatch.setattr(live, "ensure_rules_topic", lambda settings: created.append(settings.rules.topic))
    got = live.plan(_settings(), "kafka", read=_history)
    assert (got.initial.version, got.live, got.start_offsets, created) == (1, True, {0: 2}, ["zomato_fraud_rules"])
    # An empty topic: the settings' rules, from the topic's beginning.
    got = live.plan(_settings(), "kafka", read=lambda s: History(topic_exists=False))
    assert (got.initial.version, got.live, got.start_offsets) == (0, True, {})
    assert got.redelivery_horizon_ms == 2 * 3_600_000  # versions to come may widen a window


def test_the_datastream_engine_says_when_a_published_version_is_not_applied():
    s = _settings(**{"pipeline.engine": "datastream"})
    got = live.plan(s, "kafka", read=_history)
    assert (got.initial.version, got.live) == (0, False)
    assert got.note is not None and "version 1" in got.note and "not applied" in got.note
    assert live.plan(s, "kafka", read=lambda s: History()).note is None
