"""A run's alerts, from the SQLite store or as dicts (e.g. decoded from the alerts topic)."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fraudstream.evaluation.errors import AlertStoreMissingError, EvaluationInputError
from fraudstream.evaluation.labels import LoadStats, epoch_ms, in_window

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
    """Alerts from the store's fraud_alerts table, opened read-only so a running job is undisturbed."""
    path = Path(path)
    if not path.is_file():
        raise AlertStoreMissingError(f"no alert database at {path}")
    # as_uri() percent-encodes the path, so names with '?' or '#' still open the right file.
    uri = f"{path.resolve().as_uri()}?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True)
    except sqlite3.Error as exc:
        raise EvaluationInputError(f"cannot open the alert database at {path}: {exc}") from exc
    try:
        conn.row_factory = sqlite3.Row
        try:
            found = conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='fraud_alerts'").fetchone()
        except sqlite3.DatabaseError as exc:
            raise EvaluationInputError(f"{path} is not a readable SQLite database: {exc}") from exc
        if found is None:
            raise AlertStoreMissingError(f"{path} has no fraud_alerts table")
        present = {row[1] for row in conn.execute("PRAGMA table_info(fraud_alerts)")}
        columns = [*_ALERT_COLUMNS, *(c for c in _RISK_COLUMNS if c in present)]
        rows = conn.execute(f"SELECT {', '.join(columns)} FROM fraud_alerts ORDER BY rowid")
        return load_alerts((dict(row) for row in rows), start_ms, end_ms, stats)
    finally:
        conn.close()
