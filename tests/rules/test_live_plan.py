"""Which rules a job starts with, and whether it follows the topic (fraudstream.rules.live), no broker:
the topic's reads are plain functions returning a History."""

from __future__ import annotations

import json
import time

import pytest

from fraudstream.config import Settings, load_settings
from fraudstream.flink.checkpoints import STATE_LAYOUT, OtherSteps, resume_point
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
        ({"kafka.bounded": True}, "kafka", "live"),  # up to the topic's end, then it ends with its input
        ({}, "generator", "settings"),
        ({}, "file", "settings"),  # replays and backtests: the rules they are given
        ({"rules.live": "off"}, "kafka", "settings"),
        ({"rules.live": "on"}, "generator", "live"),
        ({"pipeline.engine": "datastream"}, "kafka", "settings"),
        ({"pipeline.engine": "datastream", "rules.live": "off"}, "kafka", "settings"),
    ],
)
def test_what_each_mode_engine_and_source_wants(flags, source, expected):
    assert live.wanted(_settings(**flags), source) == expected
    assert live.follows_topic(_settings(**flags), source) == (expected == "live")


def test_live_on_with_an_engine_that_cannot_apply_versions_is_one_line():
    with pytest.raises(live.LiveRulesRefused, match="rules.live=on needs --engine sql"):
        live.wanted(_settings(**{"pipeline.engine": "datastream", "rules.live": "on"}), "kafka")


def test_a_file_run_keeps_the_settings_rules_whatever_the_topic_holds():
    got = live.plan(_settings(), "file", read=_history)
    assert (got.initial.version, got.live) == (0, False)


def test_a_live_run_starts_with_the_newest_version_at_the_end_offsets(monkeypatch):
    created = []
    monkeypatch.setattr(live, "ensure_rules_topic", lambda settings: created.append(settings.rules.topic))
    got = live.plan(_settings(), "kafka", read=_history)
    assert (got.initial.version, got.live, got.start_offsets, created) == (1, True, {0: 2}, ["zomato_fraud_rules"])
    # An empty topic: the settings' rules, from the topic's beginning.
    got = live.plan(_settings(), "kafka", read=lambda s: History(topic_exists=False))
    assert (got.initial.version, got.live, got.start_offsets) == (0, True, {})


def test_the_datastream_engine_says_when_a_published_version_is_not_applied():
    s = _settings(**{"pipeline.engine": "datastream"})
    got = live.plan(s, "kafka", read=_history)
    assert (got.initial.version, got.live) == (0, False)
    assert got.note is not None and "version 1" in got.note and "not applied" in got.note
    assert live.plan(s, "kafka", read=lambda s: History()).note is None


@pytest.mark.parametrize("followed", [True, False])
def test_resume_across_a_change_of_rules_live_is_refused_in_one_line(tmp_path, followed):
    """A run that followed the rules topic has its source and check steps in its checkpoints: a
    run without them (rules.live=off) cannot map that state, nor the reverse; said before Flink starts."""
    point = tmp_path / "checkpoints" / "job-a" / "chk-4"
    point.mkdir(parents=True)
    (point / "_metadata").write_bytes(b"x")
    (tmp_path / "checkpoints" / "runs").mkdir()
    record = {"job_id": "job-a", "started": time.time() - 30, "checkpointed": True, "state_layout": STATE_LAYOUT}
    (tmp_path / "checkpoints" / "runs" / "job-a.json").write_text(json.dumps({**record, "live_rules": followed}))
    flags = {"data_dir": str(tmp_path), "pipeline.source": "kafka"}
    other = load_settings(flags={**flags, "rules.live": "off" if followed else "auto"}, environ={})
    with pytest.raises(OtherSteps, match=("followed" if followed else "did not follow") + " the rules topic"):
        resume_point(other)
    same = load_settings(flags={**flags, "rules.live": "auto" if followed else "off"}, environ={})
    assert resume_point(same) == point


@pytest.mark.parametrize("delivery", ["exactly-once", "at-least-once"])
def test_resume_across_a_change_of_kafka_delivery_is_refused_in_one_line(tmp_path, delivery):
    """An exactly-once sink's transactions are in its checkpoints, an at-least-once one has none:
    neither restores into the other, said before Flink starts."""
    point = tmp_path / "checkpoints" / "job-a" / "chk-4"
    point.mkdir(parents=True)
    (point / "_metadata").write_bytes(b"x")
    (tmp_path / "checkpoints" / "runs").mkdir()
    record = {"job_id": "job-a", "started": time.time() - 30, "checkpointed": True, "state_layout": STATE_LAYOUT}
    record |= {"live_rules": True, "delivery": delivery}
    (tmp_path / "checkpoints" / "runs" / "job-a.json").write_text(json.dumps(record))
    flags = {"data_dir": str(tmp_path), "pipeline.source": "kafka"}
    other = "at-least-once" if delivery == "exactly-once" else "exactly-once"
    with pytest.raises(OtherSteps, match=f"sinks were {delivery}, and this run's are {other}"):
        resume_point(load_settings(flags={**flags, "kafka.delivery": other}, environ={}))
    assert resume_point(load_settings(flags={**flags, "kafka.delivery": delivery}, environ={})) == point
