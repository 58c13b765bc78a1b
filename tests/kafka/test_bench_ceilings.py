"""The benchmark's ceilings against the real broker: they read exactly the records asked,
write exactly the alerts asked, clean up, and the Python ceiling finds the rules' alerts."""

from __future__ import annotations

import time

import orjson
import pytest

from fraudstream.bench import ceilings
from fraudstream.bench.ceilings import CeilingError, kafka_ceiling, python_ceiling, read_values
from fraudstream.config import DetectorSettings, GeneratorSettings
from fraudstream.detectors import AlertDeduplicator, build_detectors
from fraudstream.detectors.replay import replay
from fraudstream.events.model import Order
from fraudstream.events.parse import parse_record
from fraudstream.generator import generator_from_settings
from fraudstream.kafka.clients import connect_admin
from fraudstream.kafka.producer import user_key
from tests.kafka.conftest import consume, send
from tests.oracle import expected_alerts

pytestmark = (
    pytest.mark.slow
)  # a broker and the ceilings over it (about 14 s): make test runs them, make check does not

N = 5_000
ORDERS = list(generator_from_settings(GeneratorSettings(seed=41, count=N)).orders(N))
VALUES = [orjson.dumps(o) for o in ORDERS]


@pytest.fixture
def loaded(kafka):
    """Fresh topics with the N orders in the raw one, keyed by user as the producer does."""
    send(kafka, [(None, user_key(v), v) for v in VALUES])
    return kafka


def test_kafka_ceiling_reads_n_records_and_commits_the_alerts_asked(loaded, monkeypatch):
    scratch: dict[str, list] = {}
    delete = ceilings._delete_topic

    def read_then_delete(admin, topic):
        # Only committed alerts count: the job's sink is transactional too.
        scratch[topic] = consume(loaded, topic, expect=300, limit_s=30)
        delete(admin, topic)

    monkeypatch.setattr(ceilings, "_delete_topic", read_then_delete)
    result = kafka_ceiling(loaded, N, alerts=300, alert_bytes=450, commit_interval_s=0.05)

    assert result["records"] == N
    assert result["alerts_produced"] == 300
    assert list(scratch) == [result["scratch_topic"]]
    written = scratch[result["scratch_topic"]]
    assert len(written) == 300 and {len(value) for _, _, value in written} == {450}
    assert result["events_per_s"] > 0 and result["consume_only_events_per_s"] > 0 and result["seconds"] > 0
    assert result["transactions"] >= 1

    admin = connect_admin(loaded)
    deadline = time.monotonic() + 15
    while result["scratch_topic"] in admin.list_topics(timeout=10).topics and time.monotonic() < deadline:
        time.sleep(0.2)
    assert result["scratch_topic"] not in admin.list_topics(timeout=10).topics


def test_kafka_ceiling_without_alerts_and_with_more_records_than_asked(loaded):
    result = kafka_ceiling(loaded, 1_234, alerts=0)
    assert result["records"] == 1_234 and result["alerts_produced"] == 0
    assert result["scratch_topic"] not in connect_admin(loaded).list_topics(timeout=10).topics


def test_fewer_records_than_asked_is_a_readable_error(loaded):
    with pytest.raises(CeilingError, match=f"holds {N} records, fewer than the {N + 1} asked"):
        kafka_ceiling(loaded, N + 1, alerts=10)
    with pytest.raises(CeilingError):
        read_values(loaded, N + 1)


def test_read_values_gives_the_loaded_records_and_the_same_prefix_every_time(loaded):
    assert sorted(read_values(loaded, N)) == sorted(VALUES)
    part = read_values(loaded, 999)
    assert len(part) == 999 and sorted(part) == sorted(read_values(loaded, 999))
    assert set(part) <= set(VALUES)


def test_python_ceiling_finds_exactly_the_rules_alerts(loaded):
    values = read_values(loaded, N)
    result = python_ceiling(values, DetectorSettings())

    orders = [o for o in map(parse_record, values) if isinstance(o, Order)]
    settings = DetectorSettings()
    replayed = replay(orders, build_detectors(settings), AlertDeduplicator(settings.dedup_cooldown_ms))
    oracle = expected_alerts(ORDERS)  # independent of the detectors; its defaults are the settings'
    assert len(oracle) > 0
    assert result["alerts"] == len(replayed) == len(oracle)
    assert {(a.alert_type, a.key, a.transaction_id, a.event_time) for a in replayed} == oracle
    assert result["records"] == N and result["dead_letters"] == 0
    assert result["events_per_s"] > 0 and result["parse_seconds"] > 0 and result["rules_seconds"] > 0
