"""A run on Kafka scraped by a real Prometheus server (monitoring/prometheus.yml, its targets
moved to this test's ports): the job's counters, read back through Prometheus' HTTP API,
reconcile with what the test fed and with the rows in the store, and the Grafana dashboard
names only metrics that the scrape returned.

The run is unbounded: a bounded job's tasks end with its input, and their metrics with them,
possibly before Prometheus scraped the last values. It reads the main input, then one
"flush" order per partition, sent once Prometheus has counted every main record, moves the
watermark past all of them (so the duplicate and late judgements and the rules are done);
the flush orders themselves wait for a watermark that never comes: 4 orders in, never valid.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time

import orjson
import pytest

from fraudstream.config import load_settings
from fraudstream.flink.reporter import endpoint
from tests.kafka.conftest import free_port, kafka_flags, send
from tests.lines import in_own_session
from tests.metrics.conftest import GRAFANA
from tests.sockets import descendants, listening

pytestmark = pytest.mark.flink
EXE = [sys.executable, "-m", "fraudstream"]
OP = "flink_taskmanager_job_task_operator_fraudstream_"
PARTITIONS = 4
PER_PARTITION = 30


def _order(tx: str, user: str, t: int, amount: float = 300.0) -> bytes:
    return orjson.dumps(
        {
            "transaction_id": tx,
            "user_id": user,
            "device_id": f"d_{user}",
            "restaurant_id": "r_1",
            "amount": amount,
            "city": "Pune",
            "payment_method": "UPI",
            "event_time": t,
        }
    )


def _input(start: int) -> tuple[list[tuple[int, bytes, bytes]], dict[str, int]]:
    """(partition, key, value) records and what they hold: valid orders (every tenth above the
    high-value threshold, each of its own user and device, so that only that rule fires),
    an exact copy of two of them per partition, one late order per partition, and records
    that do not parse."""
    records = []
    fed = {"valid": 0, "duplicate": 0, "late": 0, "malformed": 0, "high_value": 0}
    for p in range(PARTITIONS):
        for i in range(PER_PARTITION):
            n = i * PARTITIONS + p
            high = n % 10 == 0
            value = _order(f"t_{n}", f"u_{n}", start + n * 1000, 2500.0 if high else 300.0)
            records.append((p, f"u_{n}".encode(), value))
            fed["valid"] += 1
            fed["high_value"] += high
            if i in (5, 17):
                records.append((p, f"u_{n}".encode(), value))  # redelivered: a duplicate
                fed["duplicate"] += 1
            if i == 25:  # a minute behind what this partition has read: late
                records.append((p, b"late", _order(f"late_{p}", f"late_{p}", start - 60_000)))
                fed["late"] += 1
    broken = [b"{not json", b'{"transaction_id": "x"}', b"\xff\xfe\xfd", b'{"amount": "lots"}']
    for p, value in enumerate(broken):
        records.append((p % PARTITIONS, b"broken", value))
        fed["malformed"] += 1
    return records, fed


def _rows(db, sql: str) -> dict[str, int]:
    with sqlite3.connect(db, timeout=30) as conn:
        return dict(conn.execute(sql).fetchall())


def test_a_kafka_run_scraped_by_prometheus_reconciles_with_its_input_and_store(kafka, prometheus, tmp_path):
    start = int(time.time() * 1000) - 20 * 60_000
    records, fed = _input(start)
    main = len(records)
    send(kafka, records)
    sent = time.time()  # the orders' Kafka timestamps are before this
    job_port, process_port = free_port(), free_port()
    server = prometheus(
        {
            "fraudstream-job": [f"127.0.0.1:{job_port}"],
            "fraudstream-run": [f"127.0.0.1:{process_port}"],
            "fraudstream-dashboard": [f"127.0.0.1:{free_port()}"],  # not running: a target down
        }
    )
    data = tmp_path / "data"
    command = [
        *EXE, "--data-dir", str(data), *kafka_flags(kafka),
        "--set", "checkpoint.interval_ms=1000", "--set", "checkpoint.backlog_interval_ms=1000", "--set", "archive.enabled=false",
        "--set", f"metrics.job_port={job_port}", "--set", f"metrics.process_port={process_port}",
        "run", "--source", "kafka", "--start-from", "earliest",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "FRAUDSTREAM_METRICS__PROCESS_PORT"}
    # A wait between the append and the run's start that a latency from the Kafka timestamp
    # includes and one from admission would not (most alerts leave within a second of it).
    time.sleep(max(0.0, WAIT_S - (time.time() - sent)))
    launched = time.time()
    with in_own_session(command, stderr=subprocess.PIPE, env=env) as (proc, lines):

        def alive() -> bool:
            return proc.poll() is None

        def total(name: str) -> float | None:
            return server.value(f"sum({OP}{name})")

        server.wait_until(f"{main} records in", lambda: total("orders_in") == main, 150, alive)
        # the reporter told the driver where it listens (reporter.endpoint, for `run` to print)
        (record,) = (data / "checkpoints" / "runs").glob("*.json")
        settings = load_settings(flags={"data_dir": str(data), "metrics.job_port": str(job_port)}, environ={})
        assert endpoint(settings, json.loads(record.read_text())["job_id"], 5) == f"http://127.0.0.1:{job_port}/metrics"
        # The reporter listens on loopback only, where Flink's own would take every interface.
        sockets = [a for pid in descendants(proc.pid) for a, port in listening(pid) if port == job_port]
        assert sockets and set(sockets) <= {"127.0.0.1"}, sockets

        send(kafka, [(p, b"flush", _order(f"flush_{p}", f"flush_{p}", int(time.time() * 1000))) for p in range(4)])
        dead = fed["duplicate"] + fed["late"] + fed["malformed"]

        def settled() -> bool:
            return (
                total("orders_valid") == fed["valid"]
                and total("reason_dead_letters") == dead
                and total("alert_type_severity_alerts") == fed["high_value"]
                and server.value('fraudstream_store_records_total{kind="alert"}') == fed["high_value"]
                and server.value('fraudstream_store_records_total{kind="dead_letter"}') == dead
                and server.value("sum(fraudstream_copier_lag_records)") == 0
            )

        server.wait_until("the job's and the copier's counts settle", settled, 90, alive)
        assert total("orders_in") == main + PARTITIONS  # the flush orders: in, still waiting
        reasons = server.by(f"sum by (reason) ({OP}reason_dead_letters)", "reason")
        alerts = server.query(f"sum by (alert_type, severity) ({OP}alert_type_severity_alerts)")
        latency_count = total("alert_latency_ms_count")
        p99 = server.value(f'max({OP}alert_latency_ms{{quantile="0.99"}})')
        p50 = server.value(f'min({OP}alert_latency_ms{{quantile="0.5"}})')
        # a rate() needs two samples of a series: a scrape or two after the counts settled
        try:
            server.wait_until("data in every Grafana panel", lambda: not _empty_panels(server), 15, alive)
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {_empty_panels(server)}") from None
        lag = server.value(f"max({OP}event_time_lag_ms)")
        checkpoints = server.value("max(flink_jobmanager_job_numberOfCompletedCheckpoints)")
        stored = server.by("fraudstream_store_records_total", "kind")
        names = server.names()
        os.kill(proc.pid, signal.SIGINT)
        proc.wait(timeout=90)
        err = proc.stderr.read()
        lines.finish()
    assert proc.returncode == 0, err[-3000:]

    # against the input
    assert reasons.pop("duplicate") == fed["duplicate"]
    assert reasons.pop("late") == fed["late"]
    assert sum(reasons.values()) == fed["malformed"], reasons  # the parser's own reasons
    assert main == fed["valid"] + fed["duplicate"] + fed["late"] + fed["malformed"]
    assert {(a["metric"]["alert_type"], a["metric"]["severity"]): float(a["value"][1]) for a in alerts} == {
        ("HIGH_VALUE_FRAUD", "MEDIUM"): fed["high_value"]
    }
    assert latency_count == fed["high_value"]
    # from the order's Kafka timestamp (sent before the run started) to the alert: seconds, not
    # minutes, and at least the wait before the run (admission time would give far less)
    assert p50 is not None and p99 is not None
    assert (launched - sent) * 1000 <= p50 <= p99 < 120_000, (launched - sent, p50, p99)
    # the watermark trails the clock by the flush orders' age plus the out-of-orderness bound
    assert lag is not None and 5_000 <= lag < 120_000
    assert checkpoints and checkpoints >= 1

    # against the store
    db = data / "fraud_alerts.db"
    by_type = _rows(db, "SELECT alert_type, count(*) FROM fraud_alerts GROUP BY alert_type")
    assert by_type == {"HIGH_VALUE_FRAUD": fed["high_value"]}
    assert stored["alert"] == sum(by_type.values())
    by_reason = _rows(db, "SELECT reason, count(*) FROM dead_letters GROUP BY reason")
    assert stored["dead_letter"] == sum(by_reason.values())
    assert {r: by_reason.get(r) for r in ("duplicate", "late")} == {"duplicate": fed["duplicate"], "late": fed["late"]}

    _check_grafana(names)


# Metrics a Grafana panel names that this run legitimately has no series of: no notification
# was configured, and the DataStream engine's latency gauges (this run is the SQL engine's).
NO_SERIES_YET = ("fraudstream_notifications_total", f"{OP}quantile_alert_latency_ms")
WAIT_S = 4.0


def _empty_panels(server) -> list[str]:
    """The Grafana panels' queries, run by the real Prometheus, that return nothing (but for
    those of NO_SERIES_YET)."""
    dashboard = json.loads(GRAFANA.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", ())]
    return [e for e in exprs if not any(n in e for n in NO_SERIES_YET) and not server.query(e)]


def _check_grafana(scraped: set[str]) -> None:
    """The dashboard is valid JSON of Grafana's shape, and every metric its queries name was
    returned by the scrape (a summary's `_count` and `_sum` come with it)."""
    dashboard = json.loads(GRAFANA.read_text())
    assert dashboard["title"] and isinstance(dashboard["panels"], list) and dashboard["schemaVersion"] >= 30
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", ())]
    assert len(exprs) >= 10, exprs
    named = {n for e in exprs for n in re.findall(r"\b((?:flink|fraudstream)_[A-Za-z0-9_]+)", e)}
    missing = sorted(n for n in named if n not in scraped and not n.endswith("quantile_alert_latency_ms"))
    assert not missing, f"the Grafana dashboard names metrics the scrape did not return: {missing}"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
