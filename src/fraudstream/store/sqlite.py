"""The SQLite schema and the alert store (WAL mode, idempotent on alert_id and on a copied
dead letter's letter_id)."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import orjson

from fraudstream.detectors.base import Alert
from fraudstream.errors import UserFacingError
from fraudstream.events.model import DeadLetter

logger = logging.getLogger(__name__)

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
    alert_data TEXT,
    risk REAL,
    held_back INTEGER NOT NULL DEFAULT 0
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
    seen_at INTEGER NOT NULL,
    letter_id TEXT
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
-- Which topic those offsets are offsets of: a topic name alone does not say (a topic deleted
-- and created again, a wiped or another broker), and offsets of another topic skip records.
CREATE TABLE IF NOT EXISTS source_topics (
    topic TEXT PRIMARY KEY,
    topic_id TEXT,
    cluster_id TEXT
);
-- Analysts' verdicts on alerts (the dashboard's triage): every verdict is kept; the newest
-- per alert is the one in force. The only table the dashboard writes.
CREATE TABLE IF NOT EXISTS alert_reviews (
    id INTEGER PRIMARY KEY,
    alert_id TEXT NOT NULL,
    verdict TEXT NOT NULL CHECK (verdict IN ('confirmed_fraud', 'false_positive')),
    note TEXT,
    reviewer TEXT NOT NULL,
    reviewed_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_reviews_alert ON alert_reviews(alert_id, id);
CREATE INDEX IF NOT EXISTS idx_alerts_device ON fraud_alerts(device_id);
"""
# The triage table alone: what a verdict on a store from before triage adds (the dashboard
# writes nothing else, and must not take on the copier's schema work).
REVIEWS_SCHEMA = SCHEMA[
    SCHEMA.index("CREATE TABLE IF NOT EXISTS alert_reviews") : SCHEMA.index(
        "CREATE INDEX IF NOT EXISTS idx_alerts_device"
    )
]

# Stores written by earlier versions: columns they lack, added in place (existing rows keep
# NULL or the default: a dead letter without a key, an alert without a risk and not held back,
# as before).
MIGRATIONS = (
    ("dead_letters", "letter_id", "TEXT"),
    ("fraud_alerts", "risk", "REAL"),
    ("fraud_alerts", "held_back", "INTEGER NOT NULL DEFAULT 0"),
)
# After the migrations, as they need their columns. NULLs never collide in a UNIQUE index.
# (held_back, event_time): the dashboard's search with held-back alerts hidden or alone, newest
# first; risk: its minimum-risk filter.
INDEXES = """
CREATE UNIQUE INDEX IF NOT EXISTS idx_dead_letter_id ON dead_letters(letter_id);
CREATE INDEX IF NOT EXISTS idx_alerts_held_back ON fraud_alerts(held_back, event_time);
CREATE INDEX IF NOT EXISTS idx_alerts_risk ON fraud_alerts(risk);
"""


def ensure_reviews(conn: sqlite3.Connection) -> None:
    """Add the triage table to a store that predates it (nothing else is created or changed)."""
    conn.executescript(REVIEWS_SCHEMA)


class StoreMissingError(Exception):
    """The database file or its tables do not exist yet."""


class OffsetConflict(UserFacingError):
    """A batch's offsets no longer start where the store is: someone else copied meanwhile."""


def _migrate(conn: sqlite3.Connection) -> None:
    for table, column, kind in MIGRATIONS:
        if column not in {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}:
            logger.info("adding column %s.%s to an older store", table, column)
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
    conn.executescript(INDEXES)


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
        _migrate(conn)
    else:
        found = conn.execute("SELECT name FROM sqlite_master WHERE type='table' AND name='fraud_alerts'")
        if found.fetchone() is None:
            conn.close()
            raise StoreMissingError(f"{path} has no fraud_alerts table: run 'fraudstream run' first")
    return conn


@contextmanager
def write_transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Cursor]:
    """One write transaction that takes the lock at its start (waiting up to the busy timeout),
    so a batch and the positions it moves commit together or not at all."""
    cur = conn.cursor()
    try:
        cur.execute("BEGIN IMMEDIATE")
    except BaseException:
        cur.close()
        raise
    try:
        yield cur
        cur.execute("COMMIT")
    except BaseException:
        cur.execute("ROLLBACK")
        raise
    finally:
        cur.close()


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

    def source_identity(self, topic: str) -> tuple[str | None, str | None] | None:
        """(topic id, cluster id) of the topic this store copied under that name, if recorded."""
        row = self.conn.execute("SELECT topic_id, cluster_id FROM source_topics WHERE topic = ?", (topic,)).fetchone()
        return None if row is None else (row[0], row[1])

    def write_batch(
        self,
        records: Sequence[Alert | DeadLetter],
        offsets: Mapping[tuple[str, int], tuple[int | None, int]] | None = None,
        sources: Mapping[str, tuple[str | None, str | None]] | None = None,
    ) -> None:
        """One transaction: the records and, when copied from Kafka, the offsets after them.

        `offsets` maps (topic, partition) to (where the batch began, the next offset after it);
        None = the store had no position for it. The positions move only from where the batch
        began: if the store is elsewhere (another copier wrote meanwhile, despite the lock),
        nothing is written and `OffsetConflict` is raised, rather than repeating records or
        moving a position back. `sources`: topic -> (topic id, cluster id) to record with them.
        """
        alerts = [r for r in records if isinstance(r, Alert)]
        dead = [r for r in records if isinstance(r, DeadLetter)]
        with self._tx() as cur:
            if alerts:
                cur.executemany(
                    "INSERT OR IGNORE INTO fraud_alerts (alert_id, alert_type, user_id, device_id,"
                    " transaction_id, severity, amount, message, event_time, detected_at, alert_data,"
                    " risk, held_back) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        (
                            a.alert_id, a.alert_type, a.user_id, a.device_id, a.transaction_id,
                            a.severity, a.amount, a.message, a.event_time, a.detected_at,
                            orjson.dumps(a.details).decode(), a.risk, int(a.held_back),
                        )
                        for a in alerts
                    ],
                )  # fmt: skip
            if dead:
                cur.executemany(
                    "INSERT OR IGNORE INTO dead_letters (reason, detail, raw, event_time, seen_at, letter_id)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    [(d.reason, d.detail, d.raw, d.event_time, d.seen_at, d.letter_id) for d in dead],
                )
            cur.executemany(
                "INSERT INTO source_topics (topic, topic_id, cluster_id) VALUES (?, ?, ?) ON CONFLICT (topic)"
                " DO UPDATE SET topic_id = COALESCE(excluded.topic_id, source_topics.topic_id),"
                " cluster_id = COALESCE(excluded.cluster_id, source_topics.cluster_id)",
                [(topic, topic_id, cluster_id) for topic, (topic_id, cluster_id) in (sources or {}).items()],
            )
            for (topic, partition), (began, after) in (offsets or {}).items():
                if began is None:
                    cur.execute(
                        "INSERT OR IGNORE INTO source_offsets (topic, partition, next_offset) VALUES (?, ?, ?)",
                        (topic, partition, after),
                    )
                else:
                    cur.execute(
                        "UPDATE source_offsets SET next_offset = ? WHERE topic = ? AND partition = ? AND next_offset = ?",
                        (after, topic, partition, began),
                    )
                if cur.rowcount != 1:
                    now = cur.execute(
                        "SELECT next_offset FROM source_offsets WHERE topic = ? AND partition = ?", (topic, partition)
                    ).fetchone()
                    raise OffsetConflict(
                        f"{self.path} has {topic}/{partition} copied up to {now[0] if now else 'nothing'}, but this "
                        f"copier had it at {'nothing' if began is None else began}: another copier is writing to "
                        "this store; stop it (one copier per store)"
                    )

    def _tx(self) -> AbstractContextManager[sqlite3.Cursor]:
        return write_transaction(self.conn)

    def close(self) -> None:
        self.conn.close()
