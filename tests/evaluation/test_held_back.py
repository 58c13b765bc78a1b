"""Held-back alerts (alerts.min_risk): read from every source, scored as not delivered, counted."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import orjson

from fraudstream.cli.main import main
from fraudstream.evaluation import AlertRecord, evaluate, format_table, load_alerts, load_alerts_sqlite
from fraudstream.evaluation.output import report_from_json, report_to_json

from .streams import BASE, actor, alert, honest
from .test_loaders import ALERTS_TABLE

WITH_RISK = ALERTS_TABLE.replace(
    "alert_data TEXT\n", "alert_data TEXT, risk REAL, held_back INTEGER NOT NULL DEFAULT 0\n"
)


def _held(alert_type: str, tx: str, risk: float) -> AlertRecord:
    a = alert(alert_type, tx)
    return AlertRecord(a.alert_type, a.transaction_id, a.alert_id, risk=risk, held_back=True)


def test_held_back_alerts_are_scored_as_not_delivered_and_counted() -> None:
    events = honest(1000) + actor("hv1", "high_value", [10]) + actor("hv2", "high_value", [20])
    events += actor("ato", "account_takeover", [30, 40])
    alerts = [
        alert("HIGH_VALUE_FRAUD", "hv1-0"),
        _held("HIGH_VALUE_FRAUD", "hv2-0", 0.3),  # true, held back: hv2 not caught
        _held("HIGH_VALUE_FRAUD", "h5", 0.01),  # false, held back: no false alert delivered
        _held("HIGH_VALUE_FRAUD", "h6", 0.02),
        alert("ACCOUNT_TAKEOVER", "ato-1"),
    ]
    report = evaluate(events, alerts)
    hv = report.row("HIGH_VALUE_FRAUD")
    assert (hv.alerts, hv.true_alerts, hv.false_alerts) == (1, 1, 0)
    assert (hv.held_back, hv.held_back_true) == (3, 1)
    assert hv.actors_caught == 1 and hv.actor_recall == 0.5 and hv.false_per_1k_honest == 0
    ato = report.row("ACCOUNT_TAKEOVER")
    assert ato.target_pattern == "account_takeover" and ato.actor_recall == 1.0 and ato.held_back == 0
    assert ato.events_covered == 1  # the takeover's second order; its first came before the alert
    assert (report.counts.held_back_alerts, report.counts.held_back_true) == (3, 1)
    assert report.overall.alerts == 2 and report.overall.precision == 1.0
    assert report_from_json(report_to_json(report)) == report

    table = format_table(report)
    assert "Held-back alerts (stored, not delivered; not in the figures)" in table
    assert "Held back true" in table.splitlines()[-len(report.rows) - 2]
    without = format_table(evaluate(events, [alert("HIGH_VALUE_FRAUD", "hv1-0")]))
    assert "Held" not in without  # no model, no held-back alerts: the table as before


def test_risk_and_held_back_from_topic_json_and_jsonl_records() -> None:
    records = [
        {"alert_type": "VELOCITY_FRAUD", "transaction_id": "t1", "risk": 0.4, "held_back": True},
        {"alert_type": "VELOCITY_FRAUD", "transaction_id": "t2", "risk": None, "held_back": False},
        {"alert_type": "VELOCITY_FRAUD", "transaction_id": "t3", "held_back": "true", "risk": "0.2"},
        {"alert_type": "VELOCITY_FRAUD", "transaction_id": "t4", "risk": 7, "held_back": 0},  # risk out of range
        {"alert_type": "VELOCITY_FRAUD", "transaction_id": "t5"},  # from before the model
    ]
    got = [(a.risk, a.held_back) for a in load_alerts(records)]
    assert got == [(0.4, True), (None, False), (0.2, True), (None, False), (None, False)]


def test_store_with_and_without_the_risk_columns(tmp_path: Path) -> None:
    row = ("a1", "HIGH_VALUE_FRAUD", "u", "d", "t1", "HIGH", 2000.0, "m", BASE, BASE, "{}")
    old, new = tmp_path / "old.db", tmp_path / "new.db"
    with sqlite3.connect(old) as conn:
        conn.execute(ALERTS_TABLE)
        conn.execute("INSERT INTO fraud_alerts VALUES (NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
    with sqlite3.connect(new) as conn:
        conn.execute(WITH_RISK)
        conn.execute("INSERT INTO fraud_alerts VALUES (NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", (*row, 0.1, 1))
        conn.execute(
            "INSERT INTO fraud_alerts VALUES (NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", ("a2", *row[1:], 0.95, 0)
        )
    for conn in (sqlite3.connect(old), sqlite3.connect(new)):
        conn.close()
    assert [(a.risk, a.held_back) for a in load_alerts_sqlite(old)] == [(None, False)]
    assert [(a.risk, a.held_back) for a in load_alerts_sqlite(new)] == [(0.1, True), (0.95, False)]


def test_the_evaluate_command_reports_held_back_alerts(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    events = tmp_path / "events.jsonl"
    lines = [
        {"transaction_id": f"h{i}", "user_id": f"u{i}", "device_id": "d", "event_time": BASE + i} for i in range(50)
    ]
    lines.append({"transaction_id": "f1", "user_id": "x", "device_id": "d", "event_time": BASE + 99,
                  "behavior": "high_value", "fraud_actor": "hv-1"})  # fmt: skip
    events.write_bytes(b"\n".join(orjson.dumps(r) for r in lines))
    db = tmp_path / "alerts.db"
    with sqlite3.connect(db) as conn:
        conn.execute(WITH_RISK)
        for i, (tx, risk, held) in enumerate((("f1", 0.9, 0), ("h1", 0.01, 1), ("h2", 0.6, 0))):
            conn.execute(
                "INSERT INTO fraud_alerts VALUES (NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (f"a{i}", "HIGH_VALUE_FRAUD", "u", "d", tx, "HIGH", 2000.0, "m", BASE + i, BASE, "{}", risk, held),
            )
    conn.close()
    assert main(["evaluate", "--events", str(events), "--alerts", str(db), "--json"]) == 0
    data = orjson.loads(capsys.readouterr().out)
    assert data["counts"]["held_back_alerts"] == 1 and data["counts"]["held_back_true"] == 0
    hv = next(r for r in data["detectors"] if r["detector"] == "HIGH_VALUE_FRAUD")
    assert (hv["alerts"], hv["true_alerts"], hv["false_alerts"], hv["held_back"]) == (2, 1, 1, 1)
