"""Alert latency at a fixed offered load: from an order's append to the raw topic to the
moment its alert is readable (committed) on the alerts topic.

Orders are generated as usual but stamped with the wall clock as they are sent, so event
time and append time agree and the measured delay is the pipeline's: the watermark bound
(an alert waits until event time has passed the order by the out-of-orderness bound), the
rules, and the transaction that commits the alert at the next checkpoint.

A run ends once the last orders' alerts can be read: the job has read every order sent, a
checkpoint begun after that has completed (the alerts the last watermark released are in
its transaction), and every alert committed has been read. Orders within the watermark
bound of the last one never alert (nothing after them moves event time past them), so
there is no count of alerts to wait for; a fixed time after the last order is the ceiling.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import (
    OFFSET_END,
    Consumer,
    IsolationLevel,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, OffsetSpec

from fraudstream.backtest.replay import private_store_environ
from fraudstream.bench.jobs import kafka_flags, records_read, rest_get
from fraudstream.config import GeneratorSettings, KafkaSettings
from fraudstream.flink.jobinfo import JobInfo
from fraudstream.generator import generator_from_settings
from fraudstream.generator.pacing import Pacer
from fraudstream.kafka.clients import client_config, connect_admin, partition_count

logger = logging.getLogger(__name__)


@dataclass
class LatencyRun:
    engine: str
    offered_per_s: float
    sent: int = 0
    alerts: int = 0
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    checkpoint_interval_ms: int = 0
    samples: list[float] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("samples")
        return out


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (no interpolation: every figure is an observed latency)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def measure_latency(
    engine: str,
    k: KafkaSettings,
    data_dir: Path,
    rate: float,
    seconds: float,
    checkpoint_interval_ms: int,
    seed: int = 11,
    warmup_s: float = 5.0,
) -> LatencyRun:
    result = LatencyRun(engine, rate, checkpoint_interval_ms=checkpoint_interval_ms)
    data_dir.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-m", "fraudstream", "--data-dir", str(data_dir), *kafka_flags(k),
        "--set", f"checkpoint.interval_ms={checkpoint_interval_ms}",
        "run", "--source", "kafka", "--start-from", "latest", "--engine", engine,
    ]  # fmt: skip
    appended: dict[str, float] = {}
    received: dict[str, float] = {}
    consumer = Consumer(
        client_config(k, **{"group.id": f"bench-latency-{uuid.uuid4().hex[:8]}", "isolation.level": "read_committed"})
    )
    admin = connect_admin(k)
    partitions = partition_count(admin, k.alerts_topic)
    consumer.assign([TopicPartition(k.alerts_topic, p, OFFSET_END) for p in range(partitions)])
    positions: dict[int, int] = {}  # how far the reader has read each alerts partition
    with (data_dir / "bench-latency.log").open("wb") as log:
        proc = subprocess.Popen(  # a SQLite store in data_dir, whatever store the environment names
            command, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True, env=private_store_environ()
        )
        try:
            info = _wait_until_running(data_dir / "job.json", proc)
            stop = threading.Event()
            reader = threading.Thread(target=_read_alerts, args=(consumer, received, positions, stop), daemon=True)
            reader.start()
            result.sent = _send_paced(k, rate, seconds, appended, seed)
            # the last orders' wait for the watermark, then for the checkpoint that commits them
            sent_at = time.monotonic()
            ceiling = sent_at + 15 + 2 * checkpoint_interval_ms / 1000
            base = f"http://127.0.0.1:{info.rest_port}/jobs/{info.job_id}"
            if _until_all_read(base, admin, k, result.sent, partitions, positions, ceiling):
                logger.info("every alert committed was read %.1f s after the last order", time.monotonic() - sent_at)
            else:
                logger.info("stopped at the ceiling, %.0f s after the last order", time.monotonic() - sent_at)
            stop.set()
            reader.join()
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)  # the run and its Flink JVM
                proc.wait()
            consumer.close()
    # The first seconds warm the job up (JIT, first checkpoint): not counted.
    counted_from = min(appended.values(), default=0.0) + warmup_s
    result.samples = [
        1000 * (received[tx] - appended[tx]) for tx in received if tx in appended and appended[tx] >= counted_from
    ]
    result.alerts = len(result.samples)
    if result.samples:
        result.p50_ms = round(percentile(result.samples, 50), 1)
        result.p95_ms = round(percentile(result.samples, 95), 1)
        result.p99_ms = round(percentile(result.samples, 99), 1)
        result.max_ms = round(max(result.samples), 1)
    return result


def _wait_until_running(info_path: Path, proc: subprocess.Popen, timeout_s: float = 180) -> JobInfo:
    """Until every task of the job runs (a job is submitted long before its operators are up;
    orders sent in between would measure start-up, not latency)."""
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the job did not start (see {info_path.parent / 'bench-latency.log'})")
        info = JobInfo.read(info_path)
        if info is not None:
            try:
                vertices = rest_get(f"http://127.0.0.1:{info.rest_port}/jobs/{info.job_id}")["vertices"]
                if vertices and all(v["status"] == "RUNNING" for v in vertices):
                    return info
            except (OSError, KeyError, ValueError):
                pass
        time.sleep(0.5)


def _send_paced(k: KafkaSettings, rate: float, seconds: float, appended: dict[str, float], seed: int) -> int:
    gen = generator_from_settings(GeneratorSettings(seed=seed, rate=0, users=200_000))
    producer = Producer(client_config(k, **{"enable.idempotence": True, "acks": "all", "linger.ms": 2}))
    # Wall-clock time of the append: monotonic-to-epoch offset, taken once.
    offset = time.time() - time.monotonic()

    def delivered(err: KafkaError | None, msg: Message) -> None:
        if err is None:
            appended[msg.key().decode()] = msg.timestamp()[1] / 1000 - offset

    pacer = Pacer(rate)
    end = time.monotonic() + seconds
    sent = 0
    while time.monotonic() < end:
        pacer.wait()
        order = gen.next_order()
        order["event_time"] = int(time.time() * 1000)
        tx = order["transaction_id"]
        while True:
            try:
                producer.produce(k.raw_topic, orjson.dumps(order), tx.encode(), on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
        sent += 1
    producer.flush(30)
    return sent


def _read_alerts(
    consumer: Consumer, received: dict[str, float], positions: dict[int, int], stop: threading.Event
) -> None:
    """When each alert is first read; `positions`: how far each partition is read."""
    assigned = consumer.assignment()
    while not stop.is_set():
        for msg in consumer.consume(1000, timeout=0.1):
            if msg.error() is None and msg.value():
                now = time.monotonic()
                tx = orjson.loads(msg.value()).get("transaction_id")
                received.setdefault(tx, now)
        positions.update({tp.partition: tp.offset for tp in consumer.position(assigned)})


def _until_all_read(
    base: str,
    admin: AdminClient,
    k: KafkaSettings,
    sent: int,
    partitions: int,
    positions: dict[int, int],
    ceiling: float,
) -> bool:
    """Wait until every alert the orders sent will give has been read, or until `ceiling`
    (monotonic); True if not stopped by the ceiling. In three steps: the job's source has
    read all `sent` orders (its last watermark follows them); a checkpoint triggered over a
    second after that (its barrier behind that watermark, emitted every 200 ms) has
    completed, so the alerts that watermark released are in the log; then no transaction
    is open on the alerts topic (theirs is committed) and the reader is at its end."""
    queries: dict[str, str] = {}
    raw_partitions = partition_count(admin, k.raw_topic)
    read_at: float | None = None  # epoch ms, the clock of Flink's checkpoint statistics
    checkpointed = False
    while time.monotonic() < ceiling:
        try:
            if read_at is None:
                if records_read(base, k.raw_topic, raw_partitions, queries) >= sent:
                    read_at = time.time() * 1000
            elif not checkpointed:
                latest = (rest_get(f"{base}/checkpoints").get("latest") or {}).get("completed") or {}
                checkpointed = latest.get("trigger_timestamp", 0) > read_at + 1000
            elif _read_to_end(admin, k.alerts_topic, partitions, positions):
                return True
        except (OSError, KafkaException, KeyError, IndexError, ValueError):
            pass
        time.sleep(0.2)
    return False


def _read_to_end(admin: AdminClient, topic: str, partitions: int, positions: dict[int, int]) -> bool:
    """No transaction open on `topic` (each partition's last stable offset is its end) and
    every partition read to that end."""
    parts = [TopicPartition(topic, p) for p in range(partitions)]

    def ends(level: IsolationLevel) -> dict[int, int]:
        asked = admin.list_offsets({tp: OffsetSpec.latest() for tp in parts}, isolation_level=level, request_timeout=5)
        return {tp.partition: future.result().offset for tp, future in asked.items()}

    stable, end = ends(IsolationLevel.READ_COMMITTED), ends(IsolationLevel.READ_UNCOMMITTED)
    return stable == end and all(positions.get(p, -1) >= offset for p, offset in end.items())
