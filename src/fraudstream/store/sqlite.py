"""The SQLite file's entry points of before the shared store, kept for their callers: the
schema is `fraudstream.store.schema`'s, the writer `fraudstream.store.alert_store`'s, and
connections `fraudstream.store.db`'s (either database)."""

from __future__ import annotations

from pathlib import Path

from fraudstream.store import db
from fraudstream.store.alert_store import AlertStore, OffsetConflict, open_writer, write_transaction
from fraudstream.store.db import Connection, Location, StoreMissingError

__all__ = ["AlertStore", "OffsetConflict", "StoreMissingError", "connect", "ensure_reviews", "write_transaction"]

# The triage table alone: what a verdict on a SQLite store from before triage adds (the
# dashboard writes nothing else, and must not take on the copier's schema work).
REVIEWS_SCHEMA = """
CREATE TABLE IF NOT EXISTS alert_reviews (
    id INTEGER PRIMARY KEY,
    alert_id TEXT NOT NULL,
    verdict TEXT NOT NULL CHECK (verdict IN ('confirmed_fraud', 'false_positive')),
    note TEXT,
    reviewer TEXT NOT NULL,
    reviewed_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_reviews_alert ON alert_reviews(alert_id, id);
"""


def ensure_reviews(conn: Connection) -> None:
    """Add the triage table to a store that predates it (nothing else is created or changed).
    A migrated store has it already (schema version 2), PostgreSQL's always."""
    if not conn.has_table("alert_reviews"):
        conn.executescript(REVIEWS_SCHEMA)


def connect(path: Path | Location, create: bool = False, busy_timeout_ms: int = 30_000) -> Connection:
    """A read-write connection to a SQLite file (or any Location). `create`: make it, migrated
    to the latest schema, if missing (what a writer does); else StoreMissingError when the file
    or its fraud_alerts table does not exist."""
    loc = path if isinstance(path, Location) else Location("sqlite", path=Path(path))
    if create:
        return open_writer(loc, busy_timeout_ms)
    conn = db.connect(loc, busy_timeout_ms=busy_timeout_ms)
    if not conn.has_table("fraud_alerts"):
        conn.close()
        raise StoreMissingError(f"{loc} has no fraud_alerts table: run 'fraudstream run' first")
    return conn
