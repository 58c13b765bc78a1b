"""The fraud-detection job graph.

    raw lines -> admit (parse, validate, late?) -> event time + watermarks
      -> key by user   -> velocity, high value, geo anomaly  \\
      -> key by device -> device sharing                      > union -> key by (type, key) -> cooldown
    dead letters from every step are a side output; alerts and dead letters are returned
    to the caller, which writes them to the console, app.log and SQLite.
"""

from __future__ import annotations

import os
import site
import sys
from dataclasses import dataclass
from pathlib import Path

from pyflink.common import Configuration, Duration, Types, WatermarkStrategy
from pyflink.datastream import DataStream, StreamExecutionEnvironment

import fraudstream
from fraudstream.config import Settings
from fraudstream.detectors import AlertDeduplicator, build_detectors
from fraudstream.events.parse import ParseLimits
from fraudstream.flink.functions import (
    DEAD_LETTERS,
    AdmitFunction,
    DedupFunction,
    DetectorFunction,
    OrderTimestamps,
)
from fraudstream.flink.sources import SourceSpec, raw_lines

PICKLED = Types.PICKLED_BYTE_ARRAY()


@dataclass
class JobGraph:
    env: StreamExecutionEnvironment
    output: DataStream  # (kind, record) pairs: ("alert", Alert) | ("dead", DeadLetter) | ("order", Order)


def _python_path() -> str:
    """Where embedded (thread-mode) Python finds our package and its dependencies."""
    package_root = str(Path(fraudstream.__file__).resolve().parent.parent)
    return os.pathsep.join(dict.fromkeys([package_root, *site.getsitepackages()]))


def make_environment(settings: Settings) -> StreamExecutionEnvironment:
    # Flink's own logs go to the data directory, not inside site-packages.
    log_dir = settings.data_dir.resolve() / "flink-logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("FLINK_LOG_DIR", str(log_dir))
    conf = Configuration()
    conf.set_string("python.execution-mode", settings.pipeline.execution_mode)
    conf.set_string("python.executable", sys.executable)
    conf.set_string("python.client.executable", sys.executable)
    conf.set_string("python.pythonpath", _python_path())
    env = StreamExecutionEnvironment.get_execution_environment(conf)
    env.set_parallelism(settings.pipeline.parallelism)
    return env


def build_job(settings: Settings, spec: SourceSpec, env: StreamExecutionEnvironment | None = None) -> JobGraph:
    env = env or make_environment(settings)
    limits = ParseLimits(settings.pipeline.max_record_bytes, settings.store.dead_letter_max_chars)
    bound = settings.pipeline.out_of_orderness_ms

    lines = raw_lines(env, spec, settings.generator)
    admitted = lines.process(AdmitFunction(limits, bound, spec.raw_latin1), output_type=PICKLED).name("admit")
    # Admission must see the source's order to judge lateness, so it runs beside the source.
    admitted = admitted.set_parallelism(1)
    orders = admitted.assign_timestamps_and_watermarks(
        WatermarkStrategy.for_bounded_out_of_orderness(Duration.of_millis(bound)).with_timestamp_assigner(
            OrderTimestamps()
        )
    ).set_parallelism(1)

    detectors = build_detectors(settings.detectors)
    keyed_outputs = []
    for key_field in ("user_id", "device_id"):
        group = [d for d in detectors if d.key_field == key_field]
        if not group:
            continue
        alerts = (
            orders.key_by(lambda o, f=key_field: getattr(o, f), key_type=Types.STRING())
            .process(DetectorFunction(group, limits), output_type=PICKLED)
            .name(f"detect-by-{key_field}")
        )
        keyed_outputs.append(alerts)

    unioned = keyed_outputs[0].union(*keyed_outputs[1:])
    deduped = (
        unioned.key_by(lambda a: a.dedup_key, key_type=Types.STRING())
        .process(DedupFunction(AlertDeduplicator(settings.detectors.dedup_cooldown_ms)), output_type=PICKLED)
        .name("dedup")
    )

    tagged = [deduped.map(lambda a: ("alert", a), output_type=PICKLED)]
    dead_streams = [admitted.get_side_output(DEAD_LETTERS)]
    dead_streams += [s.get_side_output(DEAD_LETTERS) for s in keyed_outputs]
    tagged += [s.map(lambda d: ("dead", d), output_type=PICKLED) for s in dead_streams]
    if settings.pipeline.verbose:
        tagged.append(orders.map(lambda o: ("order", o), output_type=PICKLED))
    output = tagged[0].union(*tagged[1:])
    return JobGraph(env, output)
