"""`fraudstream run` never goes on without its store copier: when the copier fails (here:
another copier moved the store's positions, as a second copier would), the run stops the
job and ends with one line, and its Flink JVM is gone."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time

import orjson
import pytest

from fraudstream.config import GeneratorSettings
from fraudstream.flink.gateway import processes
from fraudstream.generator import generator_from_settings
from tests.kafka.conftest import kafka_flags, send
from tests.lines import in_own_session

pytestmark = pytest.mark.flink
EXE = [sys.executable, "-m", "fraudstream"]


def _alert_rows(db) -> int:
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            return conn.execute("SELECT count(*) FROM fraud_alerts").fetchone()[0]
    except sqlite3.Error:
        return 0


def test_a_run_whose_copier_fails_stops_with_one_line(kafka, tmp_path):
    orders = list(generator_from_settings(GeneratorSettings(seed=77, count=3000)).orders(3000))
    records = [(None, o["user_id"].encode(), orjson.dumps(o)) for o in orders]
    send(kafka, records[:1500])
    data = tmp_path / "data"
    db = data / "fraud_alerts.db"
    command = [
        *EXE, "--data-dir", str(data), *kafka_flags(kafka), "--set", "checkpoint.interval_ms=1000",
        "run", "--source", "kafka", "--start-from", "earliest",
    ]  # fmt: skip
    with in_own_session(command, stderr=subprocess.PIPE) as (proc, lines):
        deadline = time.monotonic() + 240
        while _alert_rows(db) == 0:
            assert proc.poll() is None, proc.stderr.read()[-3000:]
            assert time.monotonic() < deadline, "no alert stored"
            time.sleep(0.2)
        with sqlite3.connect(db, timeout=30) as conn:  # what a second copier's batch would do
            conn.execute(
                "UPDATE source_offsets SET next_offset = next_offset + 1000 WHERE topic = ?", (kafka.alerts_topic,)
            )
        send(kafka, records[1500:])  # more alerts for the copier to store
        proc.wait(timeout=180)
        err = proc.stderr.read()
        lines.finish()
        leftover = [p for p in processes() if p.pgid == proc.pid and p.state != "Z"]
    assert proc.returncode == 1, err[-3000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("fraudstream: error: the store's copier stopped, and the job with it:"), err[-3000:]
    assert "another copier is writing to this store" in last
    assert "Traceback" not in err
    assert not leftover, f"processes of the run still there: {leftover}"
