"""Analysts' verdicts in the store (SQLite and PostgreSQL): kept, superseded, refused when they
cannot be right."""

from __future__ import annotations

import sqlite3

import psycopg
import pytest

from fraudstream.detectors import HighValueDetector, VelocityDetector
from fraudstream.store import AlertStore
from fraudstream.store.reviews import (
    NOTE_MAX_CHARS,
    REVIEWER_MAX_CHARS,
    Review,
    UnknownAlert,
    add_review,
    history,
    latest,
    reviewed_alerts,
)
from tests.conftest import BASE, make_order


def _filled(store: AlertStore) -> AlertStore:
    velocity, high = VelocityDetector(threshold=0), HighValueDetector(threshold=0)
    store.write_batch(
        [velocity.make_alert(make_order(BASE + i, user=f"u_{i}"), "m", {}) for i in range(3)]
        + [high.make_alert(make_order(BASE + 10, user="u_9", amount=2000.0), "big", {})]
    )
    return store


@pytest.fixture
def store(settings):
    """Four alerts in a store of each kind (SQLite, PostgreSQL)."""
    store = _filled(AlertStore.open(settings))
    yield store
    store.close()


@pytest.fixture
def lite(tmp_path):
    """The same in a SQLite file, for what is checked before the database is asked."""
    store = _filled(AlertStore(tmp_path / "a.db"))
    yield store
    store.close()


def ids(store) -> list[str]:
    return [r[0] for r in store.conn.execute("SELECT alert_id FROM fraud_alerts ORDER BY id")]


def count(store) -> int:
    return store.conn.execute("SELECT COUNT(*) FROM alert_reviews").fetchone()[0]


def test_a_later_verdict_supersedes_and_the_history_is_kept(store):
    first = ids(store)[0]
    add_review(store.conn, Review(first, "confirmed_fraud", "same card as last week", "ana", BASE))
    add_review(store.conn, Review(first, "false_positive", "customer called: a party order", "raj", BASE + 5))
    # Newest first, both kept, the note and the reviewer with each.
    assert [(r.verdict, r.reviewer, r.note) for r in history(store.conn, first)] == [
        ("false_positive", "raj", "customer called: a party order"),
        ("confirmed_fraud", "ana", "same card as last week"),
    ]
    assert latest(store.conn)[first].verdict == "false_positive"
    assert reviewed_alerts(store.conn) == [("VELOCITY_FRAUD", "false_positive")]
    # Superseding back again: the row written last is in force, whatever its reviewed_at says.
    add_review(store.conn, Review(first, "confirmed_fraud", None, "ana", BASE - 1))
    assert latest(store.conn, [first])[first].verdict == "confirmed_fraud"
    assert len(history(store.conn, first)) == 3


def test_verdicts_in_force_per_alert_and_their_rules(store):
    a, b, c, hv = ids(store)
    add_review(store.conn, Review(a, "confirmed_fraud", None, "ana", 1))
    add_review(store.conn, Review(b, "false_positive", None, "ana", 2))
    add_review(store.conn, Review(hv, "false_positive", None, "ana", 3))
    add_review(store.conn, Review(hv, "confirmed_fraud", None, "raj", 4))
    assert sorted(reviewed_alerts(store.conn)) == [
        ("HIGH_VALUE_FRAUD", "confirmed_fraud"),
        ("VELOCITY_FRAUD", "confirmed_fraud"),
        ("VELOCITY_FRAUD", "false_positive"),
    ]
    assert set(latest(store.conn)) == {a, b, hv}
    assert set(latest(store.conn, [a, c])) == {a}  # c has no verdict
    assert latest(store.conn, []) == {}
    assert history(store.conn, c) == []


def test_a_verdict_on_an_unknown_alert_is_refused_and_nothing_is_stored(store):
    with pytest.raises(UnknownAlert):
        add_review(store.conn, Review("no-such-alert", "confirmed_fraud", None, "ana", 1))
    assert count(store) == 0


@pytest.mark.parametrize(
    ("verdict", "note", "reviewer", "reason"),
    [
        ("fraud", None, "ana", "verdict must be one of"),
        ("confirmed_fraud", None, "", "reviewer is required"),
        ("confirmed_fraud", None, "   ", "reviewer is required"),
        ("confirmed_fraud", None, "a" * (REVIEWER_MAX_CHARS + 1), "reviewer longer"),
        ("false_positive", "x" * (NOTE_MAX_CHARS + 1), "ana", "note longer"),
    ],
)
def test_invalid_verdicts_are_refused_with_a_reason(lite, verdict, note, reviewer, reason):
    with pytest.raises(ValueError, match=reason):
        add_review(lite.conn, Review(ids(lite)[0], verdict, note, reviewer, 1))
    assert count(lite) == 0


def test_limits_are_inclusive_and_the_reviewer_is_stored_trimmed(store):
    first = ids(store)[0]
    add_review(store.conn, Review(first, "false_positive", "x" * NOTE_MAX_CHARS, "  ana ", 1))
    (kept,) = history(store.conn, first)
    assert kept.reviewer == "ana" and len(kept.note) == NOTE_MAX_CHARS


def test_the_table_itself_refuses_an_unknown_verdict(store):
    """A writer that bypasses add_review still cannot store a verdict `evaluate` cannot score."""
    with pytest.raises((sqlite3.IntegrityError, psycopg.errors.CheckViolation)):
        store.conn.execute(
            "INSERT INTO alert_reviews (alert_id, verdict, reviewer, reviewed_at) VALUES (?, 'maybe', 'x', 1)",
            (ids(store)[0],),
        )
