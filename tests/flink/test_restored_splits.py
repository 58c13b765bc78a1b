"""What a restored Kafka split reads to (the JVM and our wrapper, no job): the stopping
offsets of the run that restores it, not those of the run that checkpointed it."""

from __future__ import annotations

import pytest

from fraudstream.config import KafkaSettings, load_settings
from fraudstream.flink.job import make_environment
from fraudstream.flink.sources import kafka_source

pytestmark = pytest.mark.flink


def _restored(source, stopping: int | None) -> int | None:
    """A split of partition 1 checkpointed with `stopping` (None: unbounded), read back
    through `source`'s split serializer as a restore does; returns its stopping offset."""
    from pyflink.java_gateway import get_gateway

    jvm = get_gateway().jvm
    split_class = jvm.org.apache.flink.connector.kafka.source.split.KafkaPartitionSplit
    tp = jvm.org.apache.flink.kafka.shaded.org.apache.kafka.common.TopicPartition("raw", 1)
    split = split_class(tp, 40, split_class.NO_STOPPING_OFFSET if stopping is None else stopping)
    serializer = source.get_java_function().getSplitSerializer()
    back = serializer.deserialize(serializer.getVersion(), serializer.serialize(split))
    assert back.getStartingOffset() == 40
    stop = back.getStoppingOffset()
    return stop.get() if stop.isPresent() else None


def test_restored_splits_read_to_this_runs_end(tmp_path):
    """Issue 13: `--bounded --resume` after more orders arrived read none of them: the
    restored splits kept the end of the run that checkpointed them (here 100), or none at
    all after an unbounded run, while this run committed its own end (250) for the group.
    An unbounded run restored from a bounded one's checkpoint must not stop at its end."""
    settings = load_settings(flags={"data_dir": str(tmp_path), "pipeline.source": "kafka"}, environ={})
    make_environment(settings)  # the connector and our classes on the JVM's classpath
    k = KafkaSettings(raw_topic="raw")
    bounded = kafka_source(k, stop_at={0: 300, 1: 250})
    assert _restored(bounded, 100) == 250
    assert _restored(bounded, None) == 250
    unbounded = kafka_source(k)
    assert _restored(unbounded, 100) is None
    assert _restored(unbounded, None) is None
