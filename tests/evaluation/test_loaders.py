from __future__ import annotations

import sqlite3
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fraudstream.evaluation import (
    AlertRecord,
    AlertStoreMissingError,
    EvaluationInputError,
    LabelledEvent,
    LoadStats,
    evaluate,
    iter_alerts,
    iter_labelled,
    load_alerts_sqlite,
    load_jsonl,
    load_parquet,
)

from .streams import BASE, SEC

HOUR = 3600 * SEC

# The store's table as the brief gives it (not imported from the store, so a change there shows).
ALERTS_TABLE = """
CREATE TABLE fraud_alerts (
    id INTEGER PRIMARY KEY, alert_id TEXT, alert_type TEXT, user_id TEXT, device_id TEXT, transaction_id TEXT,
    severity, amount REAL, message, event_time INTEGER, detected_at INTEGER, alert_data TEXT
)
"""


def order(tx: str, t: int, behavior: str | None = None, actor: str | None = None, **extra) -> dict:
    record = {
        "transaction_id": tx,
        "user_id": f"u-{tx}",
        "device_id": f"d-{tx}",
        "restaurant_id": "r1",
        "amount": 250.0,
        "city": "Pune",
        "payment_method": "UPI",
        "event_time": t,
        **extra,
    }
    if behavior is not None:
        record["behavior"] = behavior
    if actor is not None:
        record["fraud_actor"] = actor
    return record


# ---------------------------------------------------------------- iter_labelled


def test_iter_labelled_reads_labels_and_counts_rejects():
    records = [
        order("t1", BASE),  # no behavior: honest
        order("t2", BASE + 1, "normal"),
        order("t3", BASE + 2, "velocity_burst", "ep-7"),
        {
            "order_id": "legacy-1",
            "user_id": "u",
            "device_id": "d",
            "event_time": BASE + 3,
            "behavior": "high_value",
            "fraud_actor": "ep-8",
        },  # fmt: skip
        {"transaction_id": "no-time", "user_id": "u"},  # invalid: no event_time
        ["not", "an", "object"],  # unreadable
        None,  # what a loader passes for a line it could not decode
    ]
    stats = LoadStats()
    events = list(iter_labelled(records, stats=stats))

    assert [e.transaction_id for e in events] == ["t1", "t2", "t3", "legacy-1"]
    assert [(e.pattern, e.actor) for e in events] == [
        (None, None),
        (None, None),
        ("velocity_burst", "ep-7"),
        ("high_value", "ep-8"),
    ]
    assert (stats.records, stats.kept, stats.invalid, stats.unreadable, stats.missing_actor) == (7, 4, 1, 2, 0)


def test_iter_labelled_takes_the_actor_from_the_account_when_fraud_actor_is_missing():
    records = [
        order("t1", BASE, "velocity_burst") | {"user_id": "u9", "device_id": "d1"},
        order("t2", BASE, "account_farm") | {"user_id": "u1", "device_id": "d9"},
        order("t3", BASE, "account_farm") | {"user_id": "u2", "device_id": "d9"},
    ]
    stats = LoadStats()
    events = list(iter_labelled(records, stats=stats))
    assert [e.actor for e in events] == ["velocity_burst:u9", "account_farm:d9", "account_farm:d9"]
    assert stats.missing_actor == 3
    assert evaluate(events, []).counts.actors == 2  # the farm's two accounts are one actor


def test_iter_labelled_time_filter_is_start_inclusive_end_exclusive():
    records = [order(f"t{i}", BASE + i * SEC) for i in range(5)]
    stats = LoadStats()
    events = list(iter_labelled(records, start_ms=BASE + SEC, end_ms=BASE + 3 * SEC, stats=stats))
    assert [e.transaction_id for e in events] == ["t1", "t2"]
    assert stats.outside_window == 3


# ---------------------------------------------------------------- JSON lines


def test_jsonl_loader_skips_blank_lines_and_counts_bad_ones(tmp_path):
    path = tmp_path / "orders.jsonl"
    lines = [
        orjson.dumps(order("t1", BASE)).decode(),
        "",
        "   ",
        "{this is not json",
        orjson.dumps(order("t2", BASE + SEC, "city_hopping", "ep-1")).decode(),
        "42",
        orjson.dumps(order("t3", BASE + 2 * SEC, "city_hopping", "ep-1")).decode(),
    ]
    path.write_text("\n".join(lines) + "\n")

    stats = LoadStats()
    events = load_jsonl(path, stats=stats)

    assert [e.transaction_id for e in events] == ["t1", "t2", "t3"]
    assert events[1] == LabelledEvent("t2", "u-t2", "d-t2", BASE + SEC, "city_hopping", "ep-1")
    assert (stats.records, stats.unreadable, stats.kept) == (5, 2, 3)


def test_jsonl_loader_time_filter(tmp_path):
    path = tmp_path / "orders.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps(order(f"t{i}", BASE + i * HOUR)) for i in range(6)))
    events = load_jsonl(path, start_ms=BASE + 2 * HOUR, end_ms=BASE + 4 * HOUR)
    assert [e.transaction_id for e in events] == ["t2", "t3"]


def test_jsonl_loader_missing_file(tmp_path):
    with pytest.raises(EvaluationInputError, match="no labelled-events file"):
        load_jsonl(tmp_path / "nope.jsonl")


# ---------------------------------------------------------------- Parquet archive


ARCHIVE_SCHEMA = pa.schema(
    [
        ("transaction_id", pa.string()),
        ("user_id", pa.string()),
        ("device_id", pa.string()),
        ("restaurant_id", pa.string()),
        ("amount", pa.float64()),
        ("city", pa.string()),
        ("payment_method", pa.string()),
        ("event_time", pa.int64()),
        ("behavior", pa.string()),
        ("raw", pa.string()),
    ]
)


def write_archive(root: Path, records: list[dict]) -> None:
    """Lay records out as the Flink archive does: hive partitions by UTC day and hour, part files
    without a suffix, `_SUCCESS` markers and a hidden in-progress file that is not valid Parquet."""
    by_partition: dict[tuple[int, int], list[dict]] = {}
    for r in records:
        hour = (r["event_time"] - BASE) // HOUR
        by_partition.setdefault((hour // 24, hour % 24), []).append(r)
    for (day, hour), rows in sorted(by_partition.items()):
        part_dir = root / f"dt=2026-01-{day + 1:02d}" / f"hour={hour:02d}"
        part_dir.mkdir(parents=True)
        table = pa.Table.from_pylist(
            [{name: r.get(name) for name in ARCHIVE_SCHEMA.names if name != "raw"} | {"raw": r["raw"]} for r in rows],
            schema=ARCHIVE_SCHEMA,
        )
        pq.write_table(table, part_dir / "part-3f2a-0-0")
        (part_dir / "_SUCCESS").write_bytes(b"")
        (part_dir / ".part-3f2a-0-1.inprogress.8c1d").write_bytes(b"PAR1 half-written garbage")
    (root / "_SUCCESS").write_bytes(b"")


def archived(record: dict) -> dict:
    """A row of the archive: the typed columns, and the original JSON in `raw`."""
    return {**record, "raw": orjson.dumps(record).decode()}


@pytest.fixture
def archive(tmp_path) -> Path:
    root = tmp_path / "archive"
    legacy = {"order_id": "legacy-9", "user_id": "u-l", "device_id": "d-l", "event_time": BASE + 2 * HOUR,
              "amount": 9000.0, "behavior": "high_value", "fraud_actor": "ep-hv"}  # fmt: skip
    records = [
        archived(order("t0", BASE + 10 * SEC)),
        archived(order("t1", BASE + HOUR + 5 * SEC, "velocity_burst", "ep-v")),
        archived(order("t2", BASE + HOUR + 9 * SEC, "velocity_burst", "ep-v", device_type="android")),
        # The job renamed order_id to transaction_id in the column; raw keeps the producer's record.
        {**legacy, "transaction_id": "legacy-9", "raw": orjson.dumps(legacy).decode()},
        archived(order("t4", BASE + 25 * HOUR, "normal")),  # next day
        {**order("t5", BASE + 25 * HOUR + SEC, "city_hopping"), "raw": "{broken"},  # labels from the columns
    ]
    write_archive(root, records)
    return root


def test_parquet_loader_reads_partitions_and_labels_from_raw(archive):
    stats = LoadStats()
    events = sorted(load_parquet(archive, stats=stats), key=lambda e: e.event_time)

    assert [e.transaction_id for e in events] == ["t0", "t1", "t2", "legacy-9", "t4", "t5"]
    assert [(e.pattern, e.actor) for e in events] == [
        (None, None),
        ("velocity_burst", "ep-v"),
        ("velocity_burst", "ep-v"),
        ("high_value", "ep-hv"),
        (None, None),
        ("city_hopping", "city_hopping:u-t5"),  # raw unreadable: actor derived from the account
    ]
    assert events[1].event_time == BASE + HOUR + 5 * SEC
    assert (stats.kept, stats.missing_actor, stats.unreadable) == (6, 1, 0)


def test_parquet_loader_ignores_success_and_hidden_inprogress_files(archive):
    import pyarrow.dataset as ds

    hidden = list(archive.rglob(".part-*inprogress*"))
    markers = list(archive.rglob("_SUCCESS"))
    assert hidden and markers
    # The in-progress file is not valid Parquet: reading it would fail. pyarrow must skip it by name.
    with pytest.raises(pa.ArrowInvalid):
        pq.read_table(hidden[0])
    files = ds.dataset(archive, format="parquet", partitioning="hive").files
    assert files and all(Path(f).name.startswith("part-") for f in files)
    assert len(load_parquet(archive)) == 6


def test_parquet_loader_time_filter(archive):
    events = load_parquet(archive, start_ms=BASE + HOUR, end_ms=BASE + 2 * HOUR)
    assert sorted(e.transaction_id for e in events) == ["t1", "t2"]
    assert sorted(e.transaction_id for e in load_parquet(archive, start_ms=BASE + 24 * HOUR)) == ["t4", "t5"]
    assert sorted(e.transaction_id for e in load_parquet(archive, end_ms=BASE + HOUR + 9 * SEC)) == ["t0", "t1"]


def test_parquet_loader_given_the_archive_root_reads_only_orders(tmp_path):
    root = tmp_path / "archive"
    write_archive(root / "orders", [archived(order("t1", BASE, "high_value", "ep-1"))])
    dead = root / "dead_letters" / "dt=2026-01-01" / "hour=00"
    dead.mkdir(parents=True)
    pq.write_table(
        pa.table({"reason": ["late"], "raw": ["{}"], "seen_at": pa.array([BASE], pa.int64())}), dead / "part-0"
    )
    assert [(e.transaction_id, e.actor) for e in load_parquet(root)] == [("t1", "ep-1")]


def test_parquet_loader_missing_or_empty_directory(tmp_path):
    with pytest.raises(EvaluationInputError, match="no Parquet archive"):
        load_parquet(tmp_path / "nope")
    empty = tmp_path / "empty"
    (empty / "dt=2026-01-01" / "hour=00").mkdir(parents=True)
    (empty / "_SUCCESS").write_bytes(b"")
    assert load_parquet(empty) == []


# ---------------------------------------------------------------- alerts


def make_store(path: Path, rows: list[tuple]) -> None:
    conn = sqlite3.connect(path)
    conn.execute(ALERTS_TABLE)
    conn.executemany("INSERT INTO fraud_alerts VALUES (NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    conn.commit()
    conn.close()


def alert_row(alert_id: str, alert_type: str, tx: str | None, t: int) -> tuple:
    return (alert_id, alert_type, "u", "d", tx, "HIGH", 100.0, "msg", t, t + 700, "{}")


def test_sqlite_loader_reads_alerts(tmp_path):
    db = tmp_path / "alerts.db"
    make_store(
        db, [alert_row("a1", "VELOCITY_FRAUD", "t1", BASE), alert_row("a2", "GEO_ANOMALY_FRAUD", None, BASE + 1)]
    )
    before = db.read_bytes()

    alerts = load_alerts_sqlite(db)

    assert alerts == [
        AlertRecord("VELOCITY_FRAUD", "t1", "a1", "u", "d", BASE, BASE + 700),
        AlertRecord("GEO_ANOMALY_FRAUD", None, "a2", "u", "d", BASE + 1, BASE + 701),
    ]
    assert db.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alerts.db"]  # no journal or WAL files left


def test_sqlite_loader_time_filter(tmp_path):
    db = tmp_path / "alerts.db"
    make_store(db, [alert_row(f"a{i}", "VELOCITY_FRAUD", f"t{i}", BASE + i * HOUR) for i in range(4)])
    stats = LoadStats()
    alerts = load_alerts_sqlite(db, start_ms=BASE + HOUR, end_ms=BASE + 3 * HOUR, stats=stats)
    assert [a.alert_id for a in alerts] == ["a1", "a2"]
    assert stats.outside_window == 2


def test_sqlite_loader_missing_file_or_table(tmp_path):
    missing = tmp_path / "none.db"
    with pytest.raises(AlertStoreMissingError, match="no alert database"):
        load_alerts_sqlite(missing)
    assert not missing.exists()  # opening read-only must not create it
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE dead_letters (id INTEGER)")
    conn.close()
    with pytest.raises(AlertStoreMissingError, match="no fraud_alerts table"):
        load_alerts_sqlite(other)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(EvaluationInputError):
        load_alerts_sqlite(junk)


def test_sqlite_loader_path_with_uri_characters(tmp_path):
    odd = tmp_path / "run #1?x=y"
    odd.mkdir()
    db = odd / "alerts.db"
    make_store(db, [alert_row("a1", "HIGH_VALUE_FRAUD", "t1", BASE)])
    assert [a.alert_id for a in load_alerts_sqlite(db)] == ["a1"]


def test_alert_dicts_from_a_topic():
    records = [
        {
            "alert_id": "a1",
            "alert_type": "VELOCITY_FRAUD",
            "transaction_id": "t1",
            "event_time": BASE,
            "details": {"count": 5},
            "key": "u1",
        },  # fmt: skip
        {"alert_id": "a2", "transaction_id": "t2"},  # invalid: no alert_type
        "garbage",  # unreadable
        {"alert_id": "a3", "alert_type": "HIGH_VALUE_FRAUD", "transaction_id": "t3", "event_time": BASE + HOUR},
    ]
    stats = LoadStats()
    alerts = list(iter_alerts(records, end_ms=BASE + HOUR, stats=stats))
    assert [(a.alert_id, a.alert_type, a.transaction_id) for a in alerts] == [("a1", "VELOCITY_FRAUD", "t1")]
    assert (stats.records, stats.invalid, stats.unreadable, stats.outside_window) == (4, 1, 1, 1)


def test_jsonl_and_sqlite_end_to_end(tmp_path):
    events_path = tmp_path / "orders.jsonl"
    records = [order(f"h{i}", BASE + i * SEC) for i in range(8)]
    records += [order(f"v{i}", BASE + (100 + i) * SEC, "velocity_burst", "ep-1") for i in range(4)]
    records += [order(f"f{i}", BASE + (200 + i) * SEC, "account_farm", "ep-2") for i in range(2)]
    events_path.write_bytes(b"\n".join(orjson.dumps(r) for r in records) + b"\nnot json\n")
    db = tmp_path / "alerts.db"
    make_store(
        db,
        [
            alert_row("a1", "VELOCITY_FRAUD", "v2", BASE + 102 * SEC),
            alert_row("a2", "VELOCITY_FRAUD", "h5", BASE + 5 * SEC),
            alert_row("a3", "DEVICE_SHARING_FRAUD", "old-order", BASE - HOUR),
        ],
    )
    event_stats = LoadStats()
    report = evaluate(load_jsonl(events_path, stats=event_stats), load_alerts_sqlite(db), event_stats=event_stats)

    c = report.counts
    assert (c.events, c.honest_orders, c.fraud_events, c.actors, c.unreadable_events) == (14, 8, 6, 2, 1)
    assert (c.alerts, c.true_alerts, c.false_alerts, c.unmatched_alerts) == (3, 1, 2, 1)
    velocity = report.row("VELOCITY_FRAUD")
    assert velocity.precision == pytest.approx(0.5)
    assert (velocity.events_covered, velocity.fraud_events) == (2, 4)  # v2 and v3
    assert velocity.ttd_median_s == 2
    assert report.overall.actor_recall == pytest.approx(0.5)
