"""A real Kafka broker (KRaft, from the project's jars) for the whole test session."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import uuid

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from fraudstream.config import KafkaSettings
from fraudstream.flink.gateway import processes
from fraudstream.kafka.broker import LocalBroker
from fraudstream.kafka.clients import client_config, connect_admin, ensure_topics
from tests.conftest import REPORT


def report(line: str) -> None:
    """One line for the reliability table (docs/reliability.md), in build/reliability.txt."""
    with REPORT.open("a") as fh:
        fh.write(f"{time.strftime('%Y-%m-%d %H:%M')} | {line}\n")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fresh_topics(broker: LocalBroker, raw_partitions: int = 4, alerts_partitions: int = 4) -> KafkaSettings:
    """Settings for `broker` with new topics and a new group, the topics created."""
    tag = uuid.uuid4().hex[:8]
    k = broker.kafka_settings(KafkaSettings()).model_copy(
        update={
            "raw_topic": f"raw-{tag}",
            "alerts_topic": f"alerts-{tag}",
            "dead_letter_topic": f"dlq-{tag}",
            "group_id": f"job-{tag}",
            "connect_timeout_s": 10.0,
        }
    )
    ensure_topics(
        connect_admin(k), {k.raw_topic: raw_partitions, k.alerts_topic: alerts_partitions, k.dead_letter_topic: 1}
    )
    return k


def kafka_flags(k: KafkaSettings) -> list[str]:
    """The `--set` flags that point a `fraudstream` process at these settings."""
    out = []
    names = ["bootstrap_servers", "raw_topic", "alerts_topic", "dead_letter_topic", "group_id", "security_protocol"]
    if k.sasl_mechanism:
        names += ["sasl_mechanism", "sasl_username", "sasl_password"]
    for name in names:
        out += ["--set", f"kafka.{name}={getattr(k, name)}"]
    return out


def send(k: KafkaSettings, records: list[tuple[int | None, bytes | None, bytes]], topic: str | None = None) -> None:
    """Publish (partition, key, value) records exactly as given; partition None = by key."""
    producer = Producer(client_config(k, **{"enable.idempotence": True, "acks": "all"}))
    for partition, key, value in records:
        kwargs = {} if partition is None else {"partition": partition}
        producer.produce(topic or k.raw_topic, value, key, **kwargs)
    assert producer.flush(30) == 0


def consume(k: KafkaSettings, topic: str, expect: int | None = None, limit_s: float = 60.0, offsets: bool = False):
    """Every committed record of `topic` as (partition, key, value), read from the start
    (with `offsets`: as (partition, offset, value), to name each record by its place).

    Without `expect`: up to the topic's end as it is when called (for a job that has
    finished or stopped: everything it committed, nothing waited for). With `expect`: until
    that many records arrived, for a job still running. Either way at most `limit_s`."""
    consumer = Consumer(
        client_config(
            k,
            **{
                "group.id": f"test-{uuid.uuid4().hex}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
            },
        )
    )
    partitions = [TopicPartition(topic, p) for p in consumer.list_topics(topic, timeout=10).topics[topic].partitions]
    consumer.assign([TopicPartition(topic, p.partition, OFFSET_BEGINNING) for p in partitions])
    ends = {p.partition: consumer.get_watermark_offsets(p, timeout=10, cached=False)[1] for p in partitions}
    out = []
    start = time.monotonic()
    try:
        while time.monotonic() - start < limit_s:
            if expect is not None and len(out) >= expect:
                break
            if expect is None and _reached(consumer, partitions, ends):
                break
            msg = consumer.poll(0.2)
            if msg is None or msg.error():
                continue
            out.append((msg.partition(), msg.offset() if offsets else msg.key(), msg.value()))
    finally:
        consumer.close()
    return out


def _reached(consumer: Consumer, partitions: list[TopicPartition], ends: dict[int, int]) -> bool:
    """Whether the consumer has read past `ends` in every partition. A transaction's commit
    marker takes an offset of its own, which no record reports: past the last record of a
    partition whose end is a marker, the position says so once the marker was fetched."""
    for tp in consumer.position(partitions):
        if ends[tp.partition] > 0 and (tp.offset < 0 or tp.offset < ends[tp.partition]):
            return False
    return True


def kill_hard(proc: subprocess.Popen) -> None:
    """SIGKILL a run's Python process only, as a crash would, and wait until its Flink JVM is gone too."""
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 60
    while any(p.pgid == proc.pid and p.state != "Z" for p in processes()):
        assert time.monotonic() < deadline, "the Flink JVM outlived its killed parent"
        time.sleep(0.5)
