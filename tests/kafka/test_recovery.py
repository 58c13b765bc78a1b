"""Fault injection against the real broker and real Flink: kills, a broker restart, a
savepoint, and hostile records. Each run is judged by the brute-force oracle over the
whole stream: the committed alerts (Kafka, read_committed) and the SQLite rows must be
exactly its alerts, none missing and none twice.

The store's copier is judged against the topics themselves, since SQLite's unique keys would
hide a copier that stores records twice: a foreign producer's malformed records ride in the
alerts and dead-letter topics, every dead-letter row must be one record of the dead-letter
topic (or one of those foreign records, as an `unstorable` dead letter), and the positions
in `source_offsets` must be just past each partition's last committed record.
"""

from __future__ import annotations

import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Producer

from fraudstream.config import BrokerSettings, GeneratorSettings, KafkaSettings
from fraudstream.generator import generator_from_settings
from fraudstream.kafka.broker import LocalBroker
from fraudstream.kafka.clients import client_config
from fraudstream.kafka.tail import alert_from_json
from tests.archive import archived
from tests.kafka.conftest import consume, free_port, fresh_topics, kafka_flags, kill_hard, report, send
from tests.lines import in_own_session
from tests.oracle import expected_alerts, redeliveries
from tests.redeliveries import with_redeliveries

pytestmark = pytest.mark.flink
EXE = [sys.executable, "-m", "fraudstream"]
ORDERS = 4_000
rng = random.Random(20261130)


@pytest.fixture(scope="module")
def orders() -> list[dict]:
    """The generated stream with re-deliveries mixed in (about one in sixty orders sent twice)."""
    gen = generator_from_settings(GeneratorSettings(seed=4242, count=ORDERS))
    return with_redeliveries(list(gen.orders(ORDERS)), random.Random(4242), every=60)


@pytest.fixture(scope="module")
def expected(orders) -> set[tuple[str, str, str, int]]:
    found = expected_alerts(orders)
    assert len(found) > 100  # enough alerts for kills to land between them
    return found


_ALERT = {
    "alert_id": "foreign", "alert_type": "VELOCITY_FRAUD", "severity": "HIGH", "key": "u_x", "user_id": "u_x",
    "device_id": "d_x", "transaction_id": "t_x", "amount": 1.0, "event_time": 1, "message": "m", "details": {},
    "detected_at": 1,
}  # fmt: skip
# A foreign producer's records in the job's own output topics: (alerts topic?, value). A list as
# user_id once made the copier retry its batch forever; a string amount killed its thread.
FOREIGN = [
    (True, orjson.dumps({**_ALERT, "alert_id": "foreign-1", "user_id": [1]})),
    (True, orjson.dumps({**_ALERT, "alert_id": "foreign-2", "amount": "oops"})),
    (False, orjson.dumps({"reason": 5, "detail": "d", "raw": "r", "seen_at": 1, "event_time": None})),
    (False, b"not json"),
]
FOREIGN_VALUES = {v for _, v in FOREIGN}


def _send_foreign(k: KafkaSettings) -> None:
    for to_alerts, value in FOREIGN:
        send(k, [(0, b"foreign", value)], k.alerts_topic if to_alerts else k.dead_letter_topic)


def _committed(k: KafkaSettings, topic: str) -> list[tuple[int, int, bytes | None]]:
    """Every committed record of `topic` as (partition, offset, value), up to its end now."""
    return consume(k, topic, offsets=True)


def _assert_copier_exact(k: KafkaSettings, db: Path) -> None:
    """The store against the topics: each position just past its partition's last committed
    record, and one dead-letter row per dead-letter record and per foreign alerts record."""
    alerts, dead = _committed(k, k.alerts_topic), _committed(k, k.dead_letter_topic)
    ends: dict[tuple[str, int], int] = {}
    for topic, records in ((k.alerts_topic, alerts), (k.dead_letter_topic, dead)):
        for partition, offset, _ in records:
            ends[(topic, partition)] = max(ends.get((topic, partition), 0), offset + 1)
    with sqlite3.connect(db) as conn:
        positions = {(t, p): n for t, p, n in conn.execute("SELECT topic, partition, next_offset FROM source_offsets")}
        letters = sorted(str(i) for (i,) in conn.execute("SELECT letter_id FROM dead_letters"))
    assert positions == ends
    want = [f"{k.dead_letter_topic}/{p}@{o}" for p, o, _ in dead]
    want += [f"{k.alerts_topic}/{p}@{o}" for p, o, v in alerts if v in FOREIGN_VALUES]
    assert letters == sorted(want)


def _records(orders: list[dict]) -> list[tuple[int | None, bytes | None, bytes]]:
    return [(None, o["user_id"].encode(), orjson.dumps(o)) for o in orders]


def _command(k: KafkaSettings, data: Path, *extra: str) -> list[str]:
    return [
        *EXE, "--data-dir", str(data), *kafka_flags(k),
        "--set", "checkpoint.interval_ms=1000",
        "--set", "checkpoint.backlog_interval_ms=1000",
        "--set", "checkpoint.restart_max_backoff_ms=4000",
        "run", "--source", "kafka", "--bounded", "--start-from", "earliest", *extra,
    ]  # fmt: skip


def _stored_rows(db: Path, table: str = "fraud_alerts") -> int:
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    except sqlite3.Error:
        return 0


def _wait_for_rows(
    db: Path, n: int, proc: subprocess.Popen, timeout_s: float = 240, table: str = "fraud_alerts"
) -> int:
    """Until `n` rows are in `table` (alerts, or dead_letters); fails if the run ends first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        stored = _stored_rows(db, table)
        if stored >= n:
            return stored
        if proc.poll() is not None:
            tail = proc.stderr.read()[-3000:] if proc.stderr else ""
            raise AssertionError(f"the run ended (exit {proc.returncode}) after {stored} of {n} {table}:\n{tail}")
        time.sleep(0.2)
    raise AssertionError(f"fewer than {n} {table} stored after {timeout_s}s")


def _report(injected: str, expected: set, extra: str = "") -> None:
    """One line for the reliability table (docs/reliability.md), written only after
    `_assert_exactly` held, so 'lost 0, duplicated 0' is what was checked."""
    report(
        f"{injected} | {ORDERS} orders, {len(expected)} alerts, {len(FOREIGN)} foreign records in the alerts and "
        f"dead-letter topics | lost 0, duplicated 0 (Kafka and SQLite); each foreign record one `unstorable` dead "
        f"letter; dead-letter rows = the dead-letter topic's records, stored positions = the topics' ends{extra}"
    )


def _assert_redeliveries_rejected(k: KafkaSettings, data: Path, orders: list[dict], others: Counter) -> Counter:
    """Every re-delivery is exactly one `duplicate` dead letter (topic and SQLite), and the
    archive holds every other order exactly once; `others`: the other dead letters expected."""
    copies = sorted((orders[i]["transaction_id"], orders[i]["event_time"]) for i in redeliveries(orders))
    assert copies
    letters = [orjson.loads(v) for _, _, v in consume(k, k.dead_letter_topic) if v not in FOREIGN_VALUES]
    got = sorted(
        (orjson.loads(d["raw"])["transaction_id"], d["event_time"]) for d in letters if d["reason"] == "duplicate"
    )
    assert got == copies
    by_reason = Counter(d["reason"] for d in letters)
    assert by_reason == others + Counter(duplicate=len(copies))
    with sqlite3.connect(data / "fraud_alerts.db") as conn:
        stored = Counter(r for (r,) in conn.execute("SELECT reason FROM dead_letters"))
    assert stored == by_reason + Counter(unstorable=len(FOREIGN))
    dropped = set(redeliveries(orders))
    admitted = Counter((o["transaction_id"], o["event_time"]) for i, o in enumerate(orders) if i not in dropped)
    in_archive = Counter((r["transaction_id"], r["event_time"]) for r in archived(data))
    assert not [key for key, n in in_archive.items() if n > 1], "orders archived twice"
    assert in_archive == admitted, f"missing {len(admitted - in_archive)}, unexpected {len(in_archive - admitted)}"
    return by_reason


def _assert_exactly(k: KafkaSettings, db: Path, expected: set) -> None:
    topic = [alert_from_json(v) for _, _, v in consume(k, k.alerts_topic) if v not in FOREIGN_VALUES]
    keys = [(a.alert_type, a.key, a.transaction_id, a.event_time) for a in topic]
    duplicated = [key for key, n in Counter(keys).items() if n > 1]
    assert not duplicated, f"{len(duplicated)} alerts committed twice, e.g. {duplicated[:3]}"
    assert set(keys) == expected, f"missing {len(expected - set(keys))}, unexpected {len(set(keys) - expected)}"
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT alert_type, user_id, device_id, transaction_id, event_time FROM fraud_alerts")
        stored = [(t, d if t == "DEVICE_SHARING_FRAUD" else u, x, e) for t, u, d, x, e in rows]
    assert len(stored) == len(expected)
    assert set(stored) == expected
    _assert_copier_exact(k, db)


def _publish_paced(
    k: KafkaSettings, orders: list[dict], per_second: float, gates: list[threading.Event]
) -> threading.Thread:
    """Publish `orders` (then the clock orders) at a steady pace in the background, in
    len(gates) equal parts, part i once gates[i] is set: a run sees orders arrive over time,
    and the test decides how much of the stream exists before each kill, however slowly
    the job starts on a busy machine."""
    records = _records(orders)
    size = -(-len(records) // len(gates))

    def run() -> None:
        producer = Producer(client_config(k, **{"enable.idempotence": True, "acks": "all", "linger.ms": 5}))
        for part, gate in enumerate(gates):
            assert gate.wait(600), f"part {part} of the orders was never let through"
            started = time.monotonic()
            for i, (_, key, value) in enumerate(records[part * size : (part + 1) * size]):
                delay = started + i / per_second - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                producer.produce(k.raw_topic, value, key)
                producer.poll(0)
        for o in _clock_orders(orders[-1]):
            partition = o.pop("partition")
            producer.produce(k.raw_topic, orjson.dumps(o), b"clock", partition=partition)
        assert producer.flush(30) == 0

    thread = threading.Thread(target=run, name="paced-producer", daemon=True)
    thread.start()
    return thread


def test_sigkill_at_several_points_then_resume_gives_the_uninterrupted_result(kafka, orders, expected, tmp_path):
    """Orders arrive at 250/s, a third of the stream before each run, while the job is
    killed twice, each time at a random moment after it has made progress, and resumed
    from its newest checkpoint: a first run killed, a resumed run killed, and a resume of
    that resume (a third kill would only repeat the second). The last third comes after the
    last kill, so every kill lands mid-stream. Re-deliveries are mixed in: the ids
    remembered before a kill must still be known after it."""
    _send_foreign(kafka)
    gates = [threading.Event() for _ in range(3)]
    gates[0].set()
    publisher = _publish_paced(kafka, orders, per_second=250, gates=gates)
    data = tmp_path / "data"
    db = data / "fraud_alerts.db"
    unbounded = [arg for arg in _command(kafka, data) if arg != "--bounded"]
    kills: list[int] = []
    for extra in ((), ("--resume",)):
        with in_own_session([*unbounded, *extra], stderr=subprocess.PIPE) as (proc, _):
            _wait_for_rows(db, (kills[-1] if kills else 0) + 1, proc)  # this run has made progress
            time.sleep(rng.uniform(0.2, 2.5))  # anywhere between two checkpoints
            assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read()[-3000:]}"
            kill_hard(proc)
            kills.append(_stored_rows(db))
            gates[len(kills)].set()  # the next third arrives while the job is down or starting
    assert kills[-1] < len(expected), "the stream was over before the last kill"
    with in_own_session([*unbounded, "--resume"], stderr=subprocess.PIPE) as (proc, lines):
        publisher.join(120)
        _wait_for_rows(db, len(expected), proc)
        _wait_for_rows(db, len(redeliveries(orders)) + len(FOREIGN), proc, table="dead_letters")
        # a clean stop: what is committed is final, so anything there twice is seen below
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
        out = lines.finish()
    assert proc.returncode == 0, proc.stderr.read()[-3000:]
    assert "/chk-" in out  # "Starting from: .../chk-N"
    _assert_exactly(kafka, db, expected)
    # every re-delivery rejected once, even across the kills; the archive: every order once,
    # none lost to the kills, none written twice by a replay (the clock orders are still
    # waiting in the job's state for event time to pass them)
    _assert_redeliveries_rejected(kafka, data, orders, Counter())
    _report(
        f"{len(kills)} SIGKILLs at random moments (after {kills} of the alerts were stored), then --resume; "
        f"{len(redeliveries(orders))} re-delivered orders mixed in, each rejected once",
        expected,
    )


def test_a_broker_restart_mid_run_is_survived_without_loss_or_duplicates(orders, expected, tmp_path):
    cfg = BrokerSettings(port=free_port(), controller_port=free_port())
    broker = LocalBroker(cfg, tmp_path / "kafka-data")
    broker.start()
    try:
        k = fresh_topics(broker)
        _send_foreign(k)
        send(k, _records(orders))
        data = tmp_path / "data"
        with in_own_session(_command(k, data), stderr=subprocess.PIPE) as (proc, lines):
            _wait_for_rows(data / "fraud_alerts.db", int(0.2 * len(expected)), proc)
            assert proc.poll() is None
            assert broker.stop()
            time.sleep(5)
            broker.start()
            proc.wait(timeout=400)
            out = lines.finish()
        assert proc.returncode == 0, proc.stderr.read()[-3000:]
        assert "Job finished" in out
        _assert_exactly(k, data / "fraud_alerts.db", expected)
        _assert_redeliveries_rejected(k, data, orders, Counter())
        restarts = _flink_log(data).count("switched from state RUNNING to RESTARTING")
        _report("broker stopped (SIGTERM) mid-run for 5 s, then started again", expected, f"; {restarts} job restarts")
    finally:
        broker.stop()


def _clock_orders(after: dict) -> list[dict]:
    """One order per partition an hour later, from fresh users and devices: it moves every
    partition's event time past the stream's end in an unbounded run, and alerts on nothing."""
    t = after["event_time"] + 3_600_000
    return [
        {**after, "transaction_id": f"clock-{p}", "user_id": f"u_clock{p}", "device_id": f"d_clock{p}",
         "amount": 10.0, "event_time": t + p, "partition": p}
        for p in range(4)
    ]  # fmt: skip


def _partition_of(k: KafkaSettings, order: dict) -> int:
    """Where the producer put this order: found by reading the raw topic back."""
    global _PARTITIONS
    if _PARTITIONS is None or _PARTITIONS[0] != k.raw_topic:
        placed = {_id_of(v): p for p, _, v in consume(k, k.raw_topic)}
        _PARTITIONS = (k.raw_topic, placed)
    return _PARTITIONS[1][order["transaction_id"]]


_PARTITIONS: tuple[str, dict[str, int]] | None = None


def _id_of(value: bytes) -> str | None:
    try:
        return orjson.loads(value).get("transaction_id")
    except (orjson.JSONDecodeError, AttributeError):
        return None


YEAR = 365 * 24 * 3_600_000


def _poison(template: dict, newest: int) -> list[tuple[bytes, str]]:
    """Hostile records, each with the reason it must be rejected for."""
    now = int(time.time() * 1000)
    poison = [
        (b'{"transaction_id": "p1", "amount": ', "invalid_json"),
        (orjson.dumps({**template, "transaction_id": "p2", "amount": "12.50"}), "wrong_type"),
        (orjson.dumps({**template, "transaction_id": "p3", "user_id": 42}), "wrong_type"),
        (
            orjson.dumps({**template, "transaction_id": "p4"}).replace(b'"amount":', b'"amount":NaN,"x":'),
            "invalid_json",
        ),
        (orjson.dumps({**template, "transaction_id": "p5", "amount": -99.0}), "invalid_value"),
        (b'{"transaction_id": "p6", "user_id": "\xc3\x28"}', "undecodable"),
        (b'{"pad": "' + b"x" * (1_000_000 - 11) + b'"}', "too_large"),
        (orjson.dumps({**template, "transaction_id": "p8", "event_time": now + YEAR}), "future"),
        (orjson.dumps({**template, "transaction_id": "p9", "event_time": newest - YEAR}), "late"),
        (b"[1, 2, 3]", "not_an_object"),
    ]
    assert len(poison[6][0]) == 1_000_000
    return poison


def _send_large(k: KafkaSettings, records: list[tuple[int | None, bytes | None, bytes]]) -> None:
    """`send`, with room for a 1 MB record."""
    producer = Producer(client_config(k, **{"message.max.bytes": 2_000_000, "enable.idempotence": True}))
    for partition, key, value in records:
        producer.produce(k.raw_topic, value, key, **({} if partition is None else {"partition": partition}))
    assert producer.flush(30) == 0


def test_a_savepoint_taken_mid_stream_restores_to_the_uninterrupted_result(kafka, orders, expected, tmp_path):
    """An unbounded run is stopped with a savepoint while orders are still coming, and a new
    run continues from it with the rest of the stream. Hostile records ride along (in the
    middle of the first half and at the end of the second): every one is a dead letter
    with its reason, records in = orders admitted + dead letters, and the job never
    restarts. Re-deliveries whose first copy came before the savepoint are still caught."""
    first, rest = orders[: ORDERS // 2], orders[ORDERS // 2 :]
    clock = _clock_orders(orders[-1])
    assert expected_alerts([*orders, *clock]) == expected  # the clock orders alert on nothing
    poison_first = _poison(first[0], first[-1]["event_time"])
    poison_rest = _poison(first[0], rest[-1]["event_time"])
    half = len(first) // 2
    sent_first = _records(first[:half]) + [(0, b"poison", v) for v, _ in poison_first] + _records(first[half:])
    _send_foreign(kafka)
    _send_large(kafka, sent_first)
    data = tmp_path / "data"
    db = data / "fraud_alerts.db"
    unbounded = [arg for arg in _command(kafka, data) if arg != "--bounded"]
    with in_own_session(unbounded, stderr=subprocess.PIPE) as (proc, lines):
        _wait_for_rows(db, int(0.1 * len(expected)), proc)
        taken = subprocess.run(
            [*EXE, "--data-dir", str(data), "savepoint", "--stop"],
            capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        assert taken.returncode == 0, taken.stderr
        proc.wait(timeout=120)
        out = lines.finish()
    assert proc.returncode == 0
    assert "Job stopped" in out
    location = taken.stdout.strip().splitlines()[-1]
    assert Path(location, "_metadata").is_file()

    # Late for partition 0 after the restore: an hour behind what that partition had before the
    # savepoint. A run that forgot the partition's progress would take it as a new order.
    p0_newest = max(o["event_time"] for o in first if _partition_of(kafka, o) == 0)
    late = {**first[0], "transaction_id": "late-after-restore", "event_time": p0_newest - 3_600_000}
    sent_rest = [(0, late["user_id"].encode(), orjson.dumps(late)), *_records(rest)]
    sent_rest += [(0, b"poison", v) for v, _ in poison_rest]
    sent_rest += [(o.pop("partition"), b"clock", orjson.dumps(o)) for o in clock]
    _send_large(kafka, sent_rest)
    dead_expected = Counter(reason for _, reason in poison_first + poison_rest) + Counter(late=1)
    with in_own_session([*unbounded, "--from-savepoint", location], stderr=subprocess.PIPE) as (proc, lines):
        _wait_for_rows(db, len(expected), proc)
        _wait_for_rows(db, dead_expected.total() + len(redeliveries(orders)) + len(FOREIGN), proc, table="dead_letters")
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
        out = lines.finish()
    assert proc.returncode == 0
    assert f"Starting from       : {location}" in out
    _assert_exactly(kafka, db, expected)
    by_reason = _assert_redeliveries_rejected(kafka, data, orders, dead_expected)
    letters = [orjson.loads(v) for _, _, v in consume(kafka, kafka.dead_letter_topic) if v not in FOREIGN_VALUES]
    late_ones = [orjson.loads(d["raw"]).get("transaction_id") for d in letters if d["reason"] == "late"]
    assert sorted(late_ones) == ["late-after-restore", "p9", "p9"]
    # records in = orders admitted (archived, or the clock orders event time has not passed
    # yet) + dead letters, and no restart on the way
    records_in = len(sent_first) + len(sent_rest)
    admitted = len(archived(data))
    assert records_in == admitted + len(clock) + by_reason.total()
    flink_log = _flink_log(data)
    assert "RUNNING to RESTARTING" not in flink_log and "to FAILED" not in flink_log
    _report("savepoint --stop mid-stream, restored with --from-savepoint", expected, "; lateness kept across it")
    reasons = ", ".join(f"{r} {n}" for r, n in sorted(by_reason.items()))
    report(
        f"{len(poison_first) + len(poison_rest)} hostile records among {len(orders)} orders, across a savepoint | "
        f"records in {records_in} = {admitted} admitted + {by_reason.total()} dead letters ({reasons}) | "
        "0 restarts, alerts exact"
    )


def _flink_log(data: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in (data / "flink-logs").glob("*.log"))
