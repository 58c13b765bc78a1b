"""Alerts and dead letters to Kafka.

The DataStream Kafka sink in PyFlink can only serialise the whole record as the key, so
the sinks are Table API Kafka tables with a raw key column and a raw JSON value column,
attached to the same job as the DataStream graph.

Both sinks are exactly-once: each subtask writes inside a Kafka transaction that commits
when the checkpoint covering those records completes, so a reader with
`isolation.level=read_committed` never sees an alert twice, nor one a crash took back.
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
from pyflink.table import DataTypes, Schema, StreamTableEnvironment, TableDescriptor

from fraudstream.config import KafkaSettings, Settings
from fraudstream.kafka.clients import java_properties

_ROW = Types.ROW_NAMED(["k", "v"], [Types.STRING(), Types.STRING()])


def alert_record(alert) -> Row:
    """Key: the user or device the alert is about; value: the alert as JSON."""
    return Row(alert.key, orjson.dumps(alert.to_dict()).decode())


def dead_letter_record(dead) -> Row:
    """Key: the reason (so one reason's letters stay in order); value: the dead letter as JSON."""
    return Row(dead.reason, orjson.dumps(dead.to_dict()).decode())


def _kafka_table(k: KafkaSettings, topic: str, transactional_id_prefix: str) -> TableDescriptor:
    builder = (
        TableDescriptor.for_connector("kafka")
        .schema(Schema.new_builder().column("k", DataTypes.STRING()).column("v", DataTypes.STRING()).build())
        .option("topic", topic)
        .option("key.format", "raw")
        .option("key.fields", "k")
        .option("value.format", "raw")
        .option("value.fields-include", "EXCEPT_KEY")
        .option("sink.delivery-guarantee", "exactly-once")
        .option("sink.transactional-id-prefix", transactional_id_prefix)
        .option("properties.transaction.timeout.ms", str(k.transaction_timeout_ms))
    )
    for name, value in java_properties(k).items():
        builder = builder.option(f"properties.{name}", value)
    return builder.build()


def attach_kafka_sinks(
    env: StreamExecutionEnvironment, settings: Settings, alerts: DataStream, dead_letters: DataStream
) -> None:
    k = settings.kafka
    n = settings.pipeline.parallelism_of("sinks")
    t_env = StreamTableEnvironment.create(env)
    statements = t_env.create_statement_set()
    for name, stream, to_row, topic, suffix in (
        ("alerts_out", alerts, alert_record, k.alerts_topic, "alerts"),
        ("dead_letters_out", dead_letters, dead_letter_record, k.dead_letter_topic, "dead-letters"),
    ):
        t_env.create_temporary_table(name, _kafka_table(k, topic, f"{settings.transactional_id_prefix}-{suffix}"))
        rows = stream.map(to_row, output_type=_ROW).name(f"to-{name}").uid(f"to-{name}").set_parallelism(n)
        statements.add_insert(name, t_env.from_data_stream(rows))
    statements.attach_as_datastream()
