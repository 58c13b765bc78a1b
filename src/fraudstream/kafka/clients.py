"""Client settings for both Kafka clients we use, derived from one `KafkaSettings`.

The Python tools use librdkafka (confluent-kafka); the Flink job uses the Java client inside
the connector. Their security settings have different names, so both are derived here.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator, Mapping
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from fraudstream.config import KafkaSettings, Settings
from fraudstream.errors import UserFacingError

logger = logging.getLogger(__name__)
# librdkafka's own log lines (connection refused, ...) go to app.log, not the console.
librdkafka_log = logging.getLogger("fraudstream.kafka.librdkafka")
librdkafka_log.addHandler(logging.NullHandler())


class KafkaUnavailable(UserFacingError):
    """No broker answers, or a topic is missing: a one-line message for the user."""


def client_config(k: KafkaSettings, **extra: Any) -> dict[str, Any]:
    """librdkafka settings (confluent-kafka Producer, Consumer, AdminClient)."""
    conf: dict[str, Any] = {
        "bootstrap.servers": k.bootstrap_servers,
        "security.protocol": k.security_protocol,
        "logger": librdkafka_log,
    }
    if k.sasl_mechanism:
        conf["sasl.mechanism"] = k.sasl_mechanism
        conf["sasl.username"] = k.sasl_username or ""
        conf["sasl.password"] = k.sasl_password or ""
    if k.ssl_ca_location:
        conf["ssl.ca.location"] = str(k.ssl_ca_location)
    conf.update(extra)
    return conf


# flink-sql-connector-kafka carries the Kafka client relocated under this package, and JAAS
# looks login modules up by class name.
_SHADED = "org.apache.flink.kafka.shaded."


def java_properties(k: KafkaSettings) -> dict[str, str]:
    """Java client properties for the Flink connector (same meaning as `client_config`)."""
    props = {"bootstrap.servers": k.bootstrap_servers, "security.protocol": k.security_protocol}
    if k.sasl_mechanism:
        module = _SHADED + (
            "org.apache.kafka.common.security.plain.PlainLoginModule"
            if k.sasl_mechanism == "PLAIN"
            else "org.apache.kafka.common.security.scram.ScramLoginModule"
        )
        user = _jaas_quoted(k.sasl_username or "")
        password = _jaas_quoted(k.sasl_password or "")
        props["sasl.mechanism"] = k.sasl_mechanism
        props["sasl.jaas.config"] = f'{module} required username="{user}" password="{password}";'
    if k.ssl_ca_location:
        props["ssl.truststore.type"] = "PEM"
        props["ssl.truststore.location"] = str(k.ssl_ca_location)
    return props


def _jaas_quoted(text: str) -> str:
    """`text` for a double-quoted JAAS value. Kafka's parser (a StreamTokenizer) reads a
    backslash as an escape, so a password ending in one would swallow the closing quote, and
    ends a quoted value at a line break; control characters go as octal escapes, which it decodes."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return _CONTROL.sub(lambda m: f"\\{ord(m.group()):03o}", escaped)


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def connect_admin(k: KafkaSettings, timeout_s: float | None = None) -> AdminClient:
    """An admin client on a broker that answered, retrying with backoff until `timeout_s`."""
    timeout_s = k.connect_timeout_s if timeout_s is None else timeout_s
    errors: list[KafkaError] = []
    admin = AdminClient(client_config(k, error_cb=errors.append))
    deadline = time.monotonic() + timeout_s
    delay = 0.25
    warned = False
    while True:
        try:
            # A quick first try, so that the wait is announced while there is time left.
            admin.list_topics(timeout=min(5.0 if warned else 1.0, max(deadline - time.monotonic(), 0.5)))
            return admin
        except KafkaException as exc:
            admin.poll(0.2)  # delivers the client's own errors (such as a refused login) to error_cb
            refused = next((e for e in errors if e.code() == KafkaError._AUTHENTICATION), None)
            if refused is not None:
                reason = refused.str().split("SASL authentication error: ")[-1].split(" (after")[0]
                raise KafkaUnavailable(
                    f"the Kafka broker at {k.bootstrap_servers} refused our login ({reason}): "
                    "check kafka.security_protocol, kafka.sasl_mechanism, kafka.sasl_username and kafka.sasl_password"
                ) from None
            left = deadline - time.monotonic()
            if left <= 0:
                raise KafkaUnavailable(
                    f"no Kafka broker answers at {k.bootstrap_servers} (tried for {timeout_s:g}s): "
                    "start one with 'fraudstream kafka start' or set kafka.bootstrap_servers"
                ) from exc
            if not warned and left > 2:
                logger.warning("waiting for a Kafka broker at %s (up to %.0fs)", k.bootstrap_servers, left)
            warned = True
            logger.info("broker %s not reachable yet (%s); retrying in %.1fs", k.bootstrap_servers, exc, delay)
            time.sleep(min(delay, left))
            delay = min(delay * 2, 4.0)


def partition_count(admin: AdminClient, topic: str) -> int:
    """Partitions of an existing topic; a readable error when it does not exist."""
    meta = admin.list_topics(topic=topic, timeout=10)
    info = meta.topics.get(topic)
    if info is None or info.error is not None or not info.partitions:
        raise KafkaUnavailable(
            f"topic '{topic}' does not exist on {admin_servers(admin)}: "
            "create it with 'fraudstream kafka topics' (or check the kafka.*_topic settings)"
        )
    return len(info.partitions)


def admin_servers(admin: AdminClient) -> str:
    brokers = admin.list_topics(timeout=5).brokers.values()
    return ",".join(f"{b.host}:{b.port}" for b in brokers) or "the broker"


def ensure_topics(
    admin: AdminClient, topics: Mapping[str, int], configs: Mapping[str, Mapping[str, str]] | None = None
) -> list[str]:
    """Create the topics that are missing (name -> partitions, `configs`: name -> topic
    settings such as cleanup.policy); returns those created. Existing topics stay as they are."""
    existing = set(admin.list_topics(timeout=10).topics)
    configs = configs or {}
    wanted = [
        NewTopic(name, num_partitions=n, replication_factor=1, config=dict(configs.get(name, {})))
        for name, n in topics.items()
    ]
    missing = [t for t in wanted if t.topic not in existing]
    if not missing:
        return []
    created = []
    for name, future in admin.create_topics(missing, operation_timeout=30).items():
        try:
            future.result()
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
                raise KafkaUnavailable(f"cannot create topic '{name}': {exc.args[0].str()}") from None
    return created


def check_job_topics(k: KafkaSettings) -> int:
    """Fail early, in one line, when the broker or a topic the job uses is missing; returns
    the raw topic's partition count (the job runs one reader per partition)."""
    admin = connect_admin(k)
    partitions = partition_count(admin, k.raw_topic)
    for topic in (k.alerts_topic, k.dead_letter_topic):
        partition_count(admin, topic)
    return partitions


def project_topics(k: KafkaSettings, rules_topic: str | None = None) -> dict[str, int]:
    """The topics the pipeline uses, with the partitions we create them with (with
    `rules_topic`: the rules topic too, one partition)."""
    out = {k.raw_topic: k.raw_partitions, k.alerts_topic: k.raw_partitions, k.dead_letter_topic: 1}
    if rules_topic:
        out[rules_topic] = 1
    return out


def ensure_project_topics(settings: Settings) -> list[str]:
    """Create the pipeline's missing topics, the rules topic compacted; returns those created."""
    topics = project_topics(settings.kafka, settings.rules.topic)
    return ensure_topics(
        connect_admin(settings.kafka), topics, configs={settings.rules.topic: {"cleanup.policy": "compact"}}
    )


def _job_group_consumer(k: KafkaSettings) -> Consumer:
    """A consumer in the job's group that never commits by itself (it only looks or commits)."""
    return Consumer(client_config(k, **{"group.id": k.group_id, "enable.auto.commit": False}))


def end_offsets(k: KafkaSettings, topic: str) -> dict[int, int]:
    """The next offset to be written in each partition of `topic`: where a bounded run stops."""
    consumer = _job_group_consumer(k)
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions}
    finally:
        consumer.close()


def commit_offsets(k: KafkaSettings, topic: str, offsets: Mapping[int, int]) -> None:
    """Record `offsets` as the job's consumer group position (the job reads partitions by
    assignment, not as a group member, so committing from outside is allowed)."""
    consumer = _job_group_consumer(k)
    try:
        consumer.commit(offsets=[TopicPartition(topic, p, o) for p, o in offsets.items()], asynchronous=False)
    finally:
        consumer.close()


def read_topic(k: KafkaSettings, topic: str, idle_s: float = 5.0) -> Iterator[bytes]:
    """Every committed record value of `topic`, from the start to its end when called.

    Transactions still open at the end are not waited for longer than `idle_s` of silence.
    No consumer group is joined or committed to: reading leaves no trace on the cluster.
    """
    connect_admin(k).list_topics(timeout=k.connect_timeout_s)  # no broker: one readable line
    ends = {p: e for p, e in end_offsets(k, topic).items() if e > 0}
    consumer = Consumer(
        client_config(
            k,
            **{"group.id": "fraudstream-reader", "enable.auto.commit": False, "isolation.level": "read_committed"},
        )
    )
    try:
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
        last_record = time.monotonic()
        while ends and time.monotonic() - last_record < idle_s:
            msg = consumer.poll(0.5)
            if msg is None:  # past a transaction's closing marker, the position is at the end
                for tp in consumer.position([TopicPartition(topic, p) for p in ends]):
                    if tp.offset >= ends[tp.partition]:
                        ends.pop(tp.partition)
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    continue
                raise KafkaException(msg.error())
            last_record = time.monotonic()
            if msg.value() is not None:
                yield msg.value()
            if msg.offset() + 1 >= ends.get(msg.partition(), 0):
                ends.pop(msg.partition(), None)
    finally:
        consumer.close()
