"""`run --resume` against the real broker and real Flink: a bounded resume after more orders
arrived, a kill after the job finished but before its end offsets were committed, and
what the next `--resume` does then. The raw topic is read `read_committed`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from fraudstream.config import GeneratorSettings, KafkaSettings
from fraudstream.generator import generator_from_settings
from fraudstream.kafka.clients import client_config, end_offsets
from fraudstream.kafka.tail import alert_from_json
from tests.archive import archived
from tests.kafka.conftest import consume, kafka_flags, kill_hard, report, send
from tests.kafka.runs import stored_alerts
from tests.lines import in_own_session
from tests.oracle import expected_alerts

pytestmark = pytest.mark.flink
EXE = [sys.executable, "-m", "fraudstream"]
FIRST, MORE, ABORTED = 2_000, 1_000, 20


def _command(k: KafkaSettings, data: Path, *extra: str) -> list[str]:
    return [
        *EXE, "--data-dir", str(data), *kafka_flags(k),
        "--set", "checkpoint.interval_ms=1000",
        "--set", "checkpoint.backlog_interval_ms=1000",
        "run", "--source", "kafka", *extra,
    ]  # fmt: skip


def _records(orders: list[dict]) -> list[tuple[int | None, bytes | None, bytes]]:
    return [(None, o["user_id"].encode(), orjson.dumps(o)) for o in orders]


def _until(what: str, check, proc: subprocess.Popen, timeout_s: float = 240) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if proc.poll() is not None:
            raise AssertionError(f"the run ended (exit {proc.returncode}) before {what}: {proc.stderr.read()[-3000:]}")
        assert time.monotonic() < deadline, f"no {what} after {timeout_s}s"
        time.sleep(0.1)


def _runs(data: Path) -> list[dict]:
    found = [json.loads(p.read_text()) for p in (data / "checkpoints" / "runs").glob("*.json")]
    return sorted(found, key=lambda r: r["started"])


def _committed(k: KafkaSettings) -> dict[int, int]:
    consumer = Consumer(client_config(k, **{"group.id": k.group_id, "enable.auto.commit": False}))
    try:
        parts = [TopicPartition(k.raw_topic, p) for p in end_offsets(k, k.raw_topic)]
        return {tp.partition: tp.offset for tp in consumer.committed(parts, timeout=10)}
    finally:
        consumer.close()


def test_bounded_resume_reads_what_arrived_since_and_the_next_resume_replays_nothing(kafka, tmp_path):
    """Issue 13. Run A is killed mid-stream after a checkpoint (unbounded, so that it is
    surely still running: an upstream transaction is open on partition 0, and A, reading
    read_committed, waits at it). The transaction is aborted (its orders would alert if
    scored) and more orders arrive. Run B, `--bounded --resume`, must read through to its
    own end (its restored readers kept the stopping offsets of A's checkpoint, here none,
    and never finished) and commit it. A third `--resume` must not replay from A's
    checkpoint, the newest left on disk once B's were deleted: nothing to resume."""
    gen = generator_from_settings(GeneratorSettings(seed=1313, count=FIRST + MORE))
    orders = list(gen.orders(FIRST + MORE))
    expected = expected_alerts(orders)
    assert len(expected) > 50
    send(kafka, _records(orders[:FIRST]))
    last = orders[FIRST - 1]
    aborted = [
        {**last, "transaction_id": f"aborted-{i}", "user_id": f"u_aborted{i}", "device_id": f"d_aborted{i}",
         "amount": 99_999.0}
        for i in range(ABORTED)
    ]  # fmt: skip
    upstream = Producer(client_config(kafka, **{"transactional.id": f"upstream-{uuid.uuid4().hex[:8]}"}))
    upstream.init_transactions(30)
    upstream.begin_transaction()
    for o in aborted:
        upstream.produce(kafka.raw_topic, orjson.dumps(o), b"aborted", partition=0)
    assert upstream.flush(30) == 0
    data = tmp_path / "data"
    db = data / "fraud_alerts.db"

    with in_own_session(_command(kafka, data, "--start-from", "earliest"), stderr=subprocess.PIPE) as (proc, _):
        _until("alerts stored (a checkpoint completed)", lambda: stored_alerts(db) > 0, proc)
        time.sleep(1.5)  # another checkpoint or so
        assert proc.poll() is None
        kill_hard(proc)
    upstream.abort_transaction(30)
    send(kafka, _records(orders[FIRST:]))
    end = end_offsets(kafka, kafka.raw_topic)

    with in_own_session(_command(kafka, data, "--bounded", "--resume"), stderr=subprocess.PIPE) as (proc, lines):
        proc.wait(timeout=240)
        out = lines.finish()
    assert proc.returncode == 0, proc.stderr.read()[-3000:]
    assert "Job finished" in out
    assert "/chk-" in out  # "Starting from: .../chk-N" (A's)
    assert _committed(kafka) == end
    assert stored_alerts(db) == len(expected)

    # B's checkpoints are gone (it finished), A's is the newest on disk: not to be replayed
    resumed = subprocess.run(
        _command(kafka, data, "--bounded", "--resume"),
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert resumed.returncode != 0
    assert "finished: nothing to resume; run without --resume" in resumed.stderr
    assert "Traceback" not in resumed.stderr

    # every order scored exactly once across A and B, the aborted ones never
    keys = [(a.alert_type, a.key, a.transaction_id, a.event_time) for a in map(alert_from_json, _alert_values(kafka))]
    duplicated = [key for key, n in Counter(keys).items() if n > 1]
    assert not duplicated, f"{len(duplicated)} alerts committed twice"
    assert set(keys) == expected, f"missing {len(expected - set(keys))}, unexpected {len(set(keys) - expected)}"
    in_archive = Counter(r["transaction_id"] for r in archived(data))
    assert not [t for t, n in in_archive.items() if n > 1], "orders archived twice"
    assert set(in_archive) == {o["transaction_id"] for o in orders}
    report(
        f"run killed after a checkpoint; then {MORE} more orders, and an upstream transaction of {ABORTED} "
        f"orders aborted; `run --bounded --resume`; then `--resume` again | {FIRST + MORE} orders, "
        f"{len(expected)} alerts | lost 0, duplicated 0 (Kafka, SQLite, archive); the aborted orders not scored; "
        "the group's position = the end; the last `--resume` refused in one line (the last run finished)"
    )


def _alert_values(k: KafkaSettings) -> list[bytes]:
    return [v for _, _, v in consume(k, k.alerts_topic)]


def test_a_run_killed_after_its_job_finished_has_its_end_committed_by_the_next_run(kafka, tmp_path):
    """A bounded job finished (Flink then deletes its checkpoints) and its run was killed
    before it committed the end offsets, as its record shows: it made checkpoints, none is
    left. The next run, whatever its flags, commits them first, so the tail is not read
    again; a `--resume` then has nothing to resume. (No Flink: the refusal comes first.)"""
    send(kafka, [(p, b"k", b"{}") for p in range(4) for _ in range(3)])
    end = end_offsets(kafka, kafka.raw_topic)
    data = tmp_path / "data"
    (data / "checkpoints" / "job-b" / "shared").mkdir(parents=True)
    runs = data / "checkpoints" / "runs"
    runs.mkdir()
    record = {"job_id": "job-b", "started": time.time() - 30, "group_id": kafka.group_id,
              "raw_topic": kafka.raw_topic, "bounded_end": end, "checkpointed": True}  # fmt: skip
    (runs / "job-b.json").write_text(json.dumps(record))
    assert _committed(kafka) != end
    resumed = subprocess.run(
        _command(kafka, data, "--bounded", "--resume"),
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert resumed.returncode != 0
    assert "committed its end offsets" in resumed.stderr
    assert "finished: nothing to resume" in resumed.stderr
    assert _committed(kafka) == end
    assert _runs(data)[-1]["ended"] == "finished"
    report(
        "a bounded run killed after its job finished, before it committed its end offsets (its run record: "
        "checkpointed, no checkpoint left), then `run --bounded --resume` | 12 records | the next run committed "
        "the end offsets first and refused to resume in one line (the last run finished); the tail not read again"
    )
