"""Copies committed alerts and dead letters from Kafka into the store (SQLite or PostgreSQL),
exactly once.

Why the store is fed from the topics, and not written from inside the Flink job: the job's
Kafka sinks are transactional, so the topics hold exactly the alerts of the checkpoints
that completed, however often the job crashed and replayed. Copying those (read_committed)
and storing, in the same database transaction as the rows (SQLite's or PostgreSQL's), the
offset up to which they were copied, makes the store an exact image of the topics: a crash of
this copier between two batches repeats nothing and skips nothing, because the rows and the
position commit or roll back together. A writer inside the job could only be tied to checkpoints by
idempotent replays, which leave no key for dead letters, and would have to reach the store
from every task; this copier can run beside any cluster (`fraudstream store follow`).

What keeps that image exact, beyond the shared transaction:
- Each copied dead letter is keyed by its place in its topic (`letter_id`,
  `topic/partition@offset`), so copying the topic again (a store that lost its positions)
  stores nothing twice, as `alert_id` already does for alerts.
- A position is only meaningful for the topic it was taken in: the store records each
  topic's id and its cluster's id (`source_topics`) and refuses a topic of the same name
  that is another one (deleted and created again, a wiped or another broker), whose offsets
  would silently skip records.
- One copier per store (`CopierLock`), and each batch moves the positions only from where
  it began (`AlertStore.write_batch`): two copiers can neither copy twice nor move back.
- A record that cannot be stored (a foreign producer's malformed alert) becomes a dead
  letter of the copier (`unstorable`, keyed by its place) and copying goes on; it must not
  stall the copier (retried forever) or kill it. Any other failure ends `follow` with the
  error in `failure`, which `fraudstream run` turns into the end of the run, in one line.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicCollection, TopicPartition
from confluent_kafka.admin import AdminClient

from fraudstream.config import Settings
from fraudstream.detectors.base import Alert
from fraudstream.errors import UserFacingError
from fraudstream.events.model import DeadLetter
from fraudstream.events.parse import MAX_EVENT_TIME
from fraudstream.kafka.clients import client_config
from fraudstream.metrics.process import count_stored, set_copier_lag
from fraudstream.store import db
from fraudstream.store.alert_store import AlertStore
from fraudstream.store.lock import CopierLock

logger = logging.getLogger(__name__)


@dataclass
class MirrorStats:
    alerts: Counter[str] = field(default_factory=Counter)
    dead_letters: Counter[str] = field(default_factory=Counter)
    unstorable: int = 0
    stored: int = 0
    failed_writes: int = 0


class SourceChanged(UserFacingError):
    """The store was copied from another topic (or cluster) of the same name."""


class Unstorable(ValueError):
    """A record of the alerts or dead-letter topic that is not what the job writes there."""


_INT64 = 2**63
_ALERT_TEXT = ("alert_id", "alert_type", "severity", "key", "user_id", "device_id", "transaction_id", "message")
_ALERT_FIELDS = frozenset(
    (*_ALERT_TEXT, "amount", "event_time", "details", "detected_at", "risk", "held_back", "rule_version")
)
# Written by a job without the model (or before it) as absent: no risk, not held back.
_ALERT_OPTIONAL = frozenset(("details", "detected_at", "risk", "held_back", "rule_version"))
_DEAD_FIELDS = frozenset(("reason", "detail", "raw", "seen_at", "event_time"))


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and -_INT64 <= v < _INT64  # SQLite INTEGER, PostgreSQL BIGINT


def _object(value: bytes | None, fields: frozenset[str], optional: frozenset[str]) -> dict:
    """The record as a dict with exactly the fields the job writes (`optional` may be missing)."""
    if value is None:
        raise Unstorable("no value (a tombstone)")
    try:
        d = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise Unstorable(f"not JSON ({exc})") from None
    if not isinstance(d, dict):
        raise Unstorable(f"a JSON {type(d).__name__}, not an object")
    missing = sorted(fields - optional - d.keys())
    unknown = sorted(d.keys() - fields)
    if missing or unknown:
        raise Unstorable(
            ", ".join(([f"missing {missing}"] if missing else []) + ([f"unknown fields {unknown}"] if unknown else []))
        )
    return d


def _wrong(name: str, want: str, got: object) -> Unstorable:
    return Unstorable(f"{name} must be {want}, got {type(got).__name__} {orjson.dumps(got).decode()[:40]}")


def _is_time(value: object) -> bool:
    """Epoch milliseconds the console can show (the contract's range): a foreign record's
    2**62 would pass as an integer, then fail the alert line after it was stored."""
    return _is_int(value) and 0 <= value <= MAX_EVENT_TIME  # type: ignore[operator]


def _alert(value: bytes | None) -> Alert:
    """An alert as the job writes it, every field of the type the store and console expect."""
    d = _object(value, _ALERT_FIELDS, _ALERT_OPTIONAL)
    for name in _ALERT_TEXT:
        if not isinstance(d[name], str):
            raise _wrong(name, "a string", d[name])
    if not (_is_int(d["amount"]) or isinstance(d["amount"], float)):  # orjson never gives NaN
        raise _wrong("amount", "a number", d["amount"])
    if not _is_time(d["event_time"]):
        raise _wrong("event_time", "epoch milliseconds", d["event_time"])
    if not isinstance(d.get("details", {}), dict):
        raise _wrong("details", "an object", d["details"])
    if d.get("detected_at") is not None and not _is_time(d["detected_at"]):
        raise _wrong("detected_at", "epoch milliseconds", d["detected_at"])
    risk = d.get("risk")
    if risk is not None:
        if isinstance(risk, bool) or not isinstance(risk, int | float) or not 0 <= risk <= 1:
            raise _wrong("risk", "a number from 0 to 1 or null", risk)
        d["risk"] = float(risk)
    if not isinstance(d.get("held_back", False), bool):
        raise _wrong("held_back", "true or false", d["held_back"])
    version = d.get("rule_version")
    if version is not None and not (_is_int(version) and 0 <= version < 2**62):
        raise _wrong("rule_version", "a whole number from 0 or null", version)
    return Alert(**d)


def _dead_letter(value: bytes | None, letter_id: str) -> DeadLetter:
    d = _object(value, _DEAD_FIELDS, frozenset(("event_time",)))
    for name in ("reason", "detail", "raw"):
        if not isinstance(d[name], str):
            raise _wrong(name, "a string", d[name])
    if not _is_time(d["seen_at"]):
        raise _wrong("seen_at", "epoch milliseconds", d["seen_at"])
    if d.get("event_time") is not None and not _is_time(d["event_time"]):
        raise _wrong("event_time", "epoch milliseconds", d["event_time"])
    return DeadLetter(**d, letter_id=letter_id)


def copier_lag(low: int, high: int, position: int, next_offset: int) -> int:
    """Records of a partition not in the store yet: its end minus how far the store has copied,
    which is at least the partition's low offset (records before it are deleted by retention or
    compaction: nothing is left to copy there, so a copier that has copied nothing yet is not
    behind by them). `position` is the consumer's (-1 when unknown), `next_offset` the store's."""
    return max(0, high - max(position, next_offset, low))


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
        self.lock = CopierLock(store.location)
        self.lock.acquire()  # before reading any position: they are this copier's from now on
        try:
            self._start(settings, store, on_alert, on_dead, batch_size)
        except BaseException:
            self.lock.release()
            raise

    def _start(
        self,
        settings: Settings,
        store: AlertStore,
        on_alert: Callable[[Alert], None],
        on_dead: Callable[[DeadLetter], None],
        batch_size: int | None,
    ) -> None:
        k = settings.kafka
        self.store = store
        self.failure: BaseException | None = None
        self.max_raw_chars = settings.store.dead_letter_max_chars
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
                    # No group offsets are used: the position lives in the store.
                    "group.id": f"fraudstream-store-{os.getpid()}",
                    "enable.auto.commit": False,
                    "enable.auto.offset.store": False,
                    "isolation.level": "read_committed",
                    "auto.offset.reset": "earliest",
                },
            )
        )
        self.next_offsets: dict[tuple[str, int], int] = {}
        self.identities: dict[str, tuple[str | None, str | None]] = {}
        assignment = []
        try:
            topic_ids = self._topic_ids(settings)
            for topic in self.kinds:
                cluster = self.consumer.list_topics(topic, timeout=k.connect_timeout_s)
                meta = cluster.topics[topic]
                if meta.error is not None:
                    raise RuntimeError(f"cannot read topic {topic}: {meta.error.str()}")
                self._check_identity(topic, topic_ids.get(topic), cluster.cluster_id)
                assignment += self._positions(topic, sorted(meta.partitions))
        except BaseException:
            self.consumer.close()
            raise
        self.consumer.assign(assignment)
        logger.info("copying %s into %s from %s", ", ".join(self.kinds), store.location, _describe(assignment))

    def _topic_ids(self, settings: Settings) -> dict[str, str]:
        """Each topic's id (KIP-516), where the broker gives one; without, only the cluster is checked."""
        admin = AdminClient(client_config(settings.kafka))
        try:
            futures = admin.describe_topics(
                TopicCollection(list(self.kinds)), request_timeout=settings.kafka.connect_timeout_s
            )
            ids = {name: str(f.result().topic_id) for name, f in futures.items()}
        except Exception as exc:  # an old broker, or no permission to describe: the cluster id still guards
            logger.warning("cannot read the topics' ids (%s); checking only the cluster's", exc)
            return {}
        return {name: i for name, i in ids.items() if i and i != "AAAAAAAAAAAAAAAAAAAAAA"}  # all-zero: unknown

    def _check_identity(self, topic: str, topic_id: str | None, cluster_id: str | None) -> None:
        """Refuse positions taken in another topic or cluster under this name; record this one."""
        known = self.store.source_identity(topic)
        copied = bool(self.store.stored_offsets(topic))
        if known is not None and copied:
            was_topic, was_cluster = known
            if was_cluster and cluster_id and was_cluster != cluster_id:
                what = f"cluster {cluster_id}, not cluster {was_cluster}"
            elif was_topic and topic_id and was_topic != topic_id:
                what = f"topic id {topic_id}, not {was_topic} (deleted and created again?)"
            else:
                what = ""
            if what:
                raise SourceChanged(
                    f"{self.store.location} was copied from another topic named {topic}: the broker's {topic} is {what}, "
                    "and the stored positions would skip its records; give this run a new store "
                    "(--data-dir, store.db_path or store.url), or move the old one away"
                )
        elif copied:
            logger.warning(
                "%s has positions for %s from before topics were identified; recording them", self.store.location, topic
            )
        if known != (topic_id, cluster_id):  # recorded with the next batch (its write is retried)
            self.identities[topic] = (topic_id, cluster_id)

    def _positions(self, topic: str, partitions: list[int]) -> list[TopicPartition]:
        assignment = []
        stored = self.store.stored_offsets(topic)
        for partition in partitions:
            offset = stored.get(partition, OFFSET_BEGINNING)
            assignment.append(TopicPartition(topic, partition, offset))
            if partition in stored:  # already copied up to here: `drain` needs nothing before it
                self.next_offsets[(topic, partition)] = offset
        return assignment

    # ------------------------------------------------------------------ copying
    def copy_once(self, timeout_s: float, give_up: threading.Event | None = None) -> int:
        """Copy what arrives within `timeout_s` (at most one batch); returns records copied."""
        messages = self.consumer.consume(self.batch_size, timeout_s)
        records: list[Alert | DeadLetter] = []
        origins: list[tuple[str, bytes | None]] = []  # each record's place and value
        after: dict[tuple[str, int], int] = {}
        for msg in messages:
            if msg.error():
                if msg.error().code() != KafkaError._PARTITION_EOF:
                    logger.warning("reading %s failed: %s", msg.topic(), msg.error().str())
                continue
            topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
            after[(topic, partition)] = offset + 1
            place = f"{topic}/{partition}@{offset}"
            try:
                records.append(
                    _alert(msg.value()) if self.kinds[topic] == "alert" else _dead_letter(msg.value(), place)
                )
            except Unstorable as exc:
                self.stats.unstorable += 1
                logger.warning("%s cannot be stored (%s): kept as a dead letter", place, exc)
                records.append(self._unstorable(msg.value(), place, str(exc)))
            origins.append((place, msg.value()))
        if not after:
            return 0
        # Each partition's position moves from where this batch began (None: never copied).
        offsets = {key: (self.next_offsets.get(key), end) for key, end in after.items()}
        try:
            written = self._write(records, offsets, give_up)
        except db.DATA_ERRORS as exc:
            records = self.set_aside(records, origins, exc)
            written = self._write(records, offsets, give_up)
        if not written:
            # Not stored: go back, so these records are read again (now or by the next run).
            for (topic, partition), _ in offsets.items():
                first = min(m.offset() for m in messages if m.topic() == topic and m.partition() == partition)
                self.consumer.seek(TopicPartition(topic, partition, first))
            return 0
        self.next_offsets.update(after)
        count_stored(records)
        for record in records:
            if isinstance(record, Alert):
                self.stats.alerts[record.alert_type] += 1
                self.on_alert(record)
            else:
                self.stats.dead_letters[record.reason] += 1
                self.on_dead(record)
        self.stats.stored += len(records)
        return len(records)

    def set_aside(
        self, records: list[Alert | DeadLetter], origins: list[tuple[str, bytes | None]], error: Exception
    ) -> list[Alert | DeadLetter]:
        """The batch with each record the database refuses (a DataError: a value it cannot hold,
        the same on every retry) replaced by an `unstorable` dead letter of its place, as a
        malformed record is; `error` is raised again if no single record is to blame."""
        refused = self.store.refused(records)
        if not refused:
            raise error
        out = list(records)
        for i, why in refused.items():
            place, value = origins[i]
            self.stats.unstorable += 1
            logger.warning("%s cannot be stored (the store refused it: %s): kept as a dead letter", place, why)
            out[i] = self._unstorable(value, place, f"the store refused it: {why}")
        return out

    def _unstorable(self, value: bytes | None, place: str, why: str) -> DeadLetter:
        raw = "" if value is None else value.decode(errors="replace")
        if len(raw) > self.max_raw_chars:
            raw = raw[: self.max_raw_chars] + f"...[truncated {len(raw) - self.max_raw_chars} chars]"
        return DeadLetter("unstorable", f"{place}: {why}", raw, int(time.time() * 1000), letter_id=place)

    def _write(
        self,
        records: list[Alert | DeadLetter],
        offsets: dict[tuple[str, int], tuple[int | None, int]],
        give_up: threading.Event | None,
    ) -> bool:
        """Write one batch with its offsets, retrying with backoff until it lands or `give_up` is set.

        Only what may pass is retried (a lock held too long, a disk error, a PostgreSQL server
        restarting: `db.TRANSIENT`);
        anything else (an offset conflict, a corrupt file, a value the store refuses) would fail
        forever, so it is raised (a refused value: see `set_aside`)."""
        delay = 0.25
        retry = False
        while True:
            try:
                # retry: a lost COMMIT reply left the store at this batch's end (see write_batch)
                self.store.write_batch(records, offsets, self.identities, retry=retry)
                self.identities = {}
                return True
            except db.TRANSIENT as exc:
                retry = True
                self.stats.failed_writes += 1
                logger.warning(
                    "writing %d records to %s failed (%s); retrying in %.2fs",
                    len(records),
                    self.store.location,
                    exc,
                    delay,
                )
            if give_up is not None and give_up.wait(delay):
                logger.error(
                    "gave up writing %d records to %s; the next run copies them", len(records), self.store.location
                )
                return False
            if give_up is None:
                time.sleep(delay)
            delay = min(delay * 2, self.max_backoff_s)

    def follow(self, stop: threading.Event) -> None:
        """Copy until `stop` is set, or until copying fails: then `failure` holds why (a thread
        that died with it would leave the run going without a copier, silently)."""
        try:
            while not stop.is_set():
                self.copy_once(0.5, give_up=stop)
                self.report_lag()
        except BaseException as exc:
            # For app.log only (`file_only`, see cli.logs): the run ends with this in one line.
            logger.error("the store's copier stopped: %s", exc, exc_info=True, extra={"file_only": True})
            self.failure = exc

    def report_lag(self) -> None:
        """Set `fraudstream_copier_lag_records` per partition: its end as the copier's last fetch
        saw it (librdkafka's cached watermark, no request to the broker) minus how far the store
        has copied. Where the position is past the last record copied (a transaction's commit
        marker takes an offset of its own), the position counts."""
        assignment = self.consumer.assignment()
        positions = {(tp.topic, tp.partition): tp.offset for tp in self.consumer.position(assignment)}
        for tp in assignment:
            key = (tp.topic, tp.partition)
            low, high = self.consumer.get_watermark_offsets(tp, cached=True)
            if high < 0:
                continue  # not fetched yet
            set_copier_lag(
                tp.topic, tp.partition, copier_lag(low, high, positions.get(key, -1), self.next_offsets.get(key, 0))
            )

    def drain(self, idle_s: float = 3.0, limit_s: float = 120.0) -> None:
        """Copy everything committed so far: until each partition's end is reached, or nothing
        arrives for `idle_s` (an end can sit behind a transaction that is still open)."""
        deadline = time.monotonic() + limit_s
        ends = {(tp.topic, tp.partition): self._end_offset(tp, deadline) for tp in self.consumer.assignment()}
        quiet_since = time.monotonic()
        # A write that keeps failing gives up at the deadline too (its records stay for the next run).
        give_up = threading.Event()
        timer = threading.Timer(max(0.0, deadline - time.monotonic()), give_up.set)
        timer.daemon = True
        timer.start()
        try:
            while time.monotonic() < deadline:
                if self._reached(ends):
                    self.report_lag()
                    return
                if self.copy_once(0.5, give_up=give_up):
                    quiet_since = time.monotonic()
                elif time.monotonic() - quiet_since > idle_s:
                    self.report_lag()
                    return
        finally:
            timer.cancel()
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
        try:
            self.consumer.close()
        finally:
            self.lock.release()


def _describe(assignment: list[TopicPartition]) -> str:
    return ", ".join(
        f"{tp.topic}/{tp.partition}@{'start' if tp.offset == OFFSET_BEGINNING else tp.offset}" for tp in assignment
    )
