"""Read-only queries behind `fraudstream query` and the dashboard, on SQLite or PostgreSQL
(`fraudstream.store.db.Connection`). Every argument is bound as a parameter.

Portable SQL only: booleans compared as `held_back = 1` (an INTEGER on both), `1 = 0` for
false, every selected column grouped or aggregated, tables and columns found through
`Connection.has_table` / `columns`."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from fraudstream.config import Settings
from fraudstream.store import db
from fraudstream.store.db import Connection, Location, StoreMissingError
from fraudstream.store.schema import check_version

__all__ = ["StoreMissingError", "open_read_only"]

COLUMNS = "alert_id, alert_type, severity, user_id, device_id, transaction_id, amount, event_time, detected_at, message"
# The learned model's columns; a store from before them (which a read-only reader cannot
# migrate) reads as alerts without a risk, none held back.
RISK_COLUMNS = "risk, held_back"
NO_RISK_COLUMNS = "NULL AS risk, 0 AS held_back"
# The rule version that raised each alert (schema version 4); a store from before it reads as
# alerts without one (NULL), as do alerts of runs without versioned rules.
VERSION_COLUMN = "rule_version"
NO_VERSION_COLUMN = "NULL AS rule_version"
_FALSE = "1 = 0"


def open_read_only(where: Path | Location | Settings, busy_timeout_ms: int = 2_000) -> Connection:
    """A connection that cannot write (SQLite `mode=ro`, PostgreSQL read-only transactions): a
    reader such as the dashboard never takes the write lock beside the copier, nor creates,
    migrates or switches the journal of a store.

    Raises StoreMissingError when the database or its fraud_alerts table does not exist yet,
    SchemaTooNew (one line) for a store migrated by a newer fraudstream, and StoreUnreachable
    for a PostgreSQL server that cannot be reached."""
    if isinstance(where, Settings):
        where = Location.of(where)
    elif not isinstance(where, Location):
        where = Location("sqlite", path=Path(where))
    conn = db.connect(where, read_only=True, busy_timeout_ms=busy_timeout_ms)
    try:
        if not conn.has_table("fraud_alerts"):
            raise StoreMissingError(f"{where} has no fraud_alerts table: run 'fraudstream run' first")
        check_version(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def _connection(conn: Connection | sqlite3.Connection) -> Connection:
    """A bare sqlite3 connection (a caller not ported yet) as a Connection."""
    return conn if isinstance(conn, Connection) else Connection(conn, "sqlite", Location("sqlite"))


def has_table(conn: Connection | Connection, name: str) -> bool:
    """Whether the store has `name` (a store from before triage has no alert_reviews)."""
    return _connection(conn).has_table(name)


def has_risk(conn: Connection | Connection) -> bool:
    """Whether the store has the risk columns (a store from before the model has not)."""
    return "risk" in _connection(conn).columns("fraud_alerts")


def has_rule_version(conn: Connection) -> bool:
    """Whether the store has the rule_version column (a store from before live rules has not)."""
    return VERSION_COLUMN in _connection(conn).columns("fraud_alerts")


def risk_columns(conn: Connection) -> str:
    """The columns later migrations added (risk, held_back, rule_version), or their stand-ins."""
    return _later_columns(has_risk(conn), has_rule_version(conn))


def _later_columns(risk: bool, version: bool) -> str:
    return f"{RISK_COLUMNS if risk else NO_RISK_COLUMNS}, {VERSION_COLUMN if version else NO_VERSION_COLUMN}"


def bytewise(conn: Connection) -> str:
    """A collation clause that sorts text by code point, as SQLite's default (BINARY) does:
    ties are broken the same way on both, whatever the PostgreSQL database's locale."""
    return ' COLLATE "C"' if getattr(conn, "dialect", "sqlite") == "postgresql" else ""


def _rows(conn: Connection, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    rows = [dict(r) for r in conn.execute(sql, params).fetchall()]
    for r in rows:
        if "held_back" in r:  # SQLite's 0/1 as what it means
            r["held_back"] = bool(r["held_back"])
    return rows


def stats(conn: Connection, now_ms: int, top: int = 5) -> dict[str, Any]:
    total = alert_count(conn)
    by_type = _rows(
        conn,
        "SELECT alert_type, COUNT(*) AS alerts FROM fraud_alerts GROUP BY alert_type"
        f" ORDER BY alerts DESC, alert_type{bytewise(conn)}",
    )
    by_severity = _rows(
        conn,
        "SELECT severity, COUNT(*) AS alerts FROM fraud_alerts GROUP BY severity"
        " ORDER BY CASE severity WHEN 'CRITICAL' THEN 0 WHEN 'HIGH' THEN 1 WHEN 'MEDIUM' THEN 2 ELSE 3 END",
    )
    top_users = _rows(
        conn,
        "SELECT user_id, COUNT(*) AS alerts FROM fraud_alerts WHERE user_id IS NOT NULL GROUP BY user_id"
        f" ORDER BY alerts DESC, user_id{bytewise(conn)} LIMIT ?",
        (top,),
    )
    last_hour = conn.execute(
        "SELECT COUNT(*) FROM fraud_alerts WHERE detected_at >= ?", (now_ms - 3_600_000,)
    ).fetchone()[0]
    dead = dead_letter_counts(conn)
    held = conn.execute("SELECT COUNT(*) FROM fraud_alerts WHERE held_back = 1").fetchone()[0] if has_risk(conn) else 0
    return {
        "total_alerts": total,
        "held_back": held,
        "by_type": by_type,
        "by_severity": by_severity,
        "top_users": top_users,
        "alerts_last_hour": last_hour,
        "dead_letters": dead,
    }


def _alerts(
    conn: Connection,
    where: str,
    params: tuple[Any, ...],
    limit: int,
    held_back: bool | None = None,
    min_risk: float | None = None,
    rule_version: int | None = None,
) -> list[dict[str, Any]]:
    """Alerts matching `where` (over `fraud_alerts a`), newest event first, with their risk
    and rule version. `held_back`: only held-back (True) or only other (False) alerts;
    `min_risk`: only alerts whose order's risk is at least that (an alert without a risk has
    none); `rule_version`: only alerts raised by that version of the rules."""
    risk, versioned = has_risk(conn), has_rule_version(conn)
    terms, extra = _risk_terms(risk, held_back, min_risk)
    more, more_params = _version_terms(versioned, rule_version)
    terms, extra = terms + more, extra + more_params
    if terms:
        where = (where + " AND " if where else "WHERE ") + " AND ".join(terms)
    sql = (
        f"SELECT {COLUMNS}, {_later_columns(risk, versioned)} FROM fraud_alerts a {where}"
        " ORDER BY event_time DESC, id DESC LIMIT ?"
    )
    return _rows(conn, sql, (*params, *extra, limit))


def _risk_terms(risk: bool, held_back: bool | None, min_risk: float | None) -> tuple[list[str], list[Any]]:
    """The conditions on the risk columns; on a store without them nothing has a risk or is held back."""
    terms: list[str] = []
    params: list[Any] = []
    if held_back is not None:
        if risk:
            terms.append("a.held_back = ?")
            params.append(int(held_back))
        elif held_back:
            terms.append(_FALSE)
    if min_risk is not None:
        if risk:
            terms.append("a.risk >= ?")
            params.append(min_risk)
        else:
            terms.append(_FALSE)
    return terms, params


def _version_terms(versioned: bool, rule_version: int | None) -> tuple[list[str], list[Any]]:
    """The condition on the rule version; on a store without the column no alert has one."""
    if rule_version is None:
        return [], []
    return (["a.rule_version = ?"], [rule_version]) if versioned else ([_FALSE], [])


def recent(conn: Connection, limit: int, **risk: Any) -> list[dict[str, Any]]:
    return _alerts(conn, "", (), limit, **risk)


def for_user(conn: Connection, user_id: str, limit: int, **risk: Any) -> list[dict[str, Any]]:
    return _alerts(conn, "WHERE user_id = ?", (user_id,), limit, **risk)


def high_priority(conn: Connection, limit: int, **risk: Any) -> list[dict[str, Any]]:
    return _alerts(conn, "WHERE severity IN ('HIGH', 'CRITICAL')", (), limit, **risk)


def of_type(conn: Connection, alert_type: str, limit: int, **risk: Any) -> list[dict[str, Any]]:
    return _alerts(conn, "WHERE alert_type = ?", (alert_type,), limit, **risk)


def dead_letters(conn: Connection, limit: int) -> list[dict[str, Any]]:
    return _rows(
        conn,
        "SELECT id, reason, detail, event_time, seen_at, raw FROM dead_letters ORDER BY id DESC LIMIT ?",
        (limit,),
    )


# --- The dashboard's queries: search with filters and paging, counts over time, related alerts.

SEVERITIES = ("LOW", "MEDIUM", "HIGH", "CRITICAL")
REVIEW_FILTERS = ("unreviewed", "reviewed", "confirmed_fraud", "false_positive")
# Every column of an alert row, for the dashboard (alert_data is its rule's details, JSON).
FULL_COLUMNS = f"id, {COLUMNS}, alert_data"
SORTS = ("time", "risk")  # the search's orders: newest event first, or riskiest first


def full_columns(conn: Connection) -> str:
    return f"{FULL_COLUMNS}, {risk_columns(conn)}"


# The verdict in force on alert `a`: the newest of its reviews (see store/reviews.py).
_VERDICT = "(SELECT r.verdict FROM alert_reviews r WHERE r.alert_id = a.alert_id ORDER BY r.id DESC LIMIT 1)"


@dataclass(frozen=True)
class AlertFilter:
    """What the search narrows alerts to; None = any. Times are event times, epoch ms,
    `since` inclusive and `until` exclusive."""

    user: str | None = None
    device: str | None = None
    alert_type: str | None = None
    severity: str | None = None
    since: int | None = None
    until: int | None = None
    review: str | None = None  # one of REVIEW_FILTERS
    max_id: int | None = None  # rows up to this id only: later pages of a search see its first page's rows
    held_back: bool | None = None  # only held-back alerts (True), or none of them (False)
    min_risk: float | None = None  # only alerts whose order's risk is at least this
    rule_version: int | None = None  # only alerts raised by this version of the rules

    def where(self, reviews: bool = True, risk: bool = True, versioned: bool = True) -> tuple[str, tuple[Any, ...]]:
        """The WHERE clause over `fraud_alerts a` and its bound parameters. `reviews`: whether
        the store has alert_reviews (without it, nothing is reviewed); `risk`: whether it has
        the risk columns (without them, nothing has a risk or is held back); `versioned`:
        whether it has rule_version (without it, no alert has a version)."""
        terms: list[str] = []
        params: list[Any] = []
        for column, value in (
            ("a.user_id", self.user),
            ("a.device_id", self.device),
            ("a.alert_type", self.alert_type),
            ("a.severity", self.severity),
        ):
            if value is not None:
                terms.append(f"{column} = ?")
                params.append(value)
        if self.since is not None:
            terms.append("a.event_time >= ?")
            params.append(self.since)
        if self.until is not None:
            terms.append("a.event_time < ?")
            params.append(self.until)
        if self.max_id is not None:
            terms.append("a.id <= ?")
            params.append(self.max_id)
        if self.review is not None and not reviews:
            if self.review != "unreviewed":
                terms.append(_FALSE)
        elif self.review == "unreviewed":
            terms.append("NOT EXISTS (SELECT 1 FROM alert_reviews r WHERE r.alert_id = a.alert_id)")
        elif self.review == "reviewed":
            terms.append("EXISTS (SELECT 1 FROM alert_reviews r WHERE r.alert_id = a.alert_id)")
        elif self.review is not None:
            terms.append(f"{_VERDICT} = ?")
            params.append(self.review)
        more, more_params = _risk_terms(risk, self.held_back, self.min_risk)
        terms += more
        params += more_params
        more, more_params = _version_terms(versioned, self.rule_version)
        terms += more
        params += more_params
        return ("WHERE " + " AND ".join(terms)) if terms else "", tuple(params)


@dataclass(frozen=True)
class Page:
    rows: list[dict[str, Any]]
    total: int
    max_id: int  # the newest row the page counted: give it back (AlertFilter.max_id) for the next pages


def search(conn: Connection, f: AlertFilter, page: int, page_size: int, sort: str = "time") -> Page:
    """One page (from 1) of the alerts that match, newest event first (`sort` "risk": riskiest
    first, alerts without a risk last, then newest first), and how many match.

    The count and the rows come from one read transaction (one snapshot), and rows stored after
    `f.max_id` (when given) are left out: alerts arriving meanwhile do not shift the pages."""
    if sort not in SORTS:
        raise ValueError(f"not a sort: {sort}")
    in_txn = conn.in_transaction
    if not in_txn:  # PostgreSQL's default (read committed) takes a snapshot per statement
        conn.execute("BEGIN" if conn.dialect == "sqlite" else "BEGIN ISOLATION LEVEL REPEATABLE READ")
    try:
        if f.max_id is None:
            f = replace(f, max_id=last_id(conn))
        risk, versioned = has_risk(conn), has_rule_version(conn)
        where, params = f.where(has_table(conn, "alert_reviews"), risk, versioned)
        total = conn.execute(f"SELECT COUNT(*) FROM fraud_alerts a {where}", params).fetchone()[0]
        order = "a.event_time DESC, a.id DESC"
        if sort == "risk" and risk:
            order = "a.risk IS NULL, a.risk DESC, " + order
        rows = _rows(
            conn,
            f"SELECT {FULL_COLUMNS}, {_later_columns(risk, versioned)} FROM fraud_alerts a {where}"
            f" ORDER BY {order} LIMIT ? OFFSET ?",
            (*params, page_size, (page - 1) * page_size),
        )
    finally:
        if not in_txn:
            conn.execute("COMMIT")
    assert f.max_id is not None
    return Page(rows, total, f.max_id)


def alert(conn: Connection, alert_id: str) -> dict[str, Any] | None:
    found = _rows(conn, f"SELECT {full_columns(conn)} FROM fraud_alerts WHERE alert_id = ?", (alert_id,))
    return found[0] if found else None


def earlier(conn: Connection, column: str, value: str | None, row: dict[str, Any], limit: int) -> list[dict]:
    """Alerts of the same user or device (`column`) before `row` (by event time, then id), newest first."""
    if column not in ("user_id", "device_id"):
        raise ValueError(f"not a key column: {column}")
    if value is None:
        return []
    return _rows(
        conn,
        f"SELECT {full_columns(conn)} FROM fraud_alerts WHERE {column} = ? AND id != ?"
        " AND (event_time < ? OR (event_time = ? AND id < ?)) ORDER BY event_time DESC, id DESC LIMIT ?",
        (value, row["id"], row["event_time"], row["event_time"], row["id"], limit),
    )


def after_id(conn: Connection, last_id: int, limit: int) -> list[dict[str, Any]]:
    """Alerts stored after row `last_id`, oldest first: what the live feed has not shown yet."""
    sql = f"SELECT {full_columns(conn)} FROM fraud_alerts WHERE id > ? ORDER BY id LIMIT ?"
    return _rows(conn, sql, (last_id, limit))


def last_id(conn: Connection) -> int:
    return conn.execute("SELECT COALESCE(MAX(id), 0) FROM fraud_alerts").fetchone()[0]


def alert_count(conn: Connection) -> int:
    return conn.execute("SELECT COUNT(*) FROM fraud_alerts").fetchone()[0]


def time_range(conn: Connection) -> tuple[int | None, int | None]:
    """The first and last event time in the store (None, None when it is empty)."""
    row = conn.execute("SELECT MIN(event_time), MAX(event_time) FROM fraud_alerts").fetchone()
    return row[0], row[1]


# Bucket widths the charts use, ms: the smallest that gives at most `target` buckets.
BUCKETS_MS = (1_000, 5_000, 10_000, 30_000, 60_000, 300_000, 600_000, 1_800_000, 3_600_000, 10_800_000,
              21_600_000, 43_200_000, 86_400_000, 604_800_000)  # fmt: skip


def choose_bucket(span_ms: int, target: int = 60) -> int:
    for width in BUCKETS_MS:
        if span_ms / width <= target:
            return width
    return BUCKETS_MS[-1]


def counts_over_time(conn: Connection, column: str, bucket_ms: int, since: int, until: int) -> list[dict]:
    """(bucket start, value of `column`, alerts) per event-time bucket in [since, until)."""
    if column not in ("alert_type", "severity"):
        raise ValueError(f"not a countable column: {column}")
    return _rows(
        conn,
        f"SELECT (event_time / ?) * ? AS bucket, {column} AS key, COUNT(*) AS alerts FROM fraud_alerts"
        f" WHERE event_time >= ? AND event_time < ? GROUP BY bucket, {column} ORDER BY bucket, {column}",
        (bucket_ms, bucket_ms, since, until),
    )


def top_keys(conn: Connection, column: str, top: int, since: int | None, until: int | None) -> list[dict]:
    """The users or devices (`column`) with the most alerts in [since, until), most first."""
    if column not in ("user_id", "device_id"):
        raise ValueError(f"not a key column: {column}")
    where, params = AlertFilter(since=since, until=until).where()
    # No NULL key (an alert without a device): the databases sort NULL differently, and it is no one.
    where = f"{where} AND a.{column} IS NOT NULL" if where else f"WHERE a.{column} IS NOT NULL"
    return _rows(
        conn,
        f"SELECT a.{column} AS key, COUNT(*) AS alerts FROM fraud_alerts a {where}"
        f" GROUP BY a.{column} ORDER BY alerts DESC, a.{column}{bytewise(conn)} LIMIT ?",
        (*params, top),
    )


def dead_letter_counts(conn: Connection) -> list[dict[str, Any]]:
    return _rows(conn, "SELECT reason, COUNT(*) AS records FROM dead_letters GROUP BY reason ORDER BY records DESC")


def source_positions(conn: Connection) -> list[dict[str, Any]]:
    """Where the store's copier is in each Kafka topic partition (the next offset it copies)."""
    return _rows(conn, "SELECT topic, partition, next_offset FROM source_offsets ORDER BY topic, partition")


def timeline(conn: Connection, bucket_ms: int, since: int, until: int) -> dict[str, Any]:
    """Alerts per event-time bucket in [since, until), by type and by severity: the bucket
    starts, and per type (severity) one count per bucket, zeros included (what a chart draws)."""
    start = since // bucket_ms * bucket_ms
    starts = list(range(start, until, bucket_ms))
    out: dict[str, Any] = {"bucket_ms": bucket_ms, "buckets": starts}
    for column, key in (("alert_type", "by_type"), ("severity", "by_severity")):
        series: dict[str, list[int]] = {}
        for row in counts_over_time(conn, column, bucket_ms, since, until):
            series.setdefault(row["key"], [0] * len(starts))[(row["bucket"] - start) // bucket_ms] += row["alerts"]
        out[key] = series
    return out
