"""Read-only queries behind `fraudstream query`. Every argument is bound as a parameter."""

from __future__ import annotations

import sqlite3
from typing import Any

COLUMNS = "alert_id, alert_type, severity, user_id, device_id, transaction_id, amount, event_time, detected_at, message"


def _rows(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    return [dict(r) for r in conn.execute(sql, params).fetchall()]


def stats(conn: sqlite3.Connection, now_ms: int, top: int = 5) -> dict[str, Any]:
    total = conn.execute("SELECT COUNT(*) FROM fraud_alerts").fetchone()[0]
    by_type = _rows(
        conn,
        "SELECT alert_type, COUNT(*) AS alerts FROM fraud_alerts GROUP BY alert_type ORDER BY alerts DESC, alert_type",
    )
    by_severity = _rows(
        conn,
        "SELECT severity, COUNT(*) AS alerts FROM fraud_alerts GROUP BY severity"
        " ORDER BY CASE severity WHEN 'CRITICAL' THEN 0 WHEN 'HIGH' THEN 1 WHEN 'MEDIUM' THEN 2 ELSE 3 END",
    )
    top_users = _rows(
        conn,
        "SELECT user_id, COUNT(*) AS alerts FROM fraud_alerts GROUP BY user_id ORDER BY alerts DESC, user_id LIMIT ?",
        (top,),
    )
    last_hour = conn.execute(
        "SELECT COUNT(*) FROM fraud_alerts WHERE detected_at >= ?", (now_ms - 3_600_000,)
    ).fetchone()[0]
    dead = _rows(conn, "SELECT reason, COUNT(*) AS records FROM dead_letters GROUP BY reason ORDER BY records DESC")
    return {
        "total_alerts": total,
        "by_type": by_type,
        "by_severity": by_severity,
        "top_users": top_users,
        "alerts_last_hour": last_hour,
        "dead_letters": dead,
    }


def _alerts(conn: sqlite3.Connection, where: str, params: tuple[Any, ...], limit: int) -> list[dict[str, Any]]:
    sql = f"SELECT {COLUMNS} FROM fraud_alerts {where} ORDER BY event_time DESC, id DESC LIMIT ?"
    return _rows(conn, sql, (*params, limit))


def recent(conn: sqlite3.Connection, limit: int) -> list[dict[str, Any]]:
    return _alerts(conn, "", (), limit)


def for_user(conn: sqlite3.Connection, user_id: str, limit: int) -> list[dict[str, Any]]:
    return _alerts(conn, "WHERE user_id = ?", (user_id,), limit)


def high_priority(conn: sqlite3.Connection, limit: int) -> list[dict[str, Any]]:
    return _alerts(conn, "WHERE severity IN ('HIGH', 'CRITICAL')", (), limit)


def of_type(conn: sqlite3.Connection, alert_type: str, limit: int) -> list[dict[str, Any]]:
    return _alerts(conn, "WHERE alert_type = ?", (alert_type,), limit)


def dead_letters(conn: sqlite3.Connection, limit: int) -> list[dict[str, Any]]:
    return _rows(
        conn,
        "SELECT id, reason, detail, event_time, seen_at, raw FROM dead_letters ORDER BY id DESC LIMIT ?",
        (limit,),
    )
