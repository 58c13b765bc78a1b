"""A run's alerts, from the store (SQLite or PostgreSQL) or as dicts (e.g. decoded from the
alerts topic)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fraudstream.config import Settings
from fraudstream.evaluation.errors import AlertStoreMissingError, EvaluationInputError
from fraudstream.evaluation.labels import LoadStats, epoch_ms, in_window
from fraudstream.store import db

logger = logging.getLogger(__name__)

_ALERT_COLUMNS = ("alert_id", "alert_type", "user_id", "device_id", "transaction_id", "event_time", "detected_at")
# Read when the store has them (a store from before the model has not): the order's risk, and
# whether the alert was held back (alerts.min_risk).
_RISK_COLUMNS = ("risk", "held_back")


@dataclass(frozen=True, slots=True)
class AlertRecord:
    """The fields of an alert that scoring needs; `transaction_id` is its triggering order."""

    alert_type: str
    transaction_id: str | None
    alert_id: str | None = None
    user_id: str | None = None
    device_id: str | None = None
    event_time: int | None = None
    detected_at: int | None = None
    risk: float | None = None  # the model's risk for the triggering order (None: no model)
    held_back: bool = False  # stored but not delivered: its order looked normal (alerts.min_risk)


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    text = str(value)
    return text if text.strip() else None


def _risk(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        risk = float(value)
    except (TypeError, ValueError):
        return None
    return risk if 0.0 <= risk <= 1.0 else None


def _flag(value: Any) -> bool:
    """held_back as the store (0/1), the topic's JSON (true/false) or a text file gives it."""
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes")
    return bool(value) if isinstance(value, bool | int | float) else False


def iter_alerts(
    records: Iterable[Any],
    start_ms: int | None = None,
    end_ms: int | None = None,
    stats: LoadStats | None = None,
) -> Iterator[AlertRecord]:
    """Alerts from dicts with the store's keys; non-dicts are unreadable, no alert_type is invalid.

    The optional time filter applies to the alert's `event_time` (its triggering order's), with
    the same bounds as the event loaders; an alert without an event time is kept.
    """
    tally = stats if stats is not None else LoadStats()
    for record in records:
        tally.records += 1
        if not isinstance(record, dict):
            tally.unreadable += 1
            continue
        alert_type = _text(record.get("alert_type"))
        if alert_type is None:
            tally.invalid += 1
            continue
        event_time = epoch_ms(record.get("event_time"))
        if event_time is not None and not in_window(event_time, start_ms, end_ms):
            tally.outside_window += 1
            continue
        tally.kept += 1
        yield AlertRecord(
            alert_type=alert_type.strip(),
            transaction_id=_text(record.get("transaction_id")),
            alert_id=_text(record.get("alert_id")),
            user_id=_text(record.get("user_id")),
            device_id=_text(record.get("device_id")),
            event_time=event_time,
            detected_at=epoch_ms(record.get("detected_at")),
            risk=_risk(record.get("risk")),
            held_back=_flag(record.get("held_back")),
        )


def load_alerts(
    records: Iterable[Any],
    start_ms: int | None = None,
    end_ms: int | None = None,
    stats: LoadStats | None = None,
) -> list[AlertRecord]:
    """`iter_alerts` as a list, with a warning when records had to be skipped."""
    tally = stats if stats is not None else LoadStats()
    alerts = list(iter_alerts(records, start_ms, end_ms, tally))
    if tally.unreadable or tally.invalid:
        logger.warning("%d unreadable and %d invalid alert record(s) skipped", tally.unreadable, tally.invalid)
    return alerts


def load_alerts_sqlite(
    path: str | Path,
    start_ms: int | None = None,
    end_ms: int | None = None,
    stats: LoadStats | None = None,
) -> list[AlertRecord]:
    """Alerts from a SQLite store's file (a run's, a backtest's), whatever store.url says."""
    return load_alerts_store(db.Location("sqlite", path=Path(path)), start_ms, end_ms, stats)


def load_alerts_store(
    store: db.Location | Settings,
    start_ms: int | None = None,
    end_ms: int | None = None,
    stats: LoadStats | None = None,
) -> list[AlertRecord]:
    """Alerts from the store's fraud_alerts table, SQLite or PostgreSQL, in the order stored,
    read on a read-only connection so a running job is undisturbed."""
    location = db.Location.of(store) if isinstance(store, Settings) else store
    if location.path is not None and not location.path.is_file():
        raise AlertStoreMissingError(f"no alert database at {location}")
    try:
        conn = db.connect(location, read_only=True)
    except db.ERRORS as exc:
        raise EvaluationInputError(f"cannot open the alert database at {location}: {exc}") from exc
    try:
        try:
            found = conn.has_table("fraud_alerts")
        except db.ERRORS as exc:
            raise EvaluationInputError(f"{location} is not a readable alert database: {exc}") from exc
        if not found:
            raise AlertStoreMissingError(f"{location} has no fraud_alerts table")
        from fraudstream.store.schema import check_version

        check_version(conn)  # a newer store's tables may mean other things: refused in one line
        present = set(conn.columns("fraud_alerts"))
        columns = [*_ALERT_COLUMNS, *(c for c in _RISK_COLUMNS if c in present)]
        rows = conn.execute(f"SELECT {', '.join(columns)} FROM fraud_alerts ORDER BY id")
        return load_alerts((dict(row) for row in rows), start_ms, end_ms, stats)
    finally:
        conn.close()
