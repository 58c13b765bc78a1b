"""`fraudstream run` never goes on without its store copier: when the copier fails (here:
another copier moved the store's positions, as a second copier would), the run stops the
job and ends with one line, and its Flink JVM is gone. And `fraudstream store follow`, the
copier alone beside a job elsewhere, killed mid-copy into PostgreSQL, resumes exactly where
its last transaction left the store."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time

import orjson
import pytest

from fraudstream.config import GeneratorSettings
from fraudstream.flink.gateway import processes
from fraudstream.generator import generator_from_settings
from fraudstream.store import db
from fraudstream.store.db import Location
from tests.kafka.conftest import kafka_flags, send
from tests.lines import in_own_session
from tests.store.test_store import alerts

EXE = [sys.executable, "-m", "fraudstream"]


def _alert_rows(db) -> int:
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            return conn.execute("SELECT count(*) FROM fraud_alerts").fetchone()[0]
    except sqlite3.Error:
        return 0


@pytest.mark.flink
def test_a_run_whose_copier_fails_stops_with_one_line(kafka, tmp_path):
    orders = list(generator_from_settings(GeneratorSettings(seed=77, count=3000)).orders(3000))
    records = [(None, o["user_id"].encode(), orjson.dumps(o)) for o in orders]
    send(kafka, records[:1500])
    data = tmp_path / "data"
    db = data / "fraud_alerts.db"
    command = [
        *EXE, "--data-dir", str(data), *kafka_flags(kafka), "--set", "checkpoint.interval_ms=1000",
        "--set", "checkpoint.backlog_interval_ms=1000",
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


def _copied(url: str, topic: str = "") -> tuple[int, dict[int, int]]:
    """(alerts stored, partition -> next offset in `topic`) of a PostgreSQL store; (0, {}) before it exists."""
    try:
        with db.connect(Location("postgresql", url=url)) as conn:
            if not conn.has_table("source_offsets"):
                return 0, {}
            rows = conn.execute("SELECT count(*) FROM fraud_alerts").fetchone()[0]
            offsets = dict(
                conn.execute("SELECT partition, next_offset FROM source_offsets WHERE topic = ?", (topic,)).fetchall()
            )
    except db.ERRORS:
        return 0, {}
    return rows, offsets


@pytest.mark.slow
def test_store_follow_killed_mid_copy_resumes_exactly_where_it_stopped(kafka, tmp_path, postgres_url):
    """The copier alone (`store follow`, as beside a job on a cluster) is SIGKILLed while it
    copies into PostgreSQL; the next one copies exactly the records the first had not
    committed (its own count says so), and the store ends equal to the topic."""
    batch = alerts(1200)
    send(kafka, [(i % 4, a.key.encode(), orjson.dumps(a.to_dict())) for i, a in enumerate(batch)], kafka.alerts_topic)
    command = [
        *EXE, "--data-dir", str(tmp_path / "data"), *kafka_flags(kafka), "--set", "store.batch_size=3",
        "store", "follow", "--quiet",
    ]  # fmt: skip
    env = {**os.environ, "FRAUDSTREAM_STORE__URL": postgres_url}
    with in_own_session(command, env=env, stderr=subprocess.PIPE) as (proc, lines):
        deadline = time.monotonic() + 60
        while _copied(postgres_url)[0] < 30:
            assert proc.poll() is None, proc.stderr.read()[-3000:]
            assert time.monotonic() < deadline, "nothing copied"
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        lines.finish()
    at_kill, _ = _copied(postgres_url)
    assert 30 <= at_kill < len(batch), "not killed mid-copy"
    with in_own_session(command, env=env, stderr=subprocess.PIPE) as (proc, lines):
        deadline = time.monotonic() + 90
        while _copied(postgres_url)[0] < len(batch):
            assert proc.poll() is None, proc.stderr.read()[-3000:]
            assert time.monotonic() < deadline, f"{_copied(postgres_url)[0]} of {len(batch)} copied"
            time.sleep(0.2)
        time.sleep(1.0)  # anything copied twice would land now
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        out = lines.finish()
        err = proc.stderr.read()
    assert proc.returncode == 0, err[-3000:]
    assert f"{len(batch) - at_kill} alerts and 0 dead letters copied" in out, out
    rows, offsets = _copied(postgres_url, kafka.alerts_topic)
    assert rows == len(batch) and offsets == {p: len(batch) // 4 for p in range(4)}
