"""The session's Kafka broker (KRaft, from the project's jars) and per-test topics, as fixtures
every test folder sees (registered in tests/conftest.py): one broker per test session, whether
the tests that use it live under tests/kafka or tests/cluster."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fraudstream.config import BrokerSettings, KafkaSettings
from fraudstream.kafka.broker import LocalBroker
from tests.kafka.conftest import free_port, fresh_topics


@pytest.fixture(scope="session")
def broker(tmp_path_factory) -> Iterator[LocalBroker]:
    cfg = BrokerSettings(port=free_port(), controller_port=free_port())
    local = LocalBroker(cfg, tmp_path_factory.mktemp("kafka-data"))
    local.start()
    yield local
    assert local.stop(), "the broker was no longer running at the end of the session"


@pytest.fixture
def kafka(broker) -> KafkaSettings:
    """Settings for this test alone: the session broker, and topics nobody else uses."""
    return fresh_topics(broker)
