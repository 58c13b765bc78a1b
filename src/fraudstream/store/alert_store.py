"""The alert store's writer side, on SQLite or PostgreSQL: alerts and dead letters, idempotent
on alert_id and on a copied dead letter's letter_id, with the copier's topic positions moved in
the same transaction as the rows they cover."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import orjson

from fraudstream.config import Settings
from fraudstream.detectors.base import Alert
from fraudstream.errors import UserFacingError
from fraudstream.events.model import DeadLetter
from fraudstream.store import db
from fraudstream.store.db import Connection, Cursor, Location
from fraudstream.store.schema import migrate

logger = logging.getLogger(__name__)


# PostgreSQL: every write transaction of fraud_alerts/dead_letters takes this advisory lock
# (keyed by the store's schema, as the copier's lock is) before its inserts, so the rows' ids
# (a sequence) are taken and committed in order even with several writers (two runs' writers on
# one store). Readers that follow "rows with id > N" (the live feed, the notifier) would skip
# for good a batch that took lower ids but committed after a later one. SQLite needs none: its
# write lock (BEGIN IMMEDIATE) already serialises writers.
WRITER_LOCK = 0x77726974  # "writ"
WRITER_LOCK_KEYS = "?, hashtext(current_schema())"


class OffsetConflict(UserFacingError):
    """A batch's offsets no longer start where the store is: someone else copied meanwhile."""


@contextmanager
def write_transaction(conn: Connection | Any) -> Iterator[Cursor | Any]:
    """One write transaction that takes the lock at its start (SQLite: waiting up to the busy
    timeout), so a batch and the positions it moves commit together or not at all. Takes a
    `db.Connection`, or a bare sqlite3 connection (callers not ported yet)."""
    if not isinstance(conn, Connection):
        conn = Connection(conn, "sqlite", Location("sqlite"))
    with conn.transaction() as cur:
        yield cur


def open_writer(location: Location, busy_timeout_ms: int = 30_000) -> Connection:
    """A connection for writing, to a store migrated to the latest schema (created if it is a
    new SQLite file). SQLite: WAL (readers never wait for the writer), synchronous NORMAL."""
    conn = db.connect(location, create=True, busy_timeout_ms=busy_timeout_ms)
    try:
        if conn.dialect == "sqlite":
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
        migrate(conn)
    except BaseException:
        conn.close()
        raise
    return conn


_INSERT_ALERT = (
    "INSERT INTO fraud_alerts (alert_id, alert_type, user_id, device_id, transaction_id, severity, amount,"
    " message, event_time, detected_at, alert_data, risk, held_back, rule_version)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (alert_id) DO NOTHING"
)
# letter_id's unique index (NULLs never collide: the job's own dead letters have none).
_INSERT_DEAD = (
    "INSERT INTO dead_letters (reason, detail, raw, event_time, seen_at, letter_id) VALUES (?, ?, ?, ?, ?, ?)"
    " ON CONFLICT DO NOTHING"
)


def _insert(cur: Cursor, records: Sequence[Alert | DeadLetter]) -> None:
    alerts = [r for r in records if isinstance(r, Alert)]
    dead = [r for r in records if isinstance(r, DeadLetter)]
    cur.executemany(
        _INSERT_ALERT,
        [
            (
                a.alert_id, a.alert_type, a.user_id, a.device_id, a.transaction_id,
                a.severity, a.amount, a.message, a.event_time, a.detected_at,
                orjson.dumps(a.details).decode(), a.risk, int(a.held_back), a.rule_version,
            )
            for a in alerts
        ],
    )  # fmt: skip
    cur.executemany(_INSERT_DEAD, [(d.reason, d.detail, d.raw, d.event_time, d.seen_at, d.letter_id) for d in dead])


class AlertStore:
    """Writes alerts and dead letters. Inserting an alert twice is a no-op (replays are safe).

    `AlertStore.open(settings)` is the store of the settings (store.url, or SQLite at db_path);
    `AlertStore(path)` a SQLite file. `busy_timeout_ms` is how long a write waits for a lock
    held by another process before it fails; callers retry failed batches (see `TopicMirror`,
    `BatchWriter`). A PostgreSQL connection lost meanwhile is opened again for the next write.
    """

    def __init__(self, where: Path | str | Location, busy_timeout_ms: int = 30_000) -> None:
        self.location = where if isinstance(where, Location) else Location("sqlite", path=Path(where))
        self.path: Path | None = self.location.path  # the SQLite file; None on PostgreSQL
        self.busy_timeout_ms = busy_timeout_ms
        self.conn = open_writer(self.location, busy_timeout_ms)

    @classmethod
    def open(cls, settings: Settings) -> AlertStore:
        return cls(Location.of(settings), settings.store.busy_timeout_ms)

    @property
    def dialect(self) -> db.Dialect:
        return self.location.dialect

    def _connection(self) -> Connection:
        if self.conn.broken:
            logger.warning("the connection to %s was lost; connecting again", self.location)
            with suppress(db.ERRORS):
                self.conn.close()
            self.conn = db.connect(self.location, busy_timeout_ms=self.busy_timeout_ms)
        return self.conn

    def stored_offsets(self, topic: str) -> dict[int, int]:
        """partition -> next offset to copy, for a topic this store mirrors."""
        rows = self._connection().execute("SELECT partition, next_offset FROM source_offsets WHERE topic = ?", (topic,))
        return {r[0]: r[1] for r in rows}

    def source_identity(self, topic: str) -> tuple[str | None, str | None] | None:
        """(topic id, cluster id) of the topic this store copied under that name, if recorded."""
        row = (
            self._connection()
            .execute("SELECT topic_id, cluster_id FROM source_topics WHERE topic = ?", (topic,))
            .fetchone()
        )
        return None if row is None else (row[0], row[1])

    def write_batch(
        self,
        records: Sequence[Alert | DeadLetter],
        offsets: Mapping[tuple[str, int], tuple[int | None, int]] | None = None,
        sources: Mapping[str, tuple[str | None, str | None]] | None = None,
        retry: bool = False,
    ) -> None:
        """One transaction: the records and, when copied from Kafka, the offsets after them.

        `offsets` maps (topic, partition) to (where the batch began, the next offset after it);
        None = the store had no position for it. The positions move only from where the batch
        began: if the store is elsewhere (another copier wrote meanwhile, despite the lock),
        nothing is written and `OffsetConflict` is raised, rather than repeating records or
        moving a position back. `sources`: topic -> (topic id, cluster id) to record with them.

        `retry`: this batch was tried before and the try failed transiently. If that try's
        COMMIT reached the server but its reply was lost, the store is already at the batch's
        end for every partition: then the conflict is this batch's own, and it counts as
        written (its rows are there; the inserts repeat nothing).
        """
        try:
            self._write(records, offsets, sources)
        except OffsetConflict:
            if retry and offsets and self._already_at(offsets):
                logger.info("the last try of this batch was committed (its reply was lost): counted as written")
                return
            raise

    def _already_at(self, offsets: Mapping[tuple[str, int], tuple[int | None, int]]) -> bool:
        topics = {topic for topic, _ in offsets}
        stored = {(t, p): n for t in topics for p, n in self.stored_offsets(t).items()}
        return all(stored.get(key) == after for key, (_, after) in offsets.items())

    def _write(
        self,
        records: Sequence[Alert | DeadLetter],
        offsets: Mapping[tuple[str, int], tuple[int | None, int]] | None,
        sources: Mapping[str, tuple[str | None, str | None]] | None,
    ) -> None:
        with self._connection().transaction() as cur:
            if self.dialect == "postgresql":
                # One writer at a time: ids are taken and committed in order (see WRITER_LOCK).
                cur.execute(f"SELECT pg_advisory_xact_lock({WRITER_LOCK_KEYS})", (WRITER_LOCK,))
            _insert(cur, records)
            cur.executemany(
                "INSERT INTO source_topics (topic, topic_id, cluster_id) VALUES (?, ?, ?) ON CONFLICT (topic)"
                " DO UPDATE SET topic_id = COALESCE(excluded.topic_id, source_topics.topic_id),"
                " cluster_id = COALESCE(excluded.cluster_id, source_topics.cluster_id)",
                [(topic, topic_id, cluster_id) for topic, (topic_id, cluster_id) in (sources or {}).items()],
            )
            for (topic, partition), (began, after) in (offsets or {}).items():
                self._move(cur, topic, partition, began, after)

    def refused(self, records: Sequence[Alert | DeadLetter]) -> dict[int, str]:
        """Which records the database refuses (`db.DATA_ERRORS`: a value out of its range),
        by index, with why; each tried in a savepoint of one transaction that is rolled back,
        so nothing is written. For a batch whose write failed with such an error."""
        out: dict[int, str] = {}
        cur = self._connection().cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            for i, record in enumerate(records):
                cur.execute("SAVEPOINT probe")
                try:
                    _insert(cur, [record])
                except db.DATA_ERRORS as exc:
                    out[i] = db.message(exc)
                    cur.execute("ROLLBACK TO SAVEPOINT probe")
                else:
                    cur.execute("RELEASE SAVEPOINT probe")
        finally:
            with suppress(db.ERRORS):
                cur.execute("ROLLBACK")  # never keep what was tried
            cur.close()
        return out

    def _move(self, cur: Cursor, topic: str, partition: int, began: int | None, after: int) -> None:
        if began is None:
            cur.execute(
                "INSERT INTO source_offsets (topic, partition, next_offset) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
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
                f"{self.location} has {topic}/{partition} copied up to {now[0] if now else 'nothing'}, but this "
                f"copier had it at {'nothing' if began is None else began}: another copier is writing to "
                "this store; stop it (one copier per store)"
            )

    def close(self) -> None:
        self.conn.close()
