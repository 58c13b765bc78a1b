"""The store's copier against the real broker and a real store (a SQLite file, and a PostgreSQL
database where it counts): a lock held by another process, a failing write and a PostgreSQL
connection dropped by the server are retried, and every record lands exactly once.
Its guards (replays, other topics or clusters, a second copier, unstorable records) are in
test_copier_guards.py."""

from __future__ import annotations

import logging
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from fraudstream.config import Settings
from fraudstream.events.model import DeadLetter
from fraudstream.store import AlertStore, db
from fraudstream.store.db import Location
from fraudstream.store.mirror import TopicMirror
from tests.kafka.conftest import report, send
from tests.store.test_store import alerts

# Seconds a test against the broker: `make test` runs them, `make check` does not.
pytestmark = pytest.mark.slow

ALERTS = alerts(60)
DEAD = [DeadLetter(reason="invalid_json", detail=f"bad {i}", raw="{", seen_at=1) for i in range(7)]


def publish(k) -> None:
    send(k, [(i % 4, a.key.encode(), orjson.dumps(a.to_dict())) for i, a in enumerate(ALERTS)], k.alerts_topic)
    send(k, [(0, d.reason.encode(), orjson.dumps(d.to_dict())) for d in DEAD], k.dead_letter_topic)


def mirror_settings(kafka, tmp_path, flags: dict[str, str] | None = None, **store) -> Settings:
    """`flags`: `store_flags`, a SQLite file or a PostgreSQL database (default: SQLite in tmp_path)."""
    return Settings(data_dir=tmp_path, kafka=kafka).with_overrides(
        {"store.batch_size": 10, **(flags or {}), **{f"store.{k}": v for k, v in store.items()}}
    )


def copy_all(settings: Settings, store: AlertStore) -> TopicMirror:
    mirror = TopicMirror(settings, store)
    try:
        mirror.drain(idle_s=10, limit_s=120)
    finally:
        mirror.close()
    return mirror


def stored_rows(where: Settings | Path) -> tuple[list[str], int]:
    """(alert ids, dead letters) in the store of the settings, or in a SQLite file."""
    loc = Location.of(where) if isinstance(where, Settings) else Location("sqlite", path=where)
    with db.connect(loc) as conn:
        ids = [r[0] for r in conn.execute("SELECT alert_id FROM fraud_alerts ORDER BY alert_id")]
        dead = conn.execute("SELECT count(*) FROM dead_letters").fetchone()[0]
    return ids, dead


def test_the_copier_stores_each_record_once_and_resumes_where_it_stopped(kafka, tmp_path, store_flags):
    publish(kafka)
    settings = mirror_settings(kafka, tmp_path, store_flags)
    store = AlertStore.open(settings)
    first = copy_all(settings, store)
    assert first.stats.stored == len(ALERTS) + len(DEAD)
    assert store.stored_offsets(kafka.alerts_topic) == {p: 15 for p in range(4)}
    assert store.stored_offsets(kafka.dead_letter_topic) == {0: len(DEAD)}
    # a second copier (the next run) starts where the first one stopped: nothing twice
    again = copy_all(settings, store)
    assert again.stats.stored == 0
    store.close()
    assert stored_rows(settings) == (sorted(a.alert_id for a in ALERTS), len(DEAD))


def test_a_database_locked_by_another_process_is_waited_out(kafka, tmp_path, caplog):
    publish(kafka)
    settings = mirror_settings(kafka, tmp_path, busy_timeout_ms=300)
    store = AlertStore(settings.db_path, settings.store.busy_timeout_ms)
    locker = subprocess.Popen(
        [sys.executable, "-c",
         "import sqlite3, sys, time\n"
         f"c = sqlite3.connect({str(settings.db_path)!r}, isolation_level=None)\n"
         "c.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); time.sleep(4); c.execute('ROLLBACK')"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert locker.stdout.readline().strip() == "locked"
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="fraudstream.store.mirror"):
            mirror = copy_all(settings, store)
        waited = time.monotonic() - started
    finally:
        locker.wait(30)
    store.close()
    assert mirror.stats.failed_writes >= 1
    assert waited >= 2.0  # it really was blocked, and got through once the lock was gone
    messages = [r.getMessage() for r in caplog.records if r.name == "fraudstream.store.mirror"]
    assert any("locked" in m and "retrying" in m for m in messages), messages
    assert stored_rows(settings.db_path) == (sorted(a.alert_id for a in ALERTS), len(DEAD))
    report(
        f"SQLite file locked by another process for 4 s | {len(ALERTS)} alerts, {len(DEAD)} dead letters | "
        f"{mirror.stats.failed_writes} failed writes logged and retried; lost 0, duplicated 0"
    )


def test_a_write_that_fails_once_is_retried_and_nothing_is_lost(kafka, tmp_path, caplog):
    publish(kafka)
    settings = mirror_settings(kafka, tmp_path)
    store = AlertStore(settings.db_path)
    real_write = store.write_batch
    calls = {"n": 0}

    def failing_once(records, offsets=None, sources=None, retry=False):
        calls["n"] += 1
        if calls["n"] == 2:  # the second batch hits a disk error
            raise sqlite3.OperationalError("disk I/O error")
        return real_write(records, offsets, sources, retry=retry)

    store.write_batch = failing_once  # type: ignore[method-assign]
    with caplog.at_level(logging.WARNING, logger="fraudstream.store.mirror"):
        mirror = copy_all(settings, store)
    store.close()
    assert mirror.stats.failed_writes == 1
    assert any("disk I/O error" in r.getMessage() for r in caplog.records)
    assert mirror.stats.stored == len(ALERTS) + len(DEAD)
    assert stored_rows(settings.db_path) == (sorted(a.alert_id for a in ALERTS), len(DEAD))
    report(
        f"one SQLite write fails (disk I/O error) | {len(ALERTS)} alerts, {len(DEAD)} dead letters | "
        "1 failed write logged and retried; lost 0, duplicated 0"
    )


def test_a_postgresql_connection_dropped_by_the_server_is_opened_again(kafka, tmp_path, postgres_url, caplog):
    """The server ends the copier's session between two batches (a restart, a failover, an
    administrator's pg_terminate_backend): the write fails, the store connects again, the batch
    is written, nothing lost or doubled."""
    publish(kafka)
    settings = mirror_settings(kafka, tmp_path, {"store.url": postgres_url})
    store = AlertStore.open(settings)
    admin = db.connect(Location("postgresql", url=postgres_url))
    real_write = store.write_batch
    calls = {"n": 0}

    def dropped_before_the_second(records, offsets=None, sources=None, retry=False):
        calls["n"] += 1
        if calls["n"] == 2:
            pid = store.conn.execute("SELECT pg_backend_pid()").fetchone()[0]
            admin.execute("SELECT pg_terminate_backend(?)", (pid,))
        return real_write(records, offsets, sources, retry=retry)

    store.write_batch = dropped_before_the_second  # type: ignore[method-assign]
    try:
        with caplog.at_level(logging.WARNING):
            mirror = copy_all(settings, store)
    finally:
        admin.close()
        store.close()
    assert mirror.stats.failed_writes >= 1
    assert any("connecting again" in r.getMessage() for r in caplog.records)
    assert stored_rows(settings) == (sorted(a.alert_id for a in ALERTS), len(DEAD))
    report(
        f"the PostgreSQL server ends the copier's session between two batches | {len(ALERTS)} alerts, "
        f"{len(DEAD)} dead letters | {mirror.stats.failed_writes} failed write, connected again; lost 0, duplicated 0"
    )
