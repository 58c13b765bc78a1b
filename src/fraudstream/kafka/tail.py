"""`fraudstream alerts tail`: follow the alerts topic, one readable line per alert."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

import orjson
from confluent_kafka import Consumer, KafkaError

from fraudstream.cli.format import alert_line
from fraudstream.config import KafkaSettings
from fraudstream.detectors.base import Alert
from fraudstream.kafka.clients import client_config, connect_admin, partition_count

logger = logging.getLogger(__name__)


def alert_from_json(value: bytes) -> Alert:
    return Alert(**orjson.loads(value))


def tail_alerts(
    k: KafkaSettings,
    echo: Callable[[str], None],
    from_beginning: bool = False,
    max_alerts: int | None = None,
    idle_timeout_s: float | None = None,
    topic: str | None = None,
) -> int:
    """Print alerts as they are committed; returns how many were printed."""
    topic = topic or k.alerts_topic
    partition_count(connect_admin(k), topic)
    consumer = Consumer(
        client_config(
            k,
            **{
                # A private group: tailing never moves anyone else's offsets.
                "group.id": f"fraudstream-tail-{os.getpid()}-{time.time_ns()}",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest" if from_beginning else "latest",
                # Never an alert of an aborted transaction, once the job's sink is
                # transactional (exactly-once); harmless with today's at-least-once sink.
                "isolation.level": "read_committed",
            },
        )
    )
    consumer.subscribe([topic])
    shown = 0
    last_seen = time.monotonic()
    try:
        while True:
            if max_alerts is not None and shown >= max_alerts:
                break
            if idle_timeout_s is not None and time.monotonic() - last_seen > idle_timeout_s:
                break
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() != KafkaError._PARTITION_EOF:
                    logger.warning("consumer error: %s", msg.error().str())
                continue
            last_seen = time.monotonic()
            try:
                line = alert_line(alert_from_json(msg.value()))
            except (orjson.JSONDecodeError, TypeError) as exc:
                line = f"UNREADABLE alert at partition {msg.partition()} offset {msg.offset()}: {exc}"
            echo(line)
            shown += 1
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
    return shown
