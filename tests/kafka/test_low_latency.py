"""`kafka.delivery=at-least-once`, the low-latency mode: alerts are readable before any
checkpoint completes, and a crash that replays the stream writes them to the topic again while
the store still holds each once (alerts are stored by their deterministic ids)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter

import orjson
import pytest

from fraudstream.kafka.tail import alert_from_json
from tests.flink.test_job import BASE, MIN, SMALL, SMALL_EXPECTED, _sorted_lines, order
from tests.kafka.conftest import consume, fresh_topics, kafka_flags, kill_hard, report, send
from tests.kafka.runs import stored_alerts
from tests.lines import in_own_session

pytestmark = pytest.mark.flink
EXE = [sys.executable, "-m", "fraudstream"]
PARTITIONS = 4


def _records() -> list[tuple[int | None, bytes | None, bytes]]:
    lines = _sorted_lines(SMALL)
    records: list[tuple[int | None, bytes | None, bytes]] = [
        (None, orjson.loads(v)["user_id"].encode(), v) for v in lines
    ]
    # One order far later on every partition: the watermark passes every scripted alert
    # without the stream ending (the job is unbounded, so nothing else would flush it).
    for p in range(PARTITIONS):
        records.append(
            (p, f"u_end{p}".encode(), orjson.dumps(order(f"end{p}", BASE + 180 * MIN, f"u_end{p}", f"d_end{p}")))
        )
    return records


def _keys(values: list[bytes]) -> Counter:
    alerts = [alert_from_json(v) for v in values]
    return Counter((a.alert_type, a.key, a.transaction_id, a.event_time) for a in alerts)


def test_at_least_once_alerts_are_readable_before_a_checkpoint_and_stored_once_after_a_replay(broker, tmp_path):
    k = fresh_topics(broker, raw_partitions=PARTITIONS)
    send(k, _records())
    data = tmp_path / "data"
    flags = [*kafka_flags(k), "--set", "kafka.delivery=at-least-once", "--profile", "seed"]
    # Checkpoints an hour apart: an exactly-once sink would show nothing for an hour.
    run = [*EXE, "--data-dir", str(data), *flags, "--set", "checkpoint.interval_ms=3600000", "run", "--source", "kafka"]
    with in_own_session([*run, "--start-from", "earliest"], stderr=subprocess.PIPE) as (proc, _):
        deadline = time.monotonic() + 120
        while stored_alerts(data / "fraud_alerts.db") < len(SMALL_EXPECTED):
            assert proc.poll() is None, proc.stderr.read()[-3000:] if proc.stderr else ""
            assert time.monotonic() < deadline, "the alerts did not reach the store"
            time.sleep(0.5)
        completed = list((data / "checkpoints").glob("*/chk-*/_metadata"))
        assert completed == [], "a checkpoint completed: the test proves nothing about at-least-once"
        first = _keys([v for _, _, v in consume(k, k.alerts_topic)])
        assert set(first) == SMALL_EXPECTED and set(first.values()) == {1}
        kill_hard(proc)  # a crash with no checkpoint: the next run reads the stream again
    # Replayed from the start: every alert written to the topic a second time, none lost.
    done = subprocess.run(
        [*run, "--start-from", "earliest", "--bounded"],
        capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    topic = _keys([v for _, _, v in consume(k, k.alerts_topic)])
    assert set(topic) == SMALL_EXPECTED and set(topic.values()) == {2}
    assert stored_alerts(data / "fraud_alerts.db") == len(SMALL_EXPECTED)
    report(
        f"at-least-once delivery | {len(SMALL_EXPECTED)} alerts readable with no checkpoint completed; after a "
        "SIGKILL and a replay from the start each is in the topic twice and in SQLite once"
    )
