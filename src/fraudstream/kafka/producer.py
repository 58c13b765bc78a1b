"""Publishing orders to the raw topic: idempotent, acks=all, keyed by user so that each
user's orders stay in one partition, in the order they were produced."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import orjson
from confluent_kafka import KafkaError, Message, Producer

from fraudstream.config import KafkaSettings
from fraudstream.generator.pacing import paced
from fraudstream.kafka.clients import client_config, connect_admin, partition_count

logger = logging.getLogger(__name__)


@dataclass
class PublishSummary:
    sent: int = 0
    delivered: int = 0
    failed: int = 0
    first_error: str | None = None
    seconds: float = 0.0
    interrupted: bool = False


def user_key(value: bytes) -> bytes | None:
    """The record key: the order's user_id, or none when the record is not a JSON object
    with one (malformed records are published as they are, for the job to dead-letter)."""
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    user = doc.get("user_id") if isinstance(doc, dict) else None
    return str(user).encode() if user is not None and not isinstance(user, dict | list) else None


class OrderPublisher:
    def __init__(self, k: KafkaSettings, topic: str | None = None) -> None:
        self.topic = topic or k.raw_topic
        admin = connect_admin(k)
        self.partitions = partition_count(admin, self.topic)
        self.producer = Producer(
            client_config(
                k,
                **{
                    "enable.idempotence": True,
                    "acks": "all",
                    "linger.ms": 5,
                    "compression.type": "lz4",
                    "delivery.timeout.ms": 120_000,
                },
            )
        )
        self.summary = PublishSummary()

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is None:
            self.summary.delivered += 1
            return
        self.summary.failed += 1
        if self.summary.first_error is None:
            self.summary.first_error = err.str()
        # One line per failed record would flood a terminal; the summary reports the first.
        logger.debug("delivery failed (key=%r): %s", msg.key(), err.str())

    def publish(
        self,
        records: Iterable[tuple[bytes | None, bytes]],
        rate: float = 0.0,
        progress: Callable[[PublishSummary], None] | None = None,
        progress_every_s: float = 2.0,
    ) -> PublishSummary:
        """Send every (key, value) record, the value a JSON line without its newline;
        Ctrl-C stops and still flushes."""
        s = self.summary
        started = last = time.monotonic()
        try:
            for key, value in paced(records, rate):
                while True:
                    try:
                        self.producer.produce(self.topic, value, key, on_delivery=self._on_delivery)
                        break
                    except BufferError:  # local queue full: let deliveries drain, then retry
                        self.producer.poll(0.1)
                s.sent += 1
                self.producer.poll(0)
                now = time.monotonic()
                if progress and now - last >= progress_every_s:
                    s.seconds = now - started
                    progress(s)
                    last = now
        except KeyboardInterrupt:
            s.interrupted = True
        finally:
            remaining = self.producer.flush(30)
            if remaining:
                s.failed += remaining
                s.first_error = s.first_error or f"{remaining} records still unsent after 30s"
            s.seconds = time.monotonic() - started
        return s
