"""The alert store on both databases (`store_flags`: each test on SQLite and on PostgreSQL),
and what only SQLite has (WAL, files from earlier versions)."""

from __future__ import annotations

import dataclasses
import sqlite3
import threading
import time

import pytest

from fraudstream.detectors import VelocityDetector
from fraudstream.events import parse_record
from fraudstream.events.model import DeadLetter
from fraudstream.store import AlertStore, BatchWriter, StoreMissingError, queries
from fraudstream.store.sqlite import OffsetConflict, connect
from tests.conftest import BASE, make_order


def alerts(n, user="u_1"):
    det = VelocityDetector(threshold=0)
    return [det.make_alert(make_order(BASE + i, user=user), f"msg {i}", {"i": i}) for i in range(n)]


def count(store: AlertStore, table: str = "fraud_alerts") -> int:
    return store.conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


def test_schema_has_the_seed_columns_plus_ours(tmp_path):
    store = AlertStore(tmp_path / "a.db")
    cols = {r[1] for r in store.conn.execute("PRAGMA table_info(fraud_alerts)")}
    assert {
        "id",
        "alert_type",
        "user_id",
        "device_id",
        "severity",
        "amount",
        "message",
        "detected_at",
        "alert_data",
    } <= cols
    assert {"alert_id", "transaction_id", "event_time"} <= cols
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    indexes = {r[0] for r in store.conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert {"idx_alerts_user", "idx_alerts_type", "idx_alerts_severity", "idx_alerts_detected"} <= indexes


def test_replayed_alerts_are_stored_once(store):
    batch = alerts(50)
    store.write_batch(batch)
    store.write_batch(batch[10:30])
    store.write_batch(batch)
    assert count(store) == 50


def test_dead_letters_are_stored_with_reason(store):
    store.write_batch([parse_record(b"{oops"), parse_record(b"[]"), *alerts(1)])
    rows = store.conn.execute("SELECT reason, raw FROM dead_letters ORDER BY id").fetchall()
    assert [tuple(r) for r in rows] == [("invalid_json", "{oops"), ("not_an_object", "[]")]


def test_concurrent_readers_while_writing(settings, store):
    writer = BatchWriter(store.write_batch, batch_size=25, flush_interval_s=0.01)
    seen: list[list[int]] = [[], [], []]
    errors: list[BaseException] = []
    done = threading.Event()

    def reader(mine: list[int]):
        conn = queries.open_read_only(settings)
        try:
            while not done.is_set():
                mine.append(conn.execute("SELECT COUNT(*) FROM fraud_alerts").fetchone()[0])
        except BaseException as exc:  # pragma: no cover - the assertion below reports it
            errors.append(exc)
        finally:
            conn.close()

    threads = [threading.Thread(target=reader, args=(mine,)) for mine in seen]
    for t in threads:
        t.start()
    for a in alerts(2000):
        writer.submit(a)
    writer.close()
    time.sleep(0.05)
    done.set()
    for t in threads:
        t.join()
    assert not errors
    for mine in seen:  # each reader sees whole batches appear, never a count going back
        assert mine == sorted(mine) and len(mine) > 3 and mine[-1] <= 2000
    assert count(store) == 2000


def test_missing_database_is_a_readable_error(tmp_path):
    with pytest.raises(StoreMissingError, match="run 'fraudstream run' first"):
        connect(tmp_path / "none.db")
    sqlite3.connect(tmp_path / "empty.db").close()
    with pytest.raises(StoreMissingError, match="no fraud_alerts table"):
        connect(tmp_path / "empty.db")


def test_queries(settings, store):
    now = int(time.time() * 1000)
    batch = [a.__class__(**{**a.to_dict(), "detected_at": now}) for a in alerts(3, "u_1") + alerts(2, "u_2")]
    store.write_batch(batch)
    conn = queries.open_read_only(settings)
    s = queries.stats(conn, now)
    assert s["total_alerts"] == 5
    assert s["by_type"] == [{"alert_type": "VELOCITY_FRAUD", "alerts": 5}]
    assert s["top_users"][0] == {"user_id": "u_1", "alerts": 3}
    assert s["alerts_last_hour"] == 5
    assert queries.stats(conn, now + 2 * 3_600_000)["alerts_last_hour"] == 0
    assert len(queries.for_user(conn, "u_2", 10)) == 2
    assert queries.for_user(conn, "u_2' OR '1'='1", 10) == []  # bound as a parameter
    assert len(queries.of_type(conn, "VELOCITY_FRAUD", 4)) == 4
    assert len(queries.high_priority(conn, 100)) == 5
    assert [r["event_time"] for r in queries.recent(conn, 2)] == [BASE + 2, BASE + 1]
    assert queries.top_keys(conn, "user_id", 1, None, None) == [{"key": "u_1", "alerts": 3}]
    line = queries.timeline(conn, 1_000, BASE, BASE + 3_000)
    assert line["buckets"] == [BASE, BASE + 1_000, BASE + 2_000] and line["by_type"] == {"VELOCITY_FRAUD": [5, 0, 0]}
    assert queries.time_range(conn) == (BASE, BASE + 2) and queries.last_id(conn) == 5
    assert [r["alert_id"] for r in queries.after_id(conn, 3, 10)] == [a.alert_id for a in batch[3:]]
    conn.close()


def test_a_dead_letter_with_an_id_is_stored_once(store):
    """A replayed dead letter (same `letter_id`, its place in the dead-letter topic) is a no-op;
    dead letters without an id (a run's result stream, read once) are each kept."""
    keyed = [DeadLetter("invalid_json", "bad", "{", 1, letter_id=f"dlq/0@{i}") for i in range(3)]
    store.write_batch(keyed)
    store.write_batch(keyed[1:])
    unkeyed = DeadLetter("invalid_json", "bad", "{", 1)
    store.write_batch([unkeyed, unkeyed])
    rows = store.conn.execute("SELECT letter_id FROM dead_letters ORDER BY id").fetchall()
    assert [r[0] for r in rows] == ["dlq/0@0", "dlq/0@1", "dlq/0@2", None, None]


OLD_SCHEMA = """
CREATE TABLE fraud_alerts (id INTEGER PRIMARY KEY, alert_id TEXT NOT NULL UNIQUE, alert_type TEXT NOT NULL,
    user_id TEXT, device_id TEXT, transaction_id TEXT, severity TEXT NOT NULL, amount REAL, message TEXT,
    event_time INTEGER, detected_at INTEGER, alert_data TEXT);
CREATE TABLE dead_letters (id INTEGER PRIMARY KEY, reason TEXT NOT NULL, detail TEXT, raw TEXT,
    event_time INTEGER, seen_at INTEGER NOT NULL);
CREATE TABLE source_offsets (topic TEXT NOT NULL, partition INTEGER NOT NULL, next_offset INTEGER NOT NULL,
    PRIMARY KEY (topic, partition));
INSERT INTO dead_letters (reason, detail, raw, seen_at) VALUES ('late', 'old', '{}', 1);
INSERT INTO source_offsets VALUES ('dlq', 0, 1);
"""


def test_a_store_of_an_older_version_gains_the_dead_letter_key(tmp_path):
    with sqlite3.connect(tmp_path / "a.db") as conn:
        conn.executescript(OLD_SCHEMA)
    store = AlertStore(tmp_path / "a.db")
    letter = DeadLetter("late", "new", "{}", 2, letter_id="dlq/0@1")
    store.write_batch([letter, letter])
    rows = store.conn.execute("SELECT reason, detail, letter_id FROM dead_letters ORDER BY id").fetchall()
    assert [tuple(r) for r in rows] == [("late", "old", None), ("late", "new", "dlq/0@1")]
    assert store.stored_offsets("dlq") == {0: 1}


def test_offsets_only_move_from_where_the_batch_began(store):
    """A copier's batch names the offset it started from; if the store has moved since (another
    copier), nothing of the batch is written and the offsets never go back."""
    first, second = alerts(2)
    store.write_batch([first], {("alerts", 0): (None, 10)})
    with pytest.raises(OffsetConflict, match="alerts/0"):
        store.write_batch([second], {("alerts", 0): (None, 5)})  # began before the first was stored
    with pytest.raises(OffsetConflict, match="alerts/0"):
        store.write_batch([second], {("alerts", 0): (7, 9)})
    assert store.stored_offsets("alerts") == {0: 10}
    assert count(store) == 1
    store.write_batch([second], {("alerts", 0): (10, 12)})
    assert store.stored_offsets("alerts") == {0: 12}
    # The rows and the offsets commit together: a batch that fails half-way leaves neither.
    third = alerts(3)[2]
    with pytest.raises(OffsetConflict):
        store.write_batch([third], {("alerts", 0): (12, 13), ("alerts", 1): (4, 5)})
    assert count(store) == 2 and store.stored_offsets("alerts") == {0: 12}


def scored(n: int) -> list:
    """Alerts with the model's marks: risk 0.1, 0.3, ... (every other one without a model's
    risk), the lowest held back."""
    out = []
    for i, a in enumerate(alerts(n)):
        risk = None if i % 2 else round(0.1 + 0.2 * i, 2)
        out.append(dataclasses.replace(a, risk=risk, held_back=risk is not None and risk < 0.2))
    return out


def test_risk_and_held_back_are_stored_and_filtered(settings, store):
    batch = scored(6)  # risks 0.1 (held back), -, 0.5, -, 0.9, -
    store.write_batch(batch)
    conn = queries.open_read_only(settings)
    rows = queries.recent(conn, 10)
    assert {r["transaction_id"]: (r["risk"], r["held_back"]) for r in rows} == {
        a.transaction_id: (a.risk, a.held_back) for a in batch
    }
    assert [r["risk"] for r in queries.recent(conn, 10, held_back=True)] == [0.1]
    assert len(queries.recent(conn, 10, held_back=False)) == 5
    assert sorted(r["risk"] for r in queries.for_user(conn, "u_1", 10, min_risk=0.5)) == [0.5, 0.9]
    assert queries.stats(conn, BASE)["held_back"] == 1
    page = queries.search(conn, queries.AlertFilter(min_risk=0.3, held_back=False), 1, 10)
    assert page.total == 2 and {r["risk"] for r in page.rows} == {0.5, 0.9}
    by_risk = queries.search(conn, queries.AlertFilter(), 1, 10, sort="risk").rows
    assert [r["risk"] for r in by_risk] == [0.9, 0.5, 0.1, None, None, None]
    newest = queries.search(conn, queries.AlertFilter(), 1, 10).rows
    assert [r["event_time"] for r in newest] == sorted((a.event_time for a in batch), reverse=True)
    if conn.dialect == "sqlite":
        plan = " ".join(r[3] for r in conn.execute("EXPLAIN QUERY PLAN SELECT id FROM fraud_alerts WHERE risk >= 0.5"))
        assert "idx_alerts_risk" in plan
    conn.close()


def test_an_older_store_gains_the_risk_columns_and_reads_without_them_until_then(tmp_path):
    path = tmp_path / "a.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(OLD_SCHEMA)
        conn.execute(
            "INSERT INTO fraud_alerts (alert_id, alert_type, severity, user_id, event_time) "
            "VALUES ('old', 'VELOCITY_FRAUD', 'HIGH', 'u_1', ?)",
            (BASE,),
        )
    reader = queries.open_read_only(path)  # a reader cannot migrate: it reads no risk, none held back
    assert [(r["risk"], r["held_back"]) for r in queries.recent(reader, 5)] == [(None, False)]
    assert queries.recent(reader, 5, held_back=True) == [] and queries.recent(reader, 5, min_risk=0.0) == []
    assert len(queries.recent(reader, 5, held_back=False)) == 1
    assert queries.search(reader, queries.AlertFilter(min_risk=0.5), 1, 10).total == 0
    assert queries.search(reader, queries.AlertFilter(), 1, 10, sort="risk").rows[0]["risk"] is None
    assert queries.alert(reader, "old")["held_back"] is False and queries.stats(reader, BASE)["held_back"] == 0
    reader.close()
    store = AlertStore(path)  # the writer migrates it
    store.write_batch(scored(1))
    cols = {r[1]: r for r in store.conn.execute("PRAGMA table_info(fraud_alerts)")}
    assert cols["risk"][2] == "REAL" and cols["held_back"][3] == 1  # NOT NULL
    rows = store.conn.execute("SELECT alert_id, risk, held_back FROM fraud_alerts ORDER BY id").fetchall()
    assert [tuple(r) for r in rows] == [("old", None, 0), (scored(1)[0].alert_id, 0.1, 1)]
    indexes = {r[0] for r in store.conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert {"idx_alerts_risk", "idx_alerts_held_back"} <= indexes
    store.close()
