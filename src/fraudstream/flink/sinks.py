"""Alerts and dead letters to Kafka.

PyFlink's own DataStream Kafka sink can only serialise the whole record as the key, so the
sinks are our JVM class (io.fraudstream.flink.sinks.KafkaSinks) over rows of a text key and
a JSON value. (They were Table API Kafka tables once, which cost every run seconds of SQL
planning at start-up.)

Both sinks are exactly-once by default (`kafka.delivery`): each subtask writes inside a Kafka
transaction that commits when the checkpoint covering those records completes, so a reader
with `isolation.level=read_committed` never sees an alert twice, nor one a crash took back.
`at-least-once` trades that for latency: records are visible as soon as the broker has them
(not a checkpoint later), and a restart may write some again; the store and the dashboard
still show each once, since alerts and dead letters are stored by their deterministic ids.
Transactional ids start with `<prefix>-alerts` / `<prefix>-dead-letters`; the prefix
(default: the job's group id) must be unique per running job, or the jobs fence each other.

The producers keep Kafka's default record limit (`max.request.size` 1 MiB, as the broker's
`message.max.bytes`): a record over it fails the job, which restarts and fails again on the
same record. Alerts stay far below it by construction: ids are at most 256 characters and every
list in an alert's details at most `detectors.detail_list_max` (at most 200) entries, so even
the largest alert is a few hundred kilobytes (`tests/kafka/test_big_alerts.py`).
"""

from __future__ import annotations

import orjson
from pyflink.common import Row, Types
from pyflink.datastream import DataStream, StreamExecutionEnvironment

from fraudstream.config import Settings
from fraudstream.kafka.clients import java_properties

_ROW = Types.ROW_NAMED(["k", "v"], [Types.STRING(), Types.STRING()])


def alert_record(alert) -> Row:
    """Key: the user or device the alert is about; value: the alert as JSON."""
    return Row(alert.key, orjson.dumps(alert.to_dict()).decode())


def dead_letter_record(dead) -> Row:
    """Key: the reason (so one reason's letters stay in order); value: the dead letter as JSON."""
    return Row(dead.reason, orjson.dumps(dead.to_dict()).decode())


def attach_kafka_sinks(
    env: StreamExecutionEnvironment, settings: Settings, alerts: DataStream, dead_letters: DataStream
) -> None:
    from pyflink.java_gateway import get_gateway

    k = settings.kafka
    n = settings.pipeline.parallelism_of("sinks")
    jvm = get_gateway().jvm
    producer = jvm.java.util.Properties()
    for name, value in (java_properties(k) | {"transaction.timeout.ms": str(k.transaction_timeout_ms)}).items():
        producer.setProperty(name, value)
    for name, stream, to_row, topic, suffix in (
        ("alerts_out", alerts, alert_record, k.alerts_topic, "alerts"),
        ("dead_letters_out", dead_letters, dead_letter_record, k.dead_letter_topic, "dead-letters"),
    ):
        rows = stream.map(to_row, output_type=_ROW).name(f"to-{name}").uid(f"to-{name}").set_parallelism(n)
        prefix = f"{settings.transactional_id_prefix}-{suffix}"
        jvm.io.fraudstream.flink.sinks.KafkaSinks.attach(
            rows._j_data_stream, topic, producer, k.delivery == "exactly-once", prefix, f"sink-{name}", n
        )
