"""The store copier's guards against repeating, skipping or mixing records: a replayed
dead-letter topic, a recreated topic or another cluster, a second copier, records it cannot
store, and a failure of its own (split from test_store_mirror.py so the two files run on
different test workers)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import orjson
import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import NewTopic

from fraudstream.cli.format import alert_line, dead_letter_line
from fraudstream.config import BrokerSettings, KafkaSettings, Settings
from fraudstream.kafka.broker import LocalBroker
from fraudstream.kafka.clients import connect_admin, ensure_topics
from fraudstream.store import AlertStore, db
from fraudstream.store.db import Location
from fraudstream.store.lock import CopierBusy
from fraudstream.store.mirror import SourceChanged, TopicMirror
from tests.kafka.conftest import free_port, report, send
from tests.kafka.test_store_mirror import ALERTS, DEAD, copy_all, mirror_settings, publish, stored_rows
from tests.store.test_store import alerts

# Seconds a test against the broker: `make test` runs them, `make check` does not.
pytestmark = pytest.mark.slow


def _dead_rows(where: Settings | Path) -> list[tuple[str, str | None]]:
    loc = Location.of(where) if isinstance(where, Settings) else Location("sqlite", path=where)
    with db.connect(loc) as conn:
        return [tuple(r) for r in conn.execute("SELECT reason, letter_id FROM dead_letters ORDER BY id")]


def test_replaying_the_dead_letter_topic_stores_each_dead_letter_once(kafka, tmp_path):
    """The store loses its positions (a restored backup, a store older than them): the topics
    are copied again from the start, and each dead letter, keyed by its place in its topic,
    is still there once."""
    publish(kafka)
    settings = mirror_settings(kafka, tmp_path)  # on PostgreSQL too: tests/store (letter_id)
    store = AlertStore.open(settings)
    copy_all(settings, store)
    with store.conn.transaction() as cur:
        cur.execute("DELETE FROM source_offsets")
    again = copy_all(settings, store)
    store.close()
    assert again.stats.stored == len(ALERTS) + len(DEAD)  # really copied again
    assert stored_rows(settings) == (sorted(a.alert_id for a in ALERTS), len(DEAD))
    ids = [i for _, i in _dead_rows(settings)]
    assert ids == [f"{kafka.dead_letter_topic}/0@{n}" for n in range(len(DEAD))]
    report(
        f"dead-letter topic copied again from the start into the same store | {len(ALERTS)} alerts, "
        f"{len(DEAD)} dead letters, each copied twice | stored once each (dead letters keyed by topic/partition@offset)"
    )


def _recreate(k: KafkaSettings, topic: str, partitions: int) -> None:
    admin = connect_admin(k)
    admin.delete_topics([topic], operation_timeout=30)[topic].result()
    deadline = time.monotonic() + 60
    while True:  # deletion completes in the background
        try:
            admin.create_topics([NewTopic(topic, partitions, 1)], operation_timeout=30)[topic].result()
            return
        except KafkaException:
            assert time.monotonic() < deadline, f"{topic} could not be created again"
            time.sleep(0.5)


def test_a_topic_deleted_and_created_again_is_refused_not_skipped(kafka, tmp_path):
    """Same name, new topic: its offsets start at 0 again, so the stored positions would skip
    its first records without a word. The copier knows the topic by its id and refuses."""
    publish(kafka)
    settings = mirror_settings(kafka, tmp_path)
    store = AlertStore(settings.db_path)
    copy_all(settings, store)
    _recreate(kafka, kafka.alerts_topic, 4)
    send(kafka, [(0, a.key.encode(), orjson.dumps(a.to_dict())) for a in alerts(5, user="u_new")], kafka.alerts_topic)
    with pytest.raises(SourceChanged, match=f"{kafka.alerts_topic}.*topic id"):
        TopicMirror(settings, store).close()
    store.close()


# starts a second broker (slow, as the whole file)
def test_a_store_copied_from_another_cluster_is_refused(kafka, tmp_path):
    """A wiped or different broker with the same topic names (another cluster id): refused."""
    publish(kafka)
    settings = mirror_settings(kafka, tmp_path)
    store = AlertStore(settings.db_path)
    copy_all(settings, store)
    other = LocalBroker(BrokerSettings(port=free_port(), controller_port=free_port()), tmp_path / "other-kafka")
    other.start()
    try:
        k2 = other.kafka_settings(kafka)
        ensure_topics(connect_admin(k2), {kafka.alerts_topic: 4, kafka.dead_letter_topic: 1})
        send(k2, [(0, b"k", orjson.dumps(DEAD[0].to_dict()))], kafka.dead_letter_topic)
        with pytest.raises(SourceChanged, match="cluster"):
            TopicMirror(settings.model_copy(update={"kafka": k2}), store).close()
    finally:
        other.stop()
        store.close()
    assert stored_rows(settings.db_path) == (sorted(a.alert_id for a in ALERTS), len(DEAD))


def test_a_second_copier_on_the_same_store_is_refused(kafka, tmp_path):
    """Two runs started within the same seconds, or two data directories sharing one store:
    the second copier is refused at once, and the first one copies everything once."""
    publish(kafka)
    settings = mirror_settings(kafka, tmp_path)
    store = AlertStore(settings.db_path)
    first = TopicMirror(settings, store)
    shared = tmp_path / "second-data-dir"
    shared.mkdir()
    (shared / "fraud_alerts.db").symlink_to(settings.db_path)
    try:
        for db in (settings.db_path, shared / "fraud_alerts.db"):
            second_store = AlertStore(db)
            with pytest.raises(CopierBusy, match="another copier"):
                TopicMirror(settings.model_copy(update={"data_dir": db.parent}), second_store)
            second_store.close()
        first.drain(idle_s=10)
    finally:
        first.close()
    copy_all(settings, store)  # the lock went with the first copier
    store.close()
    assert stored_rows(settings.db_path) == (sorted(a.alert_id for a in ALERTS), len(DEAD))
    report(
        "a second copier started on the same store (same path, and through a second data directory) | "
        f"{len(ALERTS)} alerts, {len(DEAD)} dead letters | the second refused at once; stored once each"
    )


def test_a_second_copier_on_the_same_postgresql_store_is_refused(kafka, tmp_path, postgres_url):
    """Two copiers on one PostgreSQL database (two team members' `store follow`, two machines):
    the second is refused at once, in one line naming the first; the first copies everything
    once, and its lock ends with it."""
    publish(kafka)
    settings = mirror_settings(kafka, tmp_path, {"store.url": postgres_url})
    store = AlertStore.open(settings)
    first = TopicMirror(settings, store)
    try:
        second_store = AlertStore.open(mirror_settings(kafka, tmp_path / "elsewhere", {"store.url": postgres_url}))
        with pytest.raises(CopierBusy, match=f"another copier \\(PID {os.getpid()} on .*\\*\\*\\*") as err:
            TopicMirror(settings, second_store)
        second_store.close()
        assert "\n" not in str(err.value)
        first.drain(idle_s=10)
    finally:
        first.close()
    assert copy_all(settings, store).stats.stored == 0  # the lock went with the first copier
    store.close()
    assert stored_rows(settings) == (sorted(a.alert_id for a in ALERTS), len(DEAD))


def _hostile(k: KafkaSettings) -> list[tuple[str, bytes | None]]:
    """What a foreign producer might put in the job's topics, as (topic, value)."""
    good = ALERTS[0].to_dict()
    return [
        (k.alerts_topic, orjson.dumps({**good, "alert_id": "h1", "user_id": [1]})),
        (k.alerts_topic, orjson.dumps({**good, "alert_id": "h2", "amount": "oops"})),
        (k.alerts_topic, orjson.dumps({**good, "alert_id": "h3", "event_time": True})),
        (k.alerts_topic, orjson.dumps({**good, "alert_id": "h4", "event_time": 2**62})),
        (k.alerts_topic, b"not json at all"),
        (k.alerts_topic, None),
        (k.dead_letter_topic, orjson.dumps({**DEAD[0].to_dict(), "reason": 5})),
        (k.dead_letter_topic, b"[1, 2]"),
    ]


def test_records_the_copier_cannot_store_become_its_dead_letters(kafka, tmp_path):
    """A malformed record in the alerts or dead-letter topic neither stops nor stalls the copier:
    it is stored as an `unstorable` dead letter, keyed by its place, and copying goes on."""
    settings = mirror_settings(kafka, tmp_path)
    hostile = _hostile(kafka)
    by_topic: dict[str, list] = {kafka.alerts_topic: [], kafka.dead_letter_topic: []}
    for i, a in enumerate(ALERTS):  # the hostile records in between the others
        by_topic[kafka.alerts_topic].append((0, a.key.encode(), orjson.dumps(a.to_dict())))
        if i < len(DEAD):
            by_topic[kafka.dead_letter_topic].append((0, b"dead", orjson.dumps(DEAD[i].to_dict())))
        if i % 8 == 0 and hostile:
            topic, value = hostile.pop(0)
            by_topic[topic].append((0, b"foreign", value))
    assert not hostile
    for topic, records in by_topic.items():
        send(kafka, records, topic)
    store = AlertStore(settings.db_path)
    lines: list[str] = []
    mirror = TopicMirror(
        settings,
        store,
        on_alert=lambda a: lines.append(alert_line(a)),
        on_dead=lambda d: lines.append(dead_letter_line(d)),
    )
    stop = threading.Event()
    copier = threading.Thread(target=mirror.follow, args=(stop,), daemon=True)
    copier.start()
    expected = len(ALERTS) + len(DEAD) + len(_hostile(kafka))
    deadline = time.monotonic() + 30
    while mirror.stats.stored < expected and copier.is_alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    stop.set()
    copier.join(30)
    mirror.close()
    store.close()
    assert mirror.failure is None
    assert mirror.stats.stored == expected, f"stalled or died after {mirror.stats.stored} of {expected}"
    assert stored_rows(settings.db_path) == (sorted(a.alert_id for a in ALERTS), len(DEAD) + len(_hostile(kafka)))
    unstorable = [i for r, i in _dead_rows(settings.db_path) if r == "unstorable"]
    assert len(unstorable) == len(_hostile(kafka)) and all("@" in i for i in unstorable)
    assert len(lines) == expected
    report(
        f"{len(_hostile(kafka))} records a foreign producer put in the alerts and dead-letter topics (a list as "
        f"user_id, a string amount, a boolean event time, an event time no calendar has, not JSON, a tombstone, a numeric reason, an array) | "
        f"{len(ALERTS)} alerts, {len(DEAD)} dead letters | each an `unstorable` dead letter; copying went on"
    )


def test_a_failing_copier_says_so_instead_of_dying_silently(kafka, tmp_path):
    publish(kafka)
    settings = mirror_settings(kafka, tmp_path)
    store = AlertStore(settings.db_path)

    def broken_console(alert):
        raise RuntimeError("console gone")

    mirror = TopicMirror(settings, store, on_alert=broken_console)
    copier = threading.Thread(target=mirror.follow, args=(threading.Event(),), daemon=True)
    copier.start()
    copier.join(30)
    mirror.close()
    store.close()
    assert not copier.is_alive()
    assert isinstance(mirror.failure, RuntimeError)


def test_nul_characters_do_not_stop_a_postgresql_copier(kafka, tmp_path, postgres_url):
    """PostgreSQL TEXT cannot hold NUL: an alert's user_id "u\\u0000" and a raw dead letter with a
    NUL are stored (as U+FFFD), and the copier goes on past them."""
    publish(kafka)
    nul_alert = {**ALERTS[0].to_dict(), "alert_id": "nul1", "user_id": "u\x00"}
    nul_dead = {**DEAD[0].to_dict(), "raw": "{\x00}"}
    send(kafka, [(0, b"u", orjson.dumps(nul_alert))], kafka.alerts_topic)
    send(kafka, [(0, b"dead", orjson.dumps(nul_dead))], kafka.dead_letter_topic)
    settings = mirror_settings(kafka, tmp_path, {"store.url": postgres_url})
    store = AlertStore.open(settings)
    try:
        mirror = copy_all(settings, store)
        assert mirror.stats.stored == len(ALERTS) + len(DEAD) + 2 and mirror.stats.unstorable == 0
        row = store.conn.execute("SELECT user_id FROM fraud_alerts WHERE alert_id = 'nul1'").fetchone()
        assert row[0] == "u\ufffd"
        assert store.conn.execute("SELECT COUNT(*) FROM dead_letters WHERE raw = ?", ("{\ufffd}",)).fetchone()[0] == 1
    finally:
        store.close()
