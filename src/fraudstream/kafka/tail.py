"""`fraudstream alerts tail`: follow the alerts topic, one readable line per alert.

Anyone may publish to the topic: a record that is not an alert (not JSON, a field of the wrong
type) gets one `UNREADABLE` line, its text escaped and cut short, and the tail carries on.
"""

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
from fraudstream.events.text import escape_controls
from fraudstream.kafka.clients import client_config, connect_admin, partition_count

logger = logging.getLogger(__name__)

_TEXT_FIELDS = ("alert_id", "alert_type", "severity", "key", "user_id", "device_id", "transaction_id", "message")
_SHOWN_CHARS = 200  # of an unreadable record's text


def alert_from_json(value: bytes | None) -> Alert:
    """The alert a record of the alerts topic holds; ValueError when it holds none."""
    if value is None:
        raise ValueError("no value (a tombstone)")
    data = orjson.loads(value)  # orjson.JSONDecodeError is a ValueError
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    for name in _TEXT_FIELDS:
        if not isinstance(data.get(name), str):
            raise ValueError(f"'{name}' is not a string")
    for name, optional in (("amount", False), ("event_time", False), ("detected_at", True)):
        v = data.get(name)
        number = (int, float) if name == "amount" else int
        if not (optional and v is None) and (isinstance(v, bool) or not isinstance(v, number)):
            raise ValueError(f"'{name}' is not {'a number' if name == 'amount' else 'an integer'}")
    if not isinstance(data.get("details", {}), dict):
        raise ValueError("'details' is not an object")
    risk = data.get("risk")
    if risk is not None:
        if isinstance(risk, bool) or not isinstance(risk, int | float) or not 0 <= risk <= 1:
            raise ValueError("'risk' is not a number from 0 to 1 or null")
        data["risk"] = float(risk)
    if not isinstance(data.get("held_back", False), bool):
        raise ValueError("'held_back' is not true or false")
    try:
        return Alert(**data)
    except TypeError as exc:  # a field Alert does not have
        raise ValueError(str(exc)) from None


def record_line(value: bytes | None, partition: int, offset: int) -> str:
    """The line `tail` prints for one record: the alert's, or why it is none and what it holds."""
    try:
        return alert_line(alert_from_json(value))
    except (ValueError, OverflowError, OSError) as exc:  # OverflowError, OSError: an event time out of range
        text = (value or b"").decode("utf-8", errors="replace")
        if len(text) > _SHOWN_CHARS:
            text = text[:_SHOWN_CHARS] + "..."
        return escape_controls(f"UNREADABLE alert at partition {partition} offset {offset}: {exc} | {text}")


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
            echo(record_line(msg.value(), msg.partition(), msg.offset()))
            shown += 1
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
    return shown
