"""The end of a run: a final SQLite flush that fails neither skips closing the rest (the
store, Flink) nor loses what it held."""

from __future__ import annotations

import sqlite3

import orjson
import pytest

from fraudstream.cli.runner import _close_outputs
from fraudstream.events.model import DeadLetter
from fraudstream.store import AlertStore, BatchWriter
from tests.store.test_store import alerts


def test_a_final_flush_that_fails_keeps_the_items_and_still_closes_flink(tmp_path):
    db = tmp_path / "fraud_alerts.db"
    store = AlertStore(db)

    def broken_disk(records, offsets=None):
        raise sqlite3.OperationalError("disk I/O error")

    writer = BatchWriter(broken_disk, batch_size=1000, flush_interval_s=60, max_backoff_s=0.05)
    items = [*alerts(2), DeadLetter("invalid_json", "bad", "{", 1)]
    for item in items:
        writer.submit(item)
    writer.close = lambda timeout=1.0, close=writer.close: close(timeout)  # not the run's 30 s
    closed = []
    line = _close_outputs(writer, None, store, db, lambda: closed.append("flink"))
    assert closed == ["flink"]
    with pytest.raises(sqlite3.ProgrammingError):  # the store was closed too
        store.conn.execute("SELECT 1")
    assert line is not None and "3 alerts and dead letters could not be written" in line and "disk I/O error" in line
    (saved,) = tmp_path.glob("fraud_alerts.db.unwritten-*.jsonl")
    assert str(saved) in line
    kept = [orjson.loads(x) for x in saved.read_bytes().splitlines()]
    assert [k.pop("kind") for k in kept] == ["alert", "alert", "dead"]
    assert kept == [i.to_dict() for i in items]
