"""One order per partition stamped days ahead, on the real broker: `--resume` must not bring
back the blindness it caused under an older, laxer `pipeline.max_future_ms` (issue 13, item 1).

The first run has the old default (7 days): each partition's poison order is admitted, drags
that partition's newest event time six days ahead, and the honest order after it is `late`.
Those dead letters reach SQLite only through a committed Kafka transaction, so a checkpoint
holding the six-days-ahead state exists when the run is killed. The resumed run has today's
default (5 minutes): the restored newest times are capped at the clock plus that skew, and the
honest orders published meanwhile are judged, and alert.
"""

from __future__ import annotations

import sqlite3
import subprocess
import time
from collections import Counter

import orjson
import pytest

from tests.kafka.conftest import kill_hard, report, send
from tests.kafka.test_recovery import EXE, _command, _wait_for_rows
from tests.lines import in_own_session

pytestmark = pytest.mark.flink
MIN = 60_000
DAY = 86_400_000
PARTITIONS = 4  # fresh_topics' raw topic


def order(tx: str, t: int, user: str, amount: float = 300.0) -> bytes:
    return orjson.dumps(
        {"transaction_id": tx, "user_id": user, "device_id": f"d_{user}", "restaurant_id": "r_1",
         "amount": amount, "city": "Mumbai", "payment_method": "UPI", "event_time": t}
    )  # fmt: skip


def test_resume_does_not_restore_the_blindness_of_a_future_order(kafka, tmp_path):
    """With the SQL engine (the default), whose admission restores operator state; the DataStream
    engine's keyed state goes through the same rule (tests/flink/test_future.py)."""
    now = int(time.time() * 1000)
    poisoned = []
    for p in range(PARTITIONS):
        poisoned.append((p, f"u_f{p}".encode(), order(f"f{p}", now + 6 * DAY, f"u_f{p}")))
        poisoned.append((p, f"u_n{p}".encode(), order(f"n{p}", now - 15 * MIN, f"u_n{p}")))  # late behind it
    send(kafka, poisoned)
    data = tmp_path / "data"
    db = data / "fraud_alerts.db"
    command = _command(kafka, data)
    unbounded = [arg for arg in command if arg != "--bounded"]
    old_limit = ["--set", f"pipeline.max_future_ms={7 * DAY}"]  # the default before the fix
    with in_own_session([*EXE, *old_limit, *unbounded[len(EXE) :]], stderr=subprocess.PIPE) as (proc, _):
        _wait_for_rows(db, PARTITIONS, proc, table="dead_letters")  # committed: a checkpoint holds the state
        kill_hard(proc)

    honest = [(None, b"u_v", order(f"v{i}", now - 10 * MIN + i * 30_000, "u_v")) for i in range(5)]
    honest += [(None, b"u_h1", order("h1", now - 7 * MIN, "u_h1", 2_500.0))]
    honest += [(None, b"u_h2", order("h2", now - 6 * MIN, "u_h2", 4_000.0))]
    send(kafka, honest)
    proc = subprocess.run([*command, "--resume"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "/chk-" in proc.stdout  # resumed from a checkpoint of the first run
    with sqlite3.connect(db) as conn:
        alerts = sorted(conn.execute("SELECT alert_type, transaction_id FROM fraud_alerts").fetchall())
        dead = Counter(r for (r,) in conn.execute("SELECT reason FROM dead_letters"))
    assert alerts == [("HIGH_VALUE_FRAUD", "h1"), ("HIGH_VALUE_FRAUD", "h2"), ("VELOCITY_FRAUD", "v3")]
    assert dead == Counter(late=PARTITIONS)  # only the first run's, none after the resume
    report(
        f"one order 6 days ahead on each of the {PARTITIONS} partitions, admitted under the old 7-day limit, then "
        "SIGKILL and --resume with the 5-minute default (test_resume_does_not_restore_the_blindness_of_a_future_order)"
        f" | {PARTITIONS} poisoned + {PARTITIONS} honest orders, then 7 honest | 3 alerts after the resume "
        f"(velocity, 2 high value), 0 `late` after it ({PARTITIONS} before it)"
    )
