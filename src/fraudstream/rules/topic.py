"""The rules topic: thin Kafka IO around the pure model (fraudstream.rules.model).

The topic is compacted with one partition and keyed by the version, so reading it whole from
the beginning gives every version in publishing order. The CLI, the dashboard and the job's
driver all read it with `read_history`, which keeps exactly the versions the job accepts.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition

from fraudstream.config import Settings
from fraudstream.kafka.clients import KafkaUnavailable, client_config, connect_admin, ensure_topics
from fraudstream.rules.model import Limits, RuleError, RuleSet, from_message

logger = logging.getLogger(__name__)

COMPACTED = {"cleanup.policy": "compact"}  # as ensure_project_topics creates it


class StaleVersion(RuleError):
    """Someone published a newer version between reading the rules and publishing a change."""


@dataclass(frozen=True)
class History:
    """What the rules topic holds, as the job sees it."""

    versions: list[RuleSet] = field(default_factory=list)  # accepted, in offset order, versions increasing
    rejected: list[tuple[int, str]] = field(default_factory=list)  # (offset, reason)
    end_offsets: dict[int, int] = field(default_factory=dict)  # partition -> next offset
    topic_exists: bool = True

    @property
    def latest(self) -> RuleSet | None:
        return self.versions[-1] if self.versions else None


def ensure_rules_topic(settings: Settings) -> bool:
    """Create the rules topic (1 partition, compacted) if missing; True if it was created."""
    admin = connect_admin(settings.kafka)
    return bool(ensure_topics(admin, {settings.rules.topic: 1}, configs={settings.rules.topic: COMPACTED}))


def read_history(settings: Settings, timeout_s: float = 10.0) -> History:
    """Every message of the rules topic from the beginning to its end offsets when called,
    each checked as the job checks it. A missing topic is an empty history (version 0 rules)."""
    k, topic = settings.kafka, settings.rules.topic
    admin = connect_admin(k)  # no broker: one readable line
    meta = admin.list_topics(topic=topic, timeout=timeout_s).topics.get(topic)
    if meta is None or meta.error is not None or not meta.partitions:
        return History(topic_exists=False)
    limits = Limits.from_settings(settings)
    consumer = Consumer(
        client_config(
            k,
            **{
                "group.id": "fraudstream-rules-reader",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                "isolation.level": "read_committed",
            },
        )
    )
    versions: list[RuleSet] = []
    rejected: list[tuple[int, str]] = []
    try:
        ends = {}
        for p in meta.partitions:
            ends[p] = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)[1]
        waiting = {p for p, end in ends.items() if end > 0}
        records: list[tuple[int, int, bytes | None]] = []
        if waiting:
            consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in waiting])
        deadline = time.monotonic() + timeout_s
        while waiting:
            if time.monotonic() > deadline:
                raise KafkaUnavailable(f"reading the rules topic '{topic}' took over {timeout_s:g}s: try again")
            msg = consumer.poll(0.5)
            if msg is None:
                for tp in consumer.position([TopicPartition(topic, p) for p in waiting]):
                    if tp.offset >= ends[tp.partition]:
                        waiting.discard(tp.partition)
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    waiting.discard(msg.partition())
                    continue
                raise KafkaUnavailable(f"cannot read the rules topic '{topic}': {msg.error().str()}")
            if msg.offset() < ends[msg.partition()]:
                records.append((msg.partition(), msg.offset(), msg.value()))
            if msg.offset() + 1 >= ends[msg.partition()]:
                waiting.discard(msg.partition())
    except KafkaException as exc:
        raise KafkaUnavailable(f"cannot read the rules topic '{topic}': {exc.args[0].str()}") from None
    finally:
        consumer.close()
    for _, offset, value in sorted(records):
        if value is None:
            rejected.append((offset, "empty message (a tombstone)"))
            continue
        try:
            rules = from_message(value, limits)
        except RuleError as exc:
            rejected.append((offset, str(exc)))
            continue
        if versions and rules.version <= versions[-1].version:
            rejected.append((offset, f"stale: version {rules.version} after version {versions[-1].version}"))
            continue
        versions.append(rules)
    return History(versions, rejected, ends)


def current(settings: Settings) -> RuleSet:
    """The rules in force: the latest valid version, or the settings' own (version 0)."""
    return read_history(settings).latest or RuleSet.from_settings(settings)


def publish(settings: Settings, ruleset: RuleSet, timeout_s: float = 30.0) -> None:
    """Publish `ruleset` as its version, after checking nobody published a newer one meanwhile."""
    ensure_rules_topic(settings)
    latest = read_history(settings).latest
    newest = latest.version if latest else 0
    if ruleset.version <= newest:
        assert latest is not None
        raise StaleVersion(
            f"version {latest.version} was published by {latest.author or 'someone'} at "
            f"{when(latest.created_at)} meanwhile; run 'fraudstream rules show' and try again"
        )
    errors: list[str] = []

    def delivered(err: KafkaError | None, _msg: object) -> None:
        if err is not None:
            errors.append(err.str())

    producer = Producer(client_config(settings.kafka, **{"enable.idempotence": True, "acks": "all"}))
    try:
        producer.produce(settings.rules.topic, ruleset.to_bytes(), str(ruleset.version).encode(), on_delivery=delivered)
    except (KafkaException, BufferError) as exc:
        raise KafkaUnavailable(f"cannot publish to the rules topic '{settings.rules.topic}': {exc}") from None
    left = producer.flush(timeout_s)
    if left or errors:
        reason = errors[0] if errors else f"no acknowledgement within {timeout_s:g}s"
        raise KafkaUnavailable(f"version {ruleset.version} was not published: {reason}")
    logger.info("published rules version %d by %s: %s", ruleset.version, ruleset.author, "; ".join(ruleset.changes))


def when(ms: int) -> str:
    """Wall-clock ms as a UTC time for people."""
    if not ms:
        return "an unknown time"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
