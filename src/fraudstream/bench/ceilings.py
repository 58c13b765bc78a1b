"""The ceilings a job run is compared with: what Kafka alone and the rules alone can do here.

A job's throughput means little on its own (it depends on the machine, the broker and the
data); as a fraction of these ceilings, measured in the same run over the same records, it
says how much the engine costs. Neither ceiling does any work the job could skip: the Kafka
ceiling moves the bytes the job moves without looking at them, the Python ceiling runs the
job's parsing and rules without moving anything.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from fraudstream.config import DetectorSettings, KafkaSettings
from fraudstream.detectors import AlertDeduplicator, build_detectors
from fraudstream.detectors.replay import replay
from fraudstream.errors import UserFacingError
from fraudstream.events.model import Order
from fraudstream.events.parse import parse_record
from fraudstream.kafka.clients import client_config, connect_admin, ensure_topics, partition_count

logger = logging.getLogger(__name__)

# Large fetches so that the reader, not the fetch protocol, sets the pace (the topic is
# fully written before a pass starts, so a fetch never has to wait for data).
_FETCH = {
    "fetch.max.bytes": 64 * 1024 * 1024,
    "max.partition.fetch.bytes": 16 * 1024 * 1024,
    "queued.min.messages": 500_000,
    "queued.max.messages.kbytes": 256 * 1024,
}
_BATCH = 10_000


class CeilingError(UserFacingError):
    """A ceiling cannot be measured (too few records in the raw topic, a stuck broker)."""


def kafka_ceiling(
    k: KafkaSettings,
    n: int,
    alerts: int,
    alert_bytes: int = 450,
    commit_interval_s: float = 1.0,
    idle_timeout_s: float = 30.0,
) -> dict[str, Any]:
    """Kafka's ceiling: read the first `n` raw records and write `alerts` alerts, nothing else.

    The alerts are written by a transactional producer that commits every `commit_interval_s`,
    because the job's sink writes in transactions committed at checkpoints; a cheaper
    at-least-once producer would flatter Kafka. The records are read as the job reads them
    (read_committed, all partitions from the start) and never decoded. A consume-only pass,
    run first, shows how much of the time is the reading. The alerts go to a scratch topic
    that is deleted afterwards.

    Each pass is timed from the moment its consumer, already connected, is assigned the
    partitions, to the last record read (consume only) or the last commit confirmed. Timing
    from the first record received instead would leave out the first fetch response, which
    with these fetch sizes can be most of a topic of a few hundred thousand orders.
    """
    if n < 1 or alerts < 0 or alert_bytes < 0:
        raise ValueError(f"need n >= 1, alerts >= 0 and alert_bytes >= 0, got {n}, {alerts}, {alert_bytes}")
    consume_only = _consume_only(k, n, idle_timeout_s)
    admin = connect_admin(k)
    scratch = f"bench-ceiling-{uuid.uuid4().hex[:12]}"
    ensure_topics(admin, {scratch: partition_count(admin, k.raw_topic)})
    try:
        result = _consume_and_produce(k, n, alerts, alert_bytes, scratch, commit_interval_s, idle_timeout_s)
    finally:
        _delete_topic(admin, scratch)
    result["consume_only_events_per_s"] = consume_only["events_per_s"]
    result["consume_only_seconds"] = consume_only["seconds"]
    result["scratch_topic"] = scratch
    logger.info(
        "kafka ceiling: %.0f events/s (%d records, %d alerts in %.2fs); consume only %.0f events/s",
        result["events_per_s"],
        n,
        result["alerts_produced"],
        result["seconds"],
        consume_only["events_per_s"],
    )
    return result


def python_ceiling(values: Sequence[bytes], detectors: DetectorSettings) -> dict[str, Any]:
    """The rules' ceiling: parse `values` and replay the job's detectors and cooldown over
    them in this one process, the same logic the job runs per key, without any engine."""
    total = len(values)
    step = max(total // 10, 1)
    orders: list[Order] = []
    dead = 0
    logger.info("python ceiling: parsing %d records", total)
    start = time.perf_counter()
    for i, value in enumerate(values, 1):
        parsed = parse_record(value)
        if isinstance(parsed, Order):
            orders.append(parsed)
        elif parsed is not None:
            dead += 1
        if i % step == 0:
            logger.info("python ceiling: parsed %d of %d", i, total)
    parsed_at = time.perf_counter()
    logger.info("python ceiling: running the rules over %d orders", len(orders))
    found = replay(orders, build_detectors(detectors), AlertDeduplicator.from_settings(detectors))
    end = time.perf_counter()
    seconds = end - start
    result = {
        "events_per_s": total / seconds if seconds > 0 else 0.0,
        "seconds": seconds,
        "alerts": len(found),
        # exact (the oracle's replay): what the peers' counts are compared with
        "alerts_by_type": dict(sorted(Counter(a.alert_type for a in found).items())),
        "parse_seconds": parsed_at - start,
        "rules_seconds": end - parsed_at,
        "records": total,
        "dead_letters": dead,
    }
    logger.info(
        "python ceiling: %.0f events/s (%d records, %d alerts; parse %.2fs, rules %.2fs)",
        result["events_per_s"],
        total,
        len(found),
        result["parse_seconds"],
        result["rules_seconds"],
    )
    return result


def read_values(k: KafkaSettings, n: int, idle_timeout_s: float = 30.0) -> list[bytes]:
    """The values of the first `n` raw records, the same records `kafka_ceiling` reads."""
    consumer, quotas = _open_reader(k, n)
    values: list[bytes] = []
    try:
        for batch in _batches(consumer, k.raw_topic, quotas, n, idle_timeout_s, "read"):
            values.extend(m.value() or b"" for m in batch)
    finally:
        consumer.close()
    return values


# ----------------------------------------------------------------- reading


def _open_reader(k: KafkaSettings, n: int) -> tuple[Consumer, dict[int, int]]:
    """A consumer assigned to every raw partition from its start, and how many records to
    take from each: `n` shared in proportion to the partitions' sizes, so that every pass
    (and `read_values`) reads exactly the same records even when the topic holds more."""
    consumer = Consumer(
        client_config(
            k,
            **{
                "group.id": f"bench-ceiling-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                "isolation.level": "read_committed",
                **_FETCH,
            },
        )
    )
    try:
        partitions = sorted(consumer.list_topics(k.raw_topic, timeout=10).topics[k.raw_topic].partitions)
        marks = {p: consumer.get_watermark_offsets(TopicPartition(k.raw_topic, p), timeout=10) for p in partitions}
        sizes = {p: high - low for p, (low, high) in marks.items()}
        quotas = _share(n, sizes)
        if quotas is None:
            raise CeilingError(f"topic '{k.raw_topic}' holds {sum(sizes.values())} records, fewer than the {n} asked")
        consumer.assign([TopicPartition(k.raw_topic, p, marks[p][0]) for p in partitions if quotas[p]])
    except BaseException:
        consumer.close()
        raise
    return consumer, quotas


def _share(n: int, sizes: dict[int, int]) -> dict[int, int] | None:
    """Split `n` over partitions in proportion to `sizes` (largest remainder); None if too few."""
    total = sum(sizes.values())
    if total < n:
        return None
    if total == 0:
        return dict.fromkeys(sizes, 0)
    quotas = {p: size * n // total for p, size in sizes.items()}
    by_remainder = sorted(sizes, key=lambda p: (-(sizes[p] * n % total), p))
    for p in by_remainder[: n - sum(quotas.values())]:
        quotas[p] += 1
    return quotas


def _batches(
    consumer: Consumer, topic: str, quotas: dict[int, int], n: int, idle_timeout_s: float, what: str
) -> Iterator[list[Message]]:
    """Batches of records until every partition gave its quota; records past a quota are
    dropped (and the partition paused), so the total is exactly `n`."""
    left = {p: q for p, q in quotas.items() if q}
    taken = 0
    remaining = n
    step = max(n // 10, 1)
    next_log = step
    last = time.monotonic()
    while left:
        # consume() waits for a full batch: never ask for more than are due, or the last
        # call would sit out its timeout on a topic that holds exactly `n`.
        msgs = consumer.consume(min(_BATCH, remaining), timeout=0.2)
        if not msgs:
            if time.monotonic() - last > idle_timeout_s:
                raise CeilingError(
                    f"topic '{topic}' gave {taken} of {n} records, then nothing for {idle_timeout_s:g}s "
                    "(an open transaction on it, or records lost to retention?)"
                )
            continue
        last = time.monotonic()
        batch = []
        for m in msgs:
            err = m.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    continue
                raise KafkaException(err)
            p = m.partition()
            want = left.get(p)
            if want is None:
                continue
            batch.append(m)
            if want == 1:
                del left[p]
                consumer.pause([TopicPartition(topic, p)])
            else:
                left[p] = want - 1
        taken += len(batch)
        remaining -= len(batch)
        if taken >= next_log:
            logger.info("kafka ceiling (%s): %d of %d records", what, taken, n)
            next_log = (taken // step + 1) * step
        if batch:
            yield batch


def _consume_only(k: KafkaSettings, n: int, idle_timeout_s: float) -> dict[str, float]:
    consumer, quotas = _open_reader(k, n)
    start = time.perf_counter()
    try:
        for _ in _batches(consumer, k.raw_topic, quotas, n, idle_timeout_s, "consume only"):
            pass
        end = time.perf_counter()
    finally:
        consumer.close()
    seconds = end - start
    return {"events_per_s": n / seconds if seconds > 0 else 0.0, "seconds": seconds}


# ----------------------------------------------------------------- writing


class _Deliveries:
    """Counts confirmed deliveries; the first failure is kept to be raised from the loop."""

    def __init__(self) -> None:
        self.ok = 0
        self.error: KafkaError | None = None

    def __call__(self, err: KafkaError | None, _msg: Message) -> None:
        if err is None:
            self.ok += 1
        elif self.error is None:
            self.error = err


def _consume_and_produce(
    k: KafkaSettings,
    n: int,
    alerts: int,
    alert_bytes: int,
    scratch: str,
    commit_interval_s: float,
    idle_timeout_s: float,
) -> dict[str, Any]:
    producer = Producer(
        client_config(
            k,
            **{
                "transactional.id": scratch,
                "enable.idempotence": True,
                "acks": "all",
                "transaction.timeout.ms": k.transaction_timeout_ms,
            },
        )
    )
    producer.init_transactions(k.connect_timeout_s)
    payload = bytes(alert_bytes)
    delivered = _Deliveries()
    consumer, quotas = _open_reader(k, n)
    consumed = produced = commits = 0
    start = last_commit = time.perf_counter()
    try:
        producer.begin_transaction()
        for batch in _batches(consumer, k.raw_topic, quotas, n, idle_timeout_s, "consume and produce"):
            now = time.perf_counter()
            for m in batch:
                consumed += 1
                # Alerts spread evenly: after `consumed` records, consumed * alerts // n are out.
                due = consumed * alerts // n
                while produced < due:
                    _produce(producer, scratch, m.key(), payload, delivered)
                    produced += 1
            producer.poll(0)
            if delivered.error is not None:
                raise KafkaException(delivered.error)
            if now - last_commit >= commit_interval_s:
                producer.commit_transaction()
                commits += 1
                producer.begin_transaction()
                last_commit = time.perf_counter()
        # Flushes what is left and returns once the broker confirmed the commit.
        producer.commit_transaction()
        commits += 1
        end = time.perf_counter()
    except BaseException:
        with contextlib.suppress(KafkaException):
            producer.abort_transaction(10)
        raise
    finally:
        consumer.close()
    if delivered.error is not None:
        raise KafkaException(delivered.error)
    seconds = end - start
    return {
        "events_per_s": n / seconds if seconds > 0 else 0.0,
        "seconds": seconds,
        "records": consumed,
        "alerts_produced": delivered.ok,
        "transactions": commits,
    }


def _produce(producer: Producer, topic: str, key: bytes | None, value: bytes, on_delivery: _Deliveries) -> None:
    while True:
        try:
            producer.produce(topic, value, key, on_delivery=on_delivery)
            return
        except BufferError:
            # The local queue is full: serve delivery reports until there is room.
            producer.poll(0.1)


def _delete_topic(admin: AdminClient, topic: str) -> None:
    """Delete the scratch topic; a failure is logged, not raised (the measurement stands)."""
    try:
        for future in admin.delete_topics([topic], operation_timeout=30).values():
            future.result()
    except KafkaException as exc:
        logger.warning("could not delete the scratch topic '%s': %s", topic, exc)
