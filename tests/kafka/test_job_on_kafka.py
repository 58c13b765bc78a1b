"""The real job on the real broker: producer -> raw topic -> Flink -> alerts topic, DLQ and SQLite."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import orjson
import pytest

from fraudstream.kafka.tail import alert_from_json
from tests.archive import archived
from tests.flink.conftest import run_file, write_lines
from tests.flink.test_job import BASE, MIN, SEED_RULES, SMALL, SMALL_EXPECTED, _sorted_lines, order
from tests.kafka.conftest import consume, fresh_topics, kafka_flags, send

pytestmark = pytest.mark.flink
EXE = [sys.executable, "-m", "fraudstream"]

# Bad records as other producers might send them, with the reason each must be rejected for.
BAD = [
    (b"{this is not json", "invalid_json"),
    (b'["an", "array"]', "not_an_object"),
    (orjson.dumps({**order("x1", BASE, "u_x"), "amount": "lots"}), "wrong_type"),
    (orjson.dumps(order("x3", BASE, "u_x")).replace(b'"amount":300.0', b'"amount":NaN'), "invalid_json"),
    (orjson.dumps(order("x4", BASE, "u_x", amount=-10.0)), "invalid_value"),
    (orjson.dumps({k: v for k, v in order("x6", BASE, "u_x").items() if k != "device_id"}), "missing_field"),
    (b'{"transaction_id": "x7", "user_id": "\xff\xfe\xfd"}', "undecodable"),
    (b'{"pad": "' + b"A" * 200_000 + b'"}', "too_large"),
]
# Published after the rest under u_t's key: behind the newest event of its own partition.
LATE = orjson.dumps(order("late1", BASE + 20 * MIN, "u_t", "d_t"))
# Re-deliveries, each right after its original: counted, v2's copy would move u_v's velocity
# alert to v3 and g2's (from Pune, 30 s later) would raise a second geo alert.
COPIES = {
    "v2": lambda o: o,
    "g2": lambda o: {**o, "city": "Pune", "event_time": o["event_time"] + 30_000},
}


def _key(value: bytes) -> bytes | None:
    try:
        return orjson.loads(value)["user_id"].encode()
    except Exception:
        return None


@pytest.fixture(scope="module", params=["datastream", "sql"])
def bounded_run(broker, tmp_path_factory, request):
    """One bounded job over the scripted stream plus bad records, run as a user runs it,
    with each engine."""
    k = fresh_topics(broker)
    good = _sorted_lines(SMALL)
    with_copies = []
    for line in good:
        with_copies.append(line)
        o = orjson.loads(line)
        if o["transaction_id"] in COPIES:
            with_copies.append(orjson.dumps(COPIES[o["transaction_id"]](o)))
    records = [(None, _key(v), v) for v in with_copies] + [(None, _key(v), v) for v, _ in BAD]
    records += [(None, b"u_t", LATE)]
    # a tombstone (no value) and an empty value: not orders, and they must not stop the job
    records += [(None, b"u_x", None), (None, b"u_x", b"")]
    send(k, records)
    data = tmp_path_factory.mktemp("job-data")
    proc = subprocess.run(
        [*EXE, "--data-dir", str(data), *kafka_flags(k), "--set", "pipeline.out_of_orderness_ms=5000", "--profile", "seed",
         "run", "--source", "kafka", "--bounded", "--start-from", "earliest", "--engine", request.param],
        capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    return k, proc, data, good


def _stored(db: Path, query: str) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(query).fetchall()


def test_bounded_run_gives_exactly_the_expected_alerts_everywhere(bounded_run, tmp_path):
    k, proc, data, good = bounded_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    topic = [(p, key, alert_from_json(v)) for p, key, v in consume(k, k.alerts_topic)]
    keys = {(a.alert_type, a.key, a.transaction_id, a.event_time) for _, _, a in topic}
    assert keys == SMALL_EXPECTED
    assert len(topic) == len(SMALL_EXPECTED)
    stored = _stored(
        data / "fraud_alerts.db", "SELECT alert_id, alert_type, transaction_id, event_time FROM fraud_alerts"
    )
    assert sorted(stored) == sorted((a.alert_id, a.alert_type, a.transaction_id, a.event_time) for _, _, a in topic)
    # the same events from a file, through the core pipeline, give the same alerts
    from_file = run_file(write_lines(tmp_path / "same.jsonl", good), tmp_path, **SEED_RULES)
    assert from_file.alert_keys == keys


def test_alerts_are_keyed_by_their_user_or_device(bounded_run):
    k, proc, _, _ = bounded_run
    assert proc.returncode == 0
    topic = consume(k, k.alerts_topic)
    assert topic
    partitions_of_key: dict[bytes, set[int]] = {}
    for partition, key, value in topic:
        alert = alert_from_json(value)
        assert key == alert.key.encode()
        expected_key = alert.device_id if alert.alert_type == "DEVICE_SHARING_FRAUD" else alert.user_id
        assert alert.key == expected_key
        partitions_of_key.setdefault(key, set()).add(partition)
    assert all(len(p) == 1 for p in partitions_of_key.values())


def test_bad_records_become_dead_letters_with_reasons_and_the_job_goes_on(bounded_run):
    k, proc, data, _ = bounded_run
    assert proc.returncode == 0
    letters = [orjson.loads(v) for _, _, v in consume(k, k.dead_letter_topic)]
    expected = sorted([reason for _, reason in BAD] + ["late", "duplicate", "duplicate"])
    assert sorted(d["reason"] for d in letters) == expected
    copies = sorted(
        (orjson.loads(d["raw"])["transaction_id"], d["detail"]) for d in letters if d["reason"] == "duplicate"
    )
    assert [(tx, detail.rsplit("; ", 1)[1]) for tx, detail in copies] == [
        ("g2", "this copy differs in city, event_time"), ("v2", "this copy is identical"),
    ]  # fmt: skip
    assert all(d["detail"] and d["seen_at"] for d in letters)
    late = next(d for d in letters if d["reason"] == "late")
    assert late["event_time"] == BASE + 20 * MIN
    stored = _stored(data / "fraud_alerts.db", "SELECT reason FROM dead_letters")
    assert sorted(r for (r,) in stored) == expected
    assert "dead letter: late" in proc.stdout


def test_the_archive_holds_every_valid_order_as_received_and_every_dead_letter(bounded_run, request):
    k, proc, data, good = bounded_run
    assert proc.returncode == 0
    rows = archived(data)
    assert len(rows) == len(good)  # none twice, not the late one, no re-delivery
    sent = {d.get("transaction_id") or d["order_id"]: d for d in map(orjson.loads, good)}
    by_id = {r["transaction_id"]: orjson.loads(r["raw"]) for r in rows}
    assert by_id.keys() == sent.keys()
    if "sql" in request.node.callspec.id:
        assert sorted(r["raw"].encode() for r in rows) == sorted(good)  # byte for byte
    else:  # re-encoded from the parsed order: every field sent (a legacy order_id also as transaction_id)
        assert all(
            {k: v for k, v in sent[t].items() if k != "transaction_id"}.items() <= by_id[t].items() for t in sent
        )
        assert all(by_id[t]["transaction_id"] == t for t in sent)
    for r in rows:
        when = datetime.fromtimestamp(r["event_time"] / 1000, UTC)
        assert (r["dt"], r["hour"]) == (when.strftime("%Y-%m-%d"), when.hour)
        raw = orjson.loads(r["raw"])
        assert r["transaction_id"] == (raw.get("transaction_id") or raw["order_id"])
    # the README's one-line DuckDB query reads the same rows
    query = f"SELECT count(*), count(DISTINCT transaction_id) FROM read_parquet('{data}/archive/orders/*/*/part-*', hive_partitioning=true)"
    assert duckdb.sql(query).fetchall() == [(len(good), len(good))]
    letters = archived(data, "dead_letters")
    assert sorted(d["reason"] for d in letters) == sorted(
        [reason for _, reason in BAD] + ["late", "duplicate", "duplicate"]
    )


def test_alerts_tail_prints_readable_lines(bounded_run):
    k, proc, _, _ = bounded_run
    assert proc.returncode == 0
    tail = subprocess.run(
        [*EXE, *kafka_flags(k), "alerts", "tail", "--from-beginning", "--max", str(len(SMALL_EXPECTED)),
         "--idle-timeout", "30"],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert tail.returncode == 0, tail.stderr
    lines = tail.stdout.splitlines()
    assert len(lines) == len(SMALL_EXPECTED)
    assert all(line.startswith("ALERT ") for line in lines)
    assert any("VELOCITY_FRAUD" in line and "user=u_v" in line for line in lines)


def _start_unbounded(kafka, tmp_path: Path, idle_timeout_ms: int, engine: str = "sql") -> subprocess.Popen:
    """`fraudstream run` on the test topics from the start, unbounded, in its own session."""
    return subprocess.Popen(
        [*EXE, "--data-dir", str(tmp_path / "data"), *kafka_flags(kafka),
         "--set", f"kafka.idle_timeout_ms={idle_timeout_ms}",
         "run", "--source", "kafka", "--start-from", "earliest", "--engine", engine],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip


def _stop(proc: subprocess.Popen) -> tuple[str, str]:
    """SIGTERM, as an operator stops a job, and its stdout and stderr."""
    proc.send_signal(signal.SIGTERM)
    return proc.communicate(timeout=60)


def test_an_idle_partition_does_not_hold_back_alerts(kafka, tmp_path):
    """Partition 3 never gets an order. With idleness, the other three partitions' event
    time alone moves the watermark, so alerts come out while the job is still running.

    The timeout is well above the time the job takes to read its partitions' first records,
    even on a loaded machine (5 s was not, once): a subtask idle before its first record lets
    the others' watermark run ahead, and its backlog is then late."""
    records = []
    for p in range(3):
        user = f"u_burst{p}"
        records += [
            (p, user.encode(), orjson.dumps(order(f"b{p}{i}", BASE + i * MIN, user, f"d_b{p}"))) for i in range(4)
        ]
        # a later order on the same partition moves that partition's event time on
        records.append((p, b"u_clock", orjson.dumps(order(f"c{p}", BASE + 30 * MIN, f"u_clock{p}", f"d_c{p}"))))
    send(kafka, records)
    proc = _start_unbounded(kafka, tmp_path, idle_timeout_ms=15_000)
    try:
        alerts = consume(kafka, kafka.alerts_topic, expect=3, limit_s=120)
        still_running = proc.poll() is None
    finally:
        out, err = _stop(proc)
    assert still_running, err[-2000:]
    assert sorted(alert_from_json(v).key for _, _, v in alerts) == ["u_burst0", "u_burst1", "u_burst2"]
    assert proc.returncode == 0, err[-2000:]
    assert "Job stopped" in out


@pytest.mark.parametrize("engine", ["sql", "datastream"])
def test_an_order_behind_the_watermark_after_idleness_is_a_late_dead_letter(kafka, tmp_path, engine):
    """Partitions 1-3 fall idle and partition 0 moves event time half an hour on; then
    partition 1 wakes up with an older order. Both engines make it a `late` dead letter: it
    raises no alert when time moves on again, and it is not silently dropped."""

    def big(tx: str, t: int, user: str) -> bytes:  # a high-value order alerts once time passes it
        return orjson.dumps(order(tx, t, user, f"d_{user}", amount=5000.0))

    def tick(tx: str, t: int) -> bytes:
        return orjson.dumps(order(tx, t, f"u_{tx}", f"d_{tx}"))

    proc = _start_unbounded(kafka, tmp_path, idle_timeout_ms=1000, engine=engine)
    try:
        send(kafka, [(0, b"u_a", big("first", BASE + 30 * MIN, "u_a")), (0, b"t", tick("tick1", BASE + 31 * MIN))])
        first = consume(kafka, kafka.alerts_topic, expect=1, limit_s=120)  # time is past BASE + 30 min
        send(kafka, [(1, b"u_b", big("behind", BASE, "u_b"))])
        send(kafka, [(0, b"u_c", big("second", BASE + 40 * MIN, "u_c")), (0, b"t", tick("tick2", BASE + 41 * MIN))])
        alerts = consume(kafka, kafka.alerts_topic, expect=2, limit_s=120)
        dead = consume(kafka, kafka.dead_letter_topic, expect=1, limit_s=60)
        still_running = proc.poll() is None
    finally:
        out, err = _stop(proc)
    assert still_running, err[-2000:]
    assert [alert_from_json(v).transaction_id for _, _, v in first] == ["first"]
    assert sorted(alert_from_json(v).transaction_id for _, _, v in alerts) == ["first", "second"]
    letters = [orjson.loads(v) for _, _, v in dead]
    assert [(d["reason"], orjson.loads(d["raw"])["transaction_id"], d["event_time"]) for d in letters] == [
        ("late", "behind", BASE)
    ]
    if engine == "sql":  # the SQL engine keeps the record as received for its dead letter
        assert letters[0]["raw"].encode() == big("behind", BASE, "u_b")
    assert proc.returncode == 0, err[-2000:]


def test_a_bounded_run_continues_where_the_last_one_ended(kafka, tmp_path):
    """--start-from committed: the second run sees only what was published after the first."""
    first = [orjson.dumps(order(f"h{i}", BASE + i * MIN, f"u_h{i}", amount=2000.0)) for i in range(3)]
    later = [orjson.dumps(order(f"h{i}", BASE + i * MIN, f"u_h{i}", amount=2000.0)) for i in range(3, 5)]
    command = [*EXE, "--data-dir", str(tmp_path / "data"), *kafka_flags(kafka), "run", "--source", "kafka", "--bounded"]

    def run() -> set[str]:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return {line.split("txn=")[1].split()[0] for line in proc.stdout.splitlines() if line.startswith("ALERT")}

    send(kafka, [(None, _key(v), v) for v in first])
    assert run() == {"h0", "h1", "h2"}
    send(kafka, [(None, _key(v), v) for v in later])
    assert run() == {"h3", "h4"}
