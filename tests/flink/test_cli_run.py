"""`fraudstream run` as a user runs it: a real process, real Flink, real SQLite."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fraudstream.flink.gateway import processes
from fraudstream.generator import OrderGenerator
from tests.flink.conftest import write_lines
from tests.lines import in_own_session

pytestmark = pytest.mark.flink
EXE = [sys.executable, "-m", "fraudstream"]


def _count(db: Path, table: str = "fraud_alerts") -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


def test_run_on_a_file_exits_zero_and_stores_every_alert(tmp_path):
    import orjson

    events = list(OrderGenerator(seed=11, users=2_000).orders(3_000))
    path = write_lines(tmp_path / "in.jsonl", [orjson.dumps(e) for e in events] + [b"{broken"])
    proc = subprocess.run(
        [*EXE, "--data-dir", str(tmp_path / "data"), "run", "--source", f"file:{path}"],
        capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Configuration:" in proc.stdout and "Velocity" in proc.stdout  # the banner
    printed = [line for line in proc.stdout.splitlines() if line.startswith("ALERT")]
    assert len(printed) > 20
    db = tmp_path / "data" / "fraud_alerts.db"
    assert _count(db) == len(printed)
    assert _count(db, "dead_letters") == 1
    log = (tmp_path / "data" / "app.log").read_text()
    assert sum(1 for line in log.splitlines() if "fraudstream.alerts: ALERT" in line) == len(printed)
    assert "Traceback" not in proc.stderr
    # only what the project means to show: no JVM or Hadoop log line (the archive's Parquet
    # writer logs one per file it opens) reaches the console
    assert not [line for line in proc.stdout.splitlines() if re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ", line)]
    assert "CodecPool" not in proc.stdout + proc.stderr
    assert "CodecPool" in "".join(p.read_text() for p in (tmp_path / "data" / "flink-logs").glob("*.log*"))


@pytest.mark.parametrize(
    ("sig", "to_group"),
    [(signal.SIGTERM, False), (signal.SIGINT, True), (signal.SIGTERM, True)],
    ids=["SIGTERM", "SIGINT-to-group (Ctrl-C)", "SIGTERM-to-group (timeout, service managers)"],
)
def test_stop_signal_flushes_every_alert_and_leaves_no_process(tmp_path, sig, to_group):
    data = tmp_path / "data"
    with open(tmp_path / "stderr.txt", "w+") as stderr:
        command = [*EXE, "--data-dir", str(data), "run", "--rate", "400", "--seed", "5"]
        with in_own_session(command, stderr=stderr) as (proc, out):
            assert out.wait_for("ALERT", 10, 120, proc), "no alerts within two minutes"
            if to_group:  # Flink's JVM gets the signal too, and must not die before the job is stopped
                os.killpg(proc.pid, sig)
            else:
                os.kill(proc.pid, sig)
            proc.wait(60)
        text = out.finish()
        stderr.seek(0)
        err = stderr.read()
    printed = out.count("ALERT")
    assert proc.returncode == 0, err[-2000:]
    assert "Job stopped" in text
    assert "Traceback" not in err and "py4j" not in err
    assert _count(data / "fraud_alerts.db") == printed
    # the Flink gateway JVM started for the job is gone as well
    deadline = time.monotonic() + 20
    while _live_members(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _live_members(proc.pid) == []


def _live_members(pgid: int) -> list[int]:
    """Processes of a process group that are still running (zombies do not count)."""
    return [p.pid for p in processes() if p.pgid == pgid and p.state != "Z"]


def test_generated_run_matches_the_oracle_on_the_same_seed(tmp_path, postgres_url):
    """`run --count N --seed S` inside Flink sees exactly the stream `produce` writes for S; its
    alerts go to the PostgreSQL store of store.url (the other runs here use SQLite)."""
    import orjson

    from fraudstream.store import db
    from fraudstream.store.db import Location
    from tests.oracle import expected_alerts

    data = tmp_path / "data"
    base = [*EXE, "--data-dir", str(data)]
    common = ["--count", "4000", "--seed", "21", "--rate", "0"]
    produced = tmp_path / "p.jsonl"
    subprocess.run([*base, "produce", *common, "-o", str(produced), "--quiet"], check=True, timeout=120)
    proc = subprocess.run(
        [*base, "run", *common], capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
        env={**os.environ, "FRAUDSTREAM_STORE__URL": postgres_url},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "seed=21" in proc.stdout
    assert "Stored " in proc.stdout and "postgresql://" in proc.stdout and ":***@" in proc.stdout
    events = [orjson.loads(line) for line in produced.read_bytes().splitlines()]
    with db.connect(Location("postgresql", url=postgres_url), read_only=True) as conn:
        rows = conn.execute("SELECT alert_type, user_id, device_id, transaction_id, event_time FROM fraud_alerts")
        stored = {(t, d if t == "DEVICE_SHARING_FRAUD" else u, tx, et) for t, u, d, tx, et in rows.fetchall()}
    assert stored == expected_alerts(events)
    assert len(stored) > 50
    assert not (data / "fraud_alerts.db").exists()  # nothing went to SQLite
