"""The SQLite schema and the alert store (WAL mode, idempotent on alert_id)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import orjson

from fraudstream.detectors.base import Alert
from fraudstream.events.model import DeadLetter

SCHEMA = """
CREATE TABLE IF NOT EXISTS fraud_alerts (
    id INTEGER PRIMARY KEY,
    alert_id TEXT NOT NULL UNIQUE,
    alert_type TEXT NOT NULL,
    user_id TEXT,
    device_id TEXT,
    transaction_id TEXT,
    severity TEXT NOT NULL,
    amount REAL,
    message TEXT,
    event_time INTEGER,
    detected_at INTEGER,
    alert_data TEXT
);
CREATE INDEX IF NOT EXISTS idx_alerts_user ON fraud_alerts(user_id);
CREATE INDEX IF NOT EXISTS idx_alerts_type ON fraud_alerts(alert_type);
CREATE INDEX IF NOT EXISTS idx_alerts_severity ON fraud_alerts(severity);
CREATE INDEX IF NOT EXISTS idx_alerts_detected ON fraud_alerts(detected_at);
CREATE INDEX IF NOT EXISTS idx_alerts_event_time ON fraud_alerts(event_time);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY,
    reason TEXT NOT NULL,
    detail TEXT,
    raw TEXT,
    event_time INTEGER,
    seen_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_dead_reason ON dead_letters(reason);
-- How far the store has copied each Kafka topic (alerts, dead letters): the next offset to
-- read. Written in the same transaction as the rows it covers.
CREATE TABLE IF NOT EXISTS source_offsets (
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    PRIMARY KEY (topic, partition)
);
"""


class StoreMissingError(Exception):
    """The database file or its tables do not exist yet."""


def connect(path: Path, create: bool = False, busy_timeout_ms: int = 30_000) -> sqlite3.Connection:
    if not create and not path.exists():
        raise StoreMissingError(f"no alert database at {path}: run 'fraudstream run' first")
    if create:
        path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=busy_timeout_ms / 1000, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    if create:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.executescript(SCHEMA)
    else:
        found = conn.execute("SELECT name FROM sqlite_master WHERE type='table' AND name='fraud_alerts'")
        if found.fetchone() is None:
            conn.close()
            raise StoreMissingError(f"{path} has no fraud_alerts table: run 'fraudstream run' first")
    return conn


class AlertStore:
    """Writes alerts and dead letters. Inserting an alert twice is a no-op (replays are safe).

    `busy_timeout_ms` is how long a write waits for a lock held by another process before it
    fails; callers retry failed batches (see `TopicMirror`, `BatchWriter`).
    """

    def __init__(self, path: Path, busy_timeout_ms: int = 30_000) -> None:
        self.path = path
        self.conn = connect(path, create=True, busy_timeout_ms=busy_timeout_ms)
        self.conn.execute("PRAGMA synchronous = NORMAL")

    def stored_offsets(self, topic: str) -> dict[int, int]:
        """partition -> next offset to copy, for a topic this store mirrors."""
        rows = self.conn.execute("SELECT partition, next_offset FROM source_offsets WHERE topic = ?", (topic,))
        return {r[0]: r[1] for r in rows}

    def write_batch(
        self, records: Sequence[Alert | DeadLetter], offsets: Mapping[tuple[str, int], int] | None = None
    ) -> None:
        """One transaction: the records and, when copied from Kafka, the offsets after them."""
        alerts = [r for r in records if isinstance(r, Alert)]
        dead = [r for r in records if isinstance(r, DeadLetter)]
        with self._tx() as cur:
            if alerts:
                cur.executemany(
                    "INSERT OR IGNORE INTO fraud_alerts (alert_id, alert_type, user_id, device_id,"
                    " transaction_id, severity, amount, message, event_time, detected_at, alert_data)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        (
                            a.alert_id, a.alert_type, a.user_id, a.device_id, a.transaction_id,
                            a.severity, a.amount, a.message, a.event_time, a.detected_at,
                            orjson.dumps(a.details).decode(),
                        )
                        for a in alerts
                    ],
                )  # fmt: skip
            if dead:
                cur.executemany(
                    "INSERT INTO dead_letters (reason, detail, raw, event_time, seen_at) VALUES (?, ?, ?, ?, ?)",
                    [(d.reason, d.detail, d.raw, d.event_time, d.seen_at) for d in dead],
                )
            if offsets:
                cur.executemany(
                    "INSERT INTO source_offsets (topic, partition, next_offset) VALUES (?, ?, ?)"
                    " ON CONFLICT (topic, partition) DO UPDATE SET next_offset = excluded.next_offset",
                    [(topic, partition, offset) for (topic, partition), offset in offsets.items()],
                )

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Cursor]:
        cur = self.conn.cursor()
        try:
            cur.execute("BEGIN IMMEDIATE")  # take the write lock now, waiting up to busy_timeout
            yield cur
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        finally:
            cur.close()

    def close(self) -> None:
        self.conn.close()
