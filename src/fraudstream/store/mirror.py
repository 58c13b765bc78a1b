"""Copies committed alerts and dead letters from Kafka into SQLite, exactly once.

Why the store is fed from the topics, and not written from inside the Flink job: the job's
Kafka sinks are transactional, so the topics hold exactly the alerts of the checkpoints
that completed, however often the job crashed and replayed. Copying those (read_committed)
and storing, in the same SQLite transaction as the rows, the offset up to which they were
copied, makes the store an exact image of the topics: a crash of this copier between two
batches repeats nothing and skips nothing, because the rows and the position commit or
roll back together. A writer inside the job could only be tied to checkpoints by
idempotent replays, which leave no key for dead letters, and would have to run where the
SQLite file is; this copier can run beside any cluster.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from fraudstream.config import Settings
from fraudstream.detectors.base import Alert
from fraudstream.events.model import DeadLetter
from fraudstream.kafka.clients import client_config
from fraudstream.store.sqlite import AlertStore

logger = logging.getLogger(__name__)


@dataclass
class MirrorStats:
    alerts: Counter[str] = field(default_factory=Counter)
    dead_letters: Counter[str] = field(default_factory=Counter)
    unreadable: int = 0
    stored: int = 0
    failed_writes: int = 0


def _alert(value: bytes) -> Alert:
    return Alert(**orjson.loads(value))


def _dead_letter(value: bytes) -> DeadLetter:
    return DeadLetter(**orjson.loads(value))


class TopicMirror:
    """Keeps `store` equal to the committed contents of the alerts and dead-letter topics.

    `on_alert` / `on_dead` are called for each record once it is stored (console, app.log).
    """

    def __init__(
        self,
        settings: Settings,
        store: AlertStore,
        on_alert: Callable[[Alert], None] = lambda a: None,
        on_dead: Callable[[DeadLetter], None] = lambda d: None,
        batch_size: int | None = None,
    ) -> None:
        k = settings.kafka
        self.store = store
        self.on_alert = on_alert
        self.on_dead = on_dead
        self.batch_size = batch_size or settings.store.batch_size
        self.max_backoff_s = settings.store.retry_max_backoff_ms / 1000
        self.stats = MirrorStats()
        self.kinds = {k.alerts_topic: "alert", k.dead_letter_topic: "dead"}
        self.consumer = Consumer(
            client_config(
                k,
                **{
                    # No group offsets are used: the position lives in SQLite.
                    "group.id": f"fraudstream-store-{os.getpid()}",
                    "enable.auto.commit": False,
                    "enable.auto.offset.store": False,
                    "isolation.level": "read_committed",
                    "auto.offset.reset": "earliest",
                },
            )
        )
        self.next_offsets: dict[tuple[str, int], int] = {}
        assignment = []
        for topic in self.kinds:
            meta = self.consumer.list_topics(topic, timeout=k.connect_timeout_s).topics[topic]
            if meta.error is not None:
                raise RuntimeError(f"cannot read topic {topic}: {meta.error.str()}")
            stored = store.stored_offsets(topic)
            for partition in sorted(meta.partitions):
                offset = stored.get(partition, OFFSET_BEGINNING)
                assignment.append(TopicPartition(topic, partition, offset))
                if partition in stored:  # already copied up to here: `drain` needs nothing before it
                    self.next_offsets[(topic, partition)] = offset
        self.consumer.assign(assignment)
        logger.info("copying %s into %s from %s", ", ".join(self.kinds), store.path, _describe(assignment))

    # ------------------------------------------------------------------ copying
    def copy_once(self, timeout_s: float, give_up: threading.Event | None = None) -> int:
        """Copy what arrives within `timeout_s` (at most one batch); returns records copied."""
        messages = self.consumer.consume(self.batch_size, timeout_s)
        records: list[Alert | DeadLetter] = []
        offsets: dict[tuple[str, int], int] = {}
        for msg in messages:
            if msg.error():
                if msg.error().code() != KafkaError._PARTITION_EOF:
                    logger.warning("reading %s failed: %s", msg.topic(), msg.error().str())
                continue
            topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
            offsets[(topic, partition)] = offset + 1
            value = msg.value()
            if value is None:
                continue
            try:
                records.append(_alert(value) if self.kinds[topic] == "alert" else _dead_letter(value))
            except (orjson.JSONDecodeError, TypeError) as exc:
                self.stats.unreadable += 1
                logger.warning("skipping an unreadable record at %s/%d@%d: %s", topic, partition, offset, exc)
        if not offsets:
            return 0
        if not self._write(records, offsets, give_up):
            # Not stored: go back, so these records are read again (now or by the next run).
            for (topic, partition), _ in offsets.items():
                first = min(m.offset() for m in messages if m.topic() == topic and m.partition() == partition)
                self.consumer.seek(TopicPartition(topic, partition, first))
            return 0
        self.next_offsets.update(offsets)
        for record in records:
            if isinstance(record, Alert):
                self.stats.alerts[record.alert_type] += 1
                self.on_alert(record)
            else:
                self.stats.dead_letters[record.reason] += 1
                self.on_dead(record)
        self.stats.stored += len(records)
        return len(records)

    def _write(
        self,
        records: list[Alert | DeadLetter],
        offsets: dict[tuple[str, int], int],
        give_up: threading.Event | None,
    ) -> bool:
        """Write one batch with its offsets, retrying with backoff until it lands or `give_up` is set."""
        delay = 0.25
        while True:
            try:
                self.store.write_batch(records, offsets)
                return True
            except sqlite3.Error as exc:
                self.stats.failed_writes += 1
                logger.warning(
                    "writing %d records to %s failed (%s); retrying in %.2fs", len(records), self.store.path, exc, delay
                )
            if give_up is not None and give_up.wait(delay):
                logger.error(
                    "gave up writing %d records to %s; the next run copies them", len(records), self.store.path
                )
                return False
            if give_up is None:
                time.sleep(delay)
            delay = min(delay * 2, self.max_backoff_s)

    def follow(self, stop: threading.Event) -> None:
        """Copy until `stop` is set."""
        while not stop.is_set():
            self.copy_once(0.5, give_up=stop)

    def drain(self, idle_s: float = 3.0, limit_s: float = 120.0) -> None:
        """Copy everything committed so far: until each partition's end is reached, or nothing
        arrives for `idle_s` (an end can sit behind a transaction that is still open)."""
        deadline = time.monotonic() + limit_s
        ends = {(tp.topic, tp.partition): self._end_offset(tp, deadline) for tp in self.consumer.assignment()}
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            if self._reached(ends):
                return
            if self.copy_once(0.5):
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since > idle_s:
                return
        logger.warning("stopped copying after %.0fs with records still arriving", limit_s)

    def _end_offset(self, tp: TopicPartition, deadline: float) -> int:
        """The partition's end; retried while the broker is electing leaders (just restarted)."""
        while True:
            try:
                return self.consumer.get_watermark_offsets(tp, timeout=10, cached=False)[1]
            except KafkaException as exc:
                if time.monotonic() > deadline:
                    raise
                logger.info("end of %s/%d not known yet (%s); asking again", tp.topic, tp.partition, exc)
                time.sleep(1.0)

    def _reached(self, ends: dict[tuple[str, int], int]) -> bool:
        positions = {(tp.topic, tp.partition): tp.offset for tp in self.consumer.position(self.consumer.assignment())}
        for key, end in ends.items():
            position = max(positions.get(key, -1), self.next_offsets.get(key, -1))
            if end > 0 and position < end:
                return False
        return True

    def close(self) -> None:
        self.consumer.close()


def _describe(assignment: list[TopicPartition]) -> str:
    return ", ".join(
        f"{tp.topic}/{tp.partition}@{'start' if tp.offset == OFFSET_BEGINNING else tp.offset}" for tp in assignment
    )
