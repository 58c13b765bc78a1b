"""Analysts' verdicts on alerts (triage): written by the dashboard, read by search and by
`evaluate --reviews`, on either database. A later verdict on an alert supersedes an earlier one; all are kept."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from fraudstream.store.db import Connection, Row

Verdict = Literal["confirmed_fraud", "false_positive"]
VERDICTS: tuple[Verdict, ...] = ("confirmed_fraud", "false_positive")
NOTE_MAX_CHARS = 2_000
REVIEWER_MAX_CHARS = 100


class UnknownAlert(LookupError):
    """No stored alert has that id."""


@dataclass(frozen=True)
class Review:
    alert_id: str
    verdict: Verdict
    note: str | None
    reviewer: str
    reviewed_at: int  # epoch milliseconds

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_review(verdict: str, note: str | None, reviewer: str) -> str | None:
    """Why a verdict cannot be stored, or None. Callers turn the reason into a 400."""
    if verdict not in VERDICTS:
        return f"verdict must be one of {', '.join(VERDICTS)}"
    if not reviewer or not reviewer.strip():
        return "a reviewer is required"
    if len(reviewer) > REVIEWER_MAX_CHARS:
        return f"reviewer longer than {REVIEWER_MAX_CHARS} characters"
    if note is not None and len(note) > NOTE_MAX_CHARS:
        return f"note longer than {NOTE_MAX_CHARS} characters"
    return None


def add_review(conn: Connection, review: Review) -> Review:
    """Store one verdict (its own transaction). Raises UnknownAlert or ValueError."""
    problem = check_review(review.verdict, review.note, review.reviewer)
    if problem is not None:
        raise ValueError(problem)
    with conn.transaction() as cur:
        found = cur.execute("SELECT 1 FROM fraud_alerts WHERE alert_id = ?", (review.alert_id,)).fetchone()
        if found is None:
            raise UnknownAlert(review.alert_id)
        cur.execute(
            "INSERT INTO alert_reviews (alert_id, verdict, note, reviewer, reviewed_at) VALUES (?, ?, ?, ?, ?)",
            (review.alert_id, review.verdict, review.note, review.reviewer.strip(), review.reviewed_at),
        )
    return review


def _review(row: Row) -> Review:
    return Review(row["alert_id"], row["verdict"], row["note"], row["reviewer"], row["reviewed_at"])


def history(conn: Connection, alert_id: str) -> list[Review]:
    """Every verdict on one alert, newest first."""
    rows = conn.execute(
        "SELECT alert_id, verdict, note, reviewer, reviewed_at FROM alert_reviews WHERE alert_id = ? ORDER BY id DESC",
        (alert_id,),
    )
    return [_review(r) for r in rows]


# The verdict in force per alert: the row with the highest id for that alert.
LATEST_SQL = (
    "SELECT r.alert_id, r.verdict, r.note, r.reviewer, r.reviewed_at FROM alert_reviews r"
    " WHERE r.id = (SELECT MAX(id) FROM alert_reviews WHERE alert_id = r.alert_id)"
)


def latest(conn: Connection, alert_ids: list[str] | None = None) -> dict[str, Review]:
    """alert id -> the verdict in force, for the given alerts (None = all reviewed alerts)."""
    if alert_ids is None:
        rows = conn.execute(LATEST_SQL)
    elif not alert_ids:
        return {}
    else:
        marks = ", ".join("?" * len(alert_ids))
        rows = conn.execute(f"{LATEST_SQL} AND r.alert_id IN ({marks})", alert_ids)
    return {r["alert_id"]: _review(r) for r in rows}


def reviewed_alerts(conn: Connection) -> list[tuple[str, Verdict]]:
    """(alert type, verdict in force) of every reviewed alert: what `evaluate --reviews` scores."""
    rows = conn.execute(
        f"SELECT a.alert_type, l.verdict FROM ({LATEST_SQL}) l JOIN fraud_alerts a ON a.alert_id = l.alert_id"
    )
    return [(r[0], r[1]) for r in rows]
