"""Where orders come from: the built-in generator, a JSON-lines file, or a Kafka topic."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import orjson
from pyflink.common import Types, WatermarkStrategy
from pyflink.common.serialization import DeserializationSchema
from pyflink.datastream import DataStream, StreamExecutionEnvironment
from pyflink.datastream.connectors import Source
from pyflink.datastream.connectors.file_system import FileSource, StreamFormat
from pyflink.datastream.connectors.kafka import (
    KafkaOffsetResetStrategy,
    KafkaOffsetsInitializer,
    KafkaSource,
    KafkaTopicPartition,
)
from pyflink.datastream.connectors.number_seq import NumberSequenceSource
from pyflink.datastream.functions import MapFunction, RuntimeContext

from fraudstream.config import GeneratorSettings, KafkaSettings, Settings
from fraudstream.generator import generator_from_settings
from fraudstream.generator.pacing import Pacer

logger = logging.getLogger(__name__)

# An effectively endless sequence for "run until stopped".
_UNBOUNDED = 2**62


@dataclass(frozen=True)
class SourceSpec:
    kind: str  # "generator" | "file" | "kafka"
    path: Path | None = None

    @staticmethod
    def parse(text: str) -> SourceSpec:
        """`generator`, `file:PATH` or `kafka`; raises ValueError with a readable message."""
        if text in ("generator", "kafka"):
            return SourceSpec(text)
        if text.startswith("file:"):
            path = Path(text[len("file:") :]).expanduser()
            if not str(path) or str(path) == ".":
                raise ValueError("--source file: needs a path, e.g. file:orders.jsonl")
            if not path.is_file():
                raise ValueError(f"input file not found: {path}")
            return SourceSpec("file", path.resolve())
        raise ValueError(f"unknown source '{text}': use 'generator', 'file:PATH' or 'kafka'")

    @property
    def raw_latin1(self) -> bool:
        """Sources that hand over raw bytes as ISO-8859-1 text (so bad UTF-8 survives)."""
        return self.kind == "file"


class GenerateOrders(MapFunction):
    """Turns sequence number n into the stream's order n (a JSON line), paced to `rate`/s.

    The sequence source's position is in the checkpoint, the generator's is not: after a
    restart the first number received is where the restored source stands, and the
    (seeded) generator is brought to that order, so the stream neither repeats its first
    orders nor loses its last.
    """

    def __init__(self, cfg: GeneratorSettings) -> None:
        self.cfg = cfg

    def open(self, runtime_context: RuntimeContext | None) -> None:
        self.gen = generator_from_settings(self.cfg)
        self.next_number = 0  # the sequence number of the generator's next order
        self.pacer = Pacer(self.cfg.rate)

    def map(self, value: int) -> str:
        if value != self.next_number:
            self._move_to(value)
        self.pacer.wait()
        self.next_number = value + 1
        return orjson.dumps(self.gen.next_order()).decode()

    def _move_to(self, number: int) -> None:
        """Make order `number` the generator's next one, generating and dropping the ones before."""
        if number < self.next_number:
            self.gen = generator_from_settings(self.cfg)
            self.next_number = 0
        logger.info("generator: skipping to order %d (restored sequence position)", number)
        for _ in range(number - self.next_number):
            self.gen.next_order()
        self.next_number = number


def _raw_bytes() -> DeserializationSchema:
    """Record values as they are (bytes), so bad UTF-8 reaches the dead letters intact.

    Flink's ByteArraySchema, unlike SimpleStringSchema, survives a record without a value
    (a tombstone): it is skipped, where SimpleStringSchema fails the whole job.
    """
    from pyflink.java_gateway import get_gateway

    return DeserializationSchema(get_gateway().jvm.org.apache.flink.api.common.serialization.ByteArraySchema())


def _restartable(bounded: KafkaSource, stop_at: dict[int, int]) -> Source:
    """A bounded Kafka source that also ends after a restore or a job-wide restart, at `stop_at`.

    Restored from a checkpoint, Flink's bounded KafkaSource reads to its stopping offsets
    and then waits forever (FLINK-31006); our wrapper (jvm/src, built by `make jars`) tells
    its readers that no more splits will come once every split has been handed out. It also
    gives restored splits this run's stopping offsets: a split checkpointed by an earlier
    bounded run would stop at that run's end and skip what arrived since.
    """
    from pyflink.java_gateway import get_gateway

    jvm = get_gateway().jvm
    stops = jvm.java.util.HashMap()
    for partition, offset in stop_at.items():
        stops.put(partition, offset)
    return Source(jvm.io.fraudstream.flink.RestartableBoundedSource(bounded.get_java_function(), stops))


def _unstopped(unbounded: KafkaSource) -> Source:
    """An unbounded Kafka source whose restored splits lose the stopping offsets a bounded
    run's checkpoint gave them (else it would read to that run's end, then idle for ever)."""
    from pyflink.java_gateway import get_gateway

    wrapper = get_gateway().jvm.io.fraudstream.flink.RestartableBoundedSource
    return Source(wrapper.unbounded(unbounded.get_java_function()))


def kafka_source(k: KafkaSettings, stop_at: dict[int, int] | None = None) -> Source:
    """The raw topic as bytes; one reader per partition (see `raw_lines`). `stop_at`
    (partition -> offset) makes it bounded."""
    from fraudstream.kafka.clients import java_properties

    if k.start_from == "earliest":
        start = KafkaOffsetsInitializer.earliest()
    elif k.start_from == "latest":
        start = KafkaOffsetsInitializer.latest()
    else:
        start = KafkaOffsetsInitializer.committed_offsets(KafkaOffsetResetStrategy.EARLIEST)
    builder = (
        KafkaSource.builder()
        .set_topics(k.raw_topic)
        .set_group_id(k.group_id)
        .set_client_id_prefix(k.group_id)
        .set_starting_offsets(start)
        .set_value_only_deserializer(_raw_bytes())
        .set_properties(java_properties(k))
        # The group's position is committed when a checkpoint completes (the job's own
        # position lives in the checkpoint; the group's is for monitoring and fresh starts).
        .set_property("commit.offsets.on.checkpoint", "true")
        # Orders of an upstream producer's aborted (or still open) transactions are never
        # scored: the job sees only what was committed, as every other reader here does.
        .set_property("isolation.level", "read_committed")
        # New partitions are found every 5 minutes (the README says what that costs).
        .set_property("partition.discovery.interval.ms", "300000")
    )
    if stop_at is not None:
        stops = {KafkaTopicPartition(k.raw_topic, p): o for p, o in stop_at.items()}
        return _restartable(builder.set_bounded(KafkaOffsetsInitializer.offsets(stops)).build(), stop_at)
    return _unstopped(builder.build())


def rules_source(k: KafkaSettings, topic: str, start_offsets: dict[int, int], bounded: bool = False) -> Source:
    """The rules topic as bytes from `start_offsets` (partition -> offset; empty: the beginning).
    Its position is kept in the job's checkpoints, so a restored job reads on from where it was,
    whatever `start_offsets` says; nothing is committed to a group. `bounded` (a run that ends with
    its input): it stops at `start_offsets`, after what a restored position had still to read."""
    from fraudstream.kafka.clients import java_properties

    if start_offsets:
        start = KafkaOffsetsInitializer.offsets({KafkaTopicPartition(topic, p): o for p, o in start_offsets.items()})
    else:
        start = KafkaOffsetsInitializer.earliest()
    builder = (
        KafkaSource.builder()
        .set_topics(topic)
        .set_group_id(f"{k.group_id}-rules")
        .set_client_id_prefix(f"{k.group_id}-rules")
        .set_starting_offsets(start)
        .set_value_only_deserializer(_raw_bytes())
        .set_properties(java_properties(k))
        .set_property("commit.offsets.on.checkpoint", "false")
        .set_property("isolation.level", "read_committed")
    )
    if bounded:
        stops = start_offsets or {0: 0}
        ends = {KafkaTopicPartition(topic, p): o for p, o in stops.items()}
        return _restartable(builder.set_bounded(KafkaOffsetsInitializer.offsets(ends)).build(), stops)
    return _unstopped(builder.build())


def raw_lines(
    env: StreamExecutionEnvironment,
    spec: SourceSpec,
    settings: Settings,
    partitions: int = 1,
    stop_at: dict[int, int] | None = None,
) -> DataStream:
    """A stream of raw text lines from the chosen source (parsed later by AdmitFunction).

    A Kafka source runs one reader per partition, so that each partition's order (and with it
    its own lateness judgement and watermark) is kept until the keyed operators merge them.
    """
    gen = settings.generator
    if spec.kind == "kafka":
        return (
            env.from_source(kafka_source(settings.kafka, stop_at), WatermarkStrategy.no_watermarks(), "orders-kafka")
            .uid("orders-kafka")
            .set_parallelism(partitions)
        )
    if spec.kind == "file":
        assert spec.path is not None
        # ISO-8859-1 maps every byte to one character: invalid UTF-8 is kept, not replaced.
        source = FileSource.for_record_stream_format(
            StreamFormat.text_line_format("ISO-8859-1"), str(spec.path)
        ).build()
        return (
            env.from_source(source, WatermarkStrategy.no_watermarks(), "orders-file")
            .uid("orders-file")
            .set_parallelism(1)
        )
    end = gen.count - 1 if gen.count is not None else _UNBOUNDED
    if end < 0:
        raise ValueError("--count must be at least 1")
    seq = env.from_source(NumberSequenceSource(0, end), WatermarkStrategy.no_watermarks(), "sequence")
    # One generator instance keeps the stream deterministic and event time monotone.
    return (
        seq.set_parallelism(1)
        .map(GenerateOrders(gen), output_type=Types.STRING())
        .name("generate-orders")
        .set_parallelism(1)
    )
