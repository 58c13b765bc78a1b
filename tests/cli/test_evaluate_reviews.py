"""`fraudstream evaluate --reviews`: the rules scored from analysts' verdicts in the store; and
`evaluate` and `evaluate --reviews` on a PostgreSQL store (store.url), the same as on SQLite."""

from __future__ import annotations

from collections import Counter

import orjson
import pytest

from fraudstream.cli.main import main
from fraudstream.config import Settings, load_settings, redact_url
from fraudstream.detectors import HighValueDetector, VelocityDetector
from fraudstream.model.train import read_verdicts
from fraudstream.store import AlertStore
from fraudstream.store.db import Location
from fraudstream.store.reviews import Review, add_review
from tests.conftest import BASE, make_order


def run_cli(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def make_store(path, reviewed: int = 0):
    """20 velocity alerts and 5 high-value ones; the first `reviewed` velocity alerts get verdicts:
    every fourth a false positive, the rest confirmed, each after an earlier opposite verdict.
    `path`: a SQLite file, or settings (their store: PostgreSQL with store.url)."""
    store = AlertStore.open(path) if isinstance(path, Settings) else AlertStore(path)
    velocity, high = VelocityDetector(threshold=0), HighValueDetector(threshold=0)
    alerts = [velocity.make_alert(make_order(BASE + i, user=f"u_{i}"), "m", {}) for i in range(20)]
    alerts += [high.make_alert(make_order(BASE + 100 + i, user=f"w_{i}", amount=2000.0), "big", {}) for i in range(5)]
    store.write_batch(alerts)
    for i, alert in enumerate(alerts[:reviewed]):
        final = "false_positive" if i % 4 == 3 else "confirmed_fraud"
        first = "confirmed_fraud" if final == "false_positive" else "false_positive"
        add_review(store.conn, Review(alert.alert_id, first, None, "ana", BASE))
        add_review(store.conn, Review(alert.alert_id, final, "second look", "raj", BASE + 1))
    store.close()
    return path


def test_precision_from_verdicts_as_a_table_and_as_json(tmp_path, capsys):
    make_store(tmp_path / "fraud_alerts.db", reviewed=8)  # 6 confirmed, 2 false positives in force
    code, out, err = run_cli(capsys, "--data-dir", str(tmp_path), "evaluate", "--reviews")
    assert code == 0, err
    velocity = next(line for line in out.splitlines() if line.startswith("VELOCITY_FRAUD"))
    assert velocity.split()[:7] == ["VELOCITY_FRAUD", "20", "8", "40.0%", "6", "2", "75.0%"]
    high = next(line for line in out.splitlines() if line.startswith("HIGH_VALUE_FRAUD"))
    assert high.split()[1:3] == ["5", "0"] and "n/a" in high
    assert "no recall" in out
    saved = tmp_path / "out" / "reviews.json"
    code, out, err = run_cli(
        capsys, "evaluate", "--reviews", "--json", "--db", str(tmp_path / "fraud_alerts.db"), "--json-out", str(saved)
    )
    assert code == 0, err
    data = orjson.loads(out)
    assert orjson.loads(saved.read_bytes()) == data
    rows = {r["detector"]: r for r in data["detectors"]}
    assert (rows["VELOCITY_FRAUD"]["confirmed"], rows["VELOCITY_FRAUD"]["false_positives"]) == (6, 2)
    assert rows["pooled"]["alerts"] == 25 and rows["pooled"]["reviewed"] == 8
    assert 0 < rows["pooled"]["ci_low"] < 0.75 < rows["pooled"]["ci_high"] < 1


def test_no_verdicts_is_one_line_that_says_how_to_review(tmp_path, capsys):
    make_store(tmp_path / "fraud_alerts.db")
    code, out, err = run_cli(capsys, "--data-dir", str(tmp_path), "evaluate", "--reviews")
    assert code == 0, err
    assert out.strip().splitlines() == [
        f"No reviewed alerts in {tmp_path / 'fraud_alerts.db'} (25 alerts stored): open the dashboard "
        "('fraudstream dashboard'), mark alerts as confirmed fraud or false positive, then run this again."
    ]
    code, out, err = run_cli(capsys, "--data-dir", str(tmp_path), "evaluate", "--reviews", "--json")
    assert code == 0 and "No reviewed alerts" in err  # stdout stays JSON for scripts
    assert orjson.loads(out)["detectors"][-1]["reviewed"] == 0


def test_a_store_from_before_triage_has_no_reviews(tmp_path, capsys):
    path = make_store(tmp_path / "old.db")
    store = AlertStore(path)
    store.conn.execute("DROP TABLE alert_reviews")
    store.close()
    code, out, err = run_cli(capsys, "evaluate", "--reviews", "--db", str(path))
    assert code == 0, err
    assert out.startswith("No reviewed alerts") and "Traceback" not in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["evaluate", "--reviews"], "no alert database at"),
        (["evaluate", "--reviews", "--events", "e.jsonl", "--from", "2026-01-01"], "--events, --from: not used with"),
        (["evaluate", "--db", "x.db"], "--db goes with --reviews"),
        (
            ["--set", "store.url=postgresql://ana:pw-9z@127.0.0.1:1/alerts", "evaluate", "--reviews"],
            "cannot connect to the PostgreSQL store postgresql://ana:***@127.0.0.1:1/alerts",
        ),
    ],
)
def test_mistakes_are_one_line(tmp_path, capsys, args, message):
    code, out, err = run_cli(capsys, "--data-dir", str(tmp_path / "empty"), *args)
    assert code != 0 and out == ""
    assert message in err and len(err.strip().splitlines()) == 1 and "pw-9z" not in err


def test_evaluate_and_its_reviews_on_a_postgresql_store_as_on_sqlite(tmp_path, postgres_url, capsys):
    settings = load_settings(flags={"data_dir": str(tmp_path), "store.url": postgres_url}, environ={})
    make_store(settings, reviewed=8)
    sqlite = make_store(tmp_path / "same.db", reviewed=8)
    pg = ["--data-dir", str(tmp_path), "--set", f"store.url={postgres_url}"]
    code, out, err = run_cli(capsys, *pg, "evaluate", "--reviews", "--json")
    assert code == 0, err
    on_pg = orjson.loads(out)
    assert f"verdicts in {redact_url(postgres_url)}" in err and postgres_url not in err  # its password masked
    rows = {r["detector"]: r for r in on_pg["detectors"]}
    assert (rows["VELOCITY_FRAUD"]["confirmed"], rows["VELOCITY_FRAUD"]["false_positives"]) == (6, 2)
    assert rows["pooled"]["alerts"] == 25 and rows["pooled"]["reviewed"] == 8
    assert run_cli(capsys, "evaluate", "--reviews", "--json", "--db", str(sqlite))[1] == out  # --db: that file
    # `train --labels reviews` reads the same verdicts from either store.
    verdicts, alerted = read_verdicts(Location.of(settings))
    assert (verdicts, alerted) == read_verdicts(sqlite) and len(alerted) == 25
    assert sorted(Counter(verdicts.values()).items()) == [("confirmed_fraud", 6), ("false_positive", 2)]
    # Against labels: the first ten velocity users are a ring, the rest honest.
    events = tmp_path / "events.jsonl"
    lines = [
        {"transaction_id": make_order(BASE + i, user=f"u_{i}").transaction_id, "user_id": f"u_{i}",
         "device_id": "d_1", "event_time": BASE + i, **({"behavior": "velocity", "fraud_actor": "ring-1"} if i < 10 else {})}
        for i in range(20)
    ]  # fmt: skip
    events.write_bytes(b"\n".join(orjson.dumps(r) for r in lines))
    code, out, err = run_cli(capsys, *pg, "evaluate", "--events", str(events), "--json")
    assert code == 0, err
    scored = orjson.loads(out)
    velocity = next(r for r in scored["detectors"] if r["detector"] == "VELOCITY_FRAUD")
    assert (velocity["alerts"], velocity["true_alerts"], velocity["false_alerts"]) == (20, 10, 10)
    for alerts in (str(sqlite), postgres_url):  # the same report from the SQLite twin, and --alerts URL
        code, again, err = run_cli(capsys, "evaluate", "--events", str(events), "--alerts", alerts, "--json")
        assert code == 0 and again == out, err
