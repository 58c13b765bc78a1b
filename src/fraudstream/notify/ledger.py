"""What each receiver has been told, kept in the alert store beside the alerts (like the
copier's offsets), so that a restart neither loses nor repeats a message.

A receiver's position is the `fraud_alerts.id` of the newest alert its messages covered. It
moves in the same transaction that logs the message as sent, and only from where the sender
found it (a second notifier on the same store fails instead of repeating messages).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import orjson

from fraudstream.errors import UserFacingError
from fraudstream.notify.burst import Window
from fraudstream.notify.message import Message, StoredAlert
from fraudstream.store.db import Connection
from fraudstream.store.queries import has_risk
from fraudstream.store.schema import migrate

logger = logging.getLogger(__name__)

_ALERT_COLUMNS = "id, alert_id, alert_type, severity, user_id, device_id, amount, message, event_time, alert_data"


class LedgerConflict(UserFacingError):
    """Another notifier moved this receiver's position: two notifiers on one store."""


@dataclass(frozen=True)
class ReceiverState:
    position: int
    window: Window


@dataclass(frozen=True)
class SentRow:
    receiver: str
    kind: str
    first_id: int
    last_id: int
    alerts: int
    headline: str
    sent_at: int


def ensure_schema(conn: Connection) -> None:
    """The ledger's tables, with the rest of the store's schema (its migration 3)."""
    migrate(conn)


def has_schema(conn: Connection) -> bool:
    """Whether a notifier ever ran on this store (read-only callers must not create tables)."""
    return conn.has_table("notify_receivers") and conn.has_table("notify_sent")


def load_state(conn: Connection, receiver: str, now_ms: int) -> ReceiverState:
    """The receiver's stored state; a receiver seen for the first time starts at the store's
    end (alerts stored before it was set up are history, not news) and is recorded at once."""
    select = "SELECT position, window_start, window_sent, window_summarised FROM notify_receivers WHERE receiver = ?"
    with conn.transaction() as cur:
        row = cur.execute(select, (receiver,)).fetchone()
        if row is None:
            # ON CONFLICT: a notifier starting beside this one on a PostgreSQL store (which
            # does not lock the table as SQLite's BEGIN IMMEDIATE does) may record it first;
            # WHERE: SQLite's parser needs one between a SELECT and ON CONFLICT.
            cur.execute(
                "INSERT INTO notify_receivers (receiver, position, updated_at)"
                " SELECT ?, COALESCE(MAX(id), 0), ? FROM fraud_alerts WHERE 1 = 1 ON CONFLICT (receiver) DO NOTHING",
                (receiver, now_ms),
            )
            row = cur.execute(select, (receiver,)).fetchone()
    return ReceiverState(row[0], Window(row[1], row[2], bool(row[3])))


def _notified(conn: Connection, severities: Sequence[str]) -> tuple[str, str]:
    """The condition on alerts that are notified (of these severities, not held back by the
    model as normal for their customer), and the risk column; a store from before the model
    has neither column, and nothing in it is held back."""
    marks = ",".join("?" * len(severities))
    if has_risk(conn):
        return f"severity IN ({marks}) AND held_back = 0", "risk"
    return f"severity IN ({marks})", "NULL"


def pending(conn: Connection, position: int, severities: Sequence[str], limit: int = 10_000) -> list[StoredAlert]:
    """Stored (so committed) alerts of the notified severities beyond `position`, oldest first;
    held-back alerts are skipped (the position moves past them with the next message)."""
    if not severities:
        return []
    notified, risk = _notified(conn, severities)
    rows = conn.execute(
        f"SELECT {_ALERT_COLUMNS}, {risk} FROM fraud_alerts WHERE id > ? AND {notified} ORDER BY id LIMIT ?",
        (position, *severities, limit),
    ).fetchall()
    return [_alert(r) for r in rows]


def count_pending(conn: Connection, position: int, severities: Sequence[str]) -> int:
    if not severities:
        return 0
    notified, _ = _notified(conn, severities)
    sql = f"SELECT COUNT(*) FROM fraud_alerts WHERE id > ? AND {notified}"
    return conn.execute(sql, (position, *severities)).fetchone()[0]


def count_held_back(conn: Connection, severities: Sequence[str]) -> int:
    """Alerts of the notified severities that were never notified because the model held them
    back (their order looked normal for the customer); they are in the store, marked."""
    if not severities or not has_risk(conn):
        return 0
    marks = ",".join("?" * len(severities))
    sql = f"SELECT COUNT(*) FROM fraud_alerts WHERE held_back = 1 AND severity IN ({marks})"
    return conn.execute(sql, tuple(severities)).fetchone()[0]


def _alert(row: Sequence[object]) -> StoredAlert:
    try:
        details = orjson.loads(row[9]) if row[9] else {}  # type: ignore[arg-type]
    except orjson.JSONDecodeError:
        details = {}
    return StoredAlert(
        id=row[0], alert_id=row[1], alert_type=row[2], severity=row[3], user_id=row[4], device_id=row[5],
        amount=row[6], message=row[7], event_time=row[8], details=details if isinstance(details, dict) else {},
        risk=row[10],
    )  # type: ignore[arg-type]  # fmt: skip


def record_sent(
    conn: Connection,
    receiver: str,
    began: int,
    state: ReceiverState,
    message: Message,
    now_ms: int,
    kind: str | None = None,
    retry: bool = False,
) -> None:
    """One transaction: the message in the log and the receiver's new position and window,
    moved only from `began`, where this notifier found it. `kind` "dropped": the receiver
    refused it too often, and it is skipped, but on record.

    `retry`: an earlier try failed transiently. If its COMMIT reached the server but the reply
    was lost, the receiver is already at the new position: that is no other notifier, and the
    message counts as recorded."""
    try:
        _record_sent(conn, receiver, began, state, message, now_ms, kind)
    except LedgerConflict:
        if retry:
            row = conn.execute("SELECT position FROM notify_receivers WHERE receiver = ?", (receiver,)).fetchone()
            if row is not None and row[0] == state.position:
                logger.info("receiver %s: the last try was committed (its reply was lost): recorded", receiver)
                return
        raise


def _record_sent(
    conn: Connection,
    receiver: str,
    began: int,
    state: ReceiverState,
    message: Message,
    now_ms: int,
    kind: str | None,
) -> None:
    w = state.window
    headline = (message.title or message.body).split("\n", 1)[0][:200]
    with conn.transaction() as cur:
        cur.execute(
            "UPDATE notify_receivers SET position = ?, window_start = ?, window_sent = ?, window_summarised = ?,"
            " updated_at = ? WHERE receiver = ? AND position = ?",
            (state.position, w.start_ms, w.sent, int(w.summarised), now_ms, receiver, began),
        )
        if cur.rowcount != 1:
            raise LedgerConflict(
                f"receiver {receiver}'s position moved under this notifier (another notifier on this store?): "
                "stop the other one"
            )
        cur.execute(
            "INSERT INTO notify_sent (receiver, kind, first_id, last_id, alerts, headline, sent_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (receiver, kind or message.kind, message.first_id, message.last_id, message.count, headline, now_ms),
        )


def receiver_states(conn: Connection) -> dict[str, ReceiverState]:
    rows = conn.execute(
        "SELECT receiver, position, window_start, window_sent, window_summarised FROM notify_receivers"
        " ORDER BY receiver"
    ).fetchall()
    return {r[0]: ReceiverState(r[1], Window(r[2], r[3], bool(r[4]))) for r in rows}


def recent_sent(conn: Connection, limit: int = 20, receiver: str | None = None) -> list[SentRow]:
    """The newest messages sent, newest first."""
    where, args = ("WHERE receiver = ?", (receiver,)) if receiver else ("", ())
    rows = conn.execute(
        f"SELECT receiver, kind, first_id, last_id, alerts, headline, sent_at FROM notify_sent {where}"
        " ORDER BY id DESC LIMIT ?",
        (*args, limit),
    ).fetchall()
    return [SentRow(*r) for r in rows]
