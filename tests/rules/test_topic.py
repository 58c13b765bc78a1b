"""The rules topic against the session broker: what is published is read back, a stale
publish is refused, and invalid messages are reported as rejected, as the job rejects them."""

from __future__ import annotations

import uuid

import orjson
import pytest

from fraudstream.config import Settings, load_settings
from fraudstream.kafka.clients import KafkaUnavailable
from fraudstream.rules.model import Limits, RuleSet
from fraudstream.rules.topic import StaleVersion, current, ensure_rules_topic, publish, read_history
from tests.kafka.conftest import free_port, send

pytestmark = pytest.mark.slow


def rules_settings(kafka) -> Settings:
    return (
        load_settings(environ={})
        .model_copy(update={"kafka": kafka})
        .with_overrides({"rules.topic": f"rules-{uuid.uuid4().hex[:8]}"})
    )


def test_published_versions_read_back_in_order_and_stale_or_invalid_ones_are_rejected(kafka):
    settings = rules_settings(kafka)
    assert read_history(settings).topic_exists is False
    assert current(settings).version == 0
    limits = Limits.from_settings(settings)
    v1 = RuleSet.from_settings(settings).with_changes({"velocity.threshold": "5"}, limits, author="ana", comment="c1")
    publish(settings, v1)
    v2 = v1.with_changes({"geo.enabled": "off"}, limits, author="bo")
    publish(settings, v2)
    with pytest.raises(StaleVersion, match="version 2 was published by bo"):
        publish(settings, v1.with_changes({"velocity.threshold": "7"}, limits))
    # by hand or by another tool: not JSON, a window too wide, an old version again
    too_wide = v2.to_message() | {"version": 3}
    too_wide["rules"]["velocity"]["window_ms"] = settings.rules.velocity_max_window_ms + 1
    send(settings.kafka, [(0, b"x", b"not json"), (0, b"3", orjson.dumps(too_wide)), (0, b"1", v1.to_bytes())],
         topic=settings.rules.topic)  # fmt: skip
    history = read_history(settings)
    assert [v.version for v in history.versions] == [1, 2]
    assert history.versions[1] == v2 and history.latest == v2
    assert history.end_offsets == {0: 5}
    assert [off for off, _ in history.rejected] == [2, 3, 4]
    reasons = [r for _, r in history.rejected]
    assert reasons[0].startswith("not JSON") and "wider than" in reasons[1] and "stale" in reasons[2]
    assert current(settings) == v2
    assert ensure_rules_topic(settings) is False  # already there


def test_no_broker_is_one_readable_line():
    settings = load_settings(environ={}).with_overrides(
        {"kafka.bootstrap_servers": f"127.0.0.1:{free_port()}", "kafka.connect_timeout_s": 1.0}
    )
    with pytest.raises(KafkaUnavailable, match="no Kafka broker answers"):
        read_history(settings)
