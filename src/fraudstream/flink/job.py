"""The fraud-detection job graph.

    raw lines -> admit (parse, validate, late?) -> event time + watermarks
      -> key by user   -> re-deliveries out (`duplicate`); velocity, high value, geo anomaly  \\
          -> the orders let through -> key by device -> device sharing  > union -> key by (type, key) -> cooldown
    dead letters from every step are a side output; alerts and dead letters are returned
    to the caller, which writes them to the console, app.log and SQLite. With the Kafka
    source they also go to the alerts and dead-letter topics.

A Kafka source runs admission and watermarks at one subtask per partition, with idleness,
so a quiet partition does not stall event time and a partition read in a burst is not
judged late against the others.
"""

from __future__ import annotations

import gc
import logging
import os
import shlex
import site
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pyflink.common import Configuration, Duration, Types, WatermarkStrategy
from pyflink.common.job_client import JobClient
from pyflink.datastream import DataStream, StreamExecutionEnvironment
from pyflink.datastream.data_stream import CloseableIterator

import fraudstream
from fraudstream.config import KafkaSettings, Settings
from fraudstream.detectors import AlertDeduplicator, build_detectors
from fraudstream.errors import UserFacingError
from fraudstream.events.model import Order
from fraudstream.events.parse import ParseLimits
from fraudstream.events.redelivery import Redelivery, redelivery_horizon
from fraudstream.flink import checkpoints, network, remote, reporter
from fraudstream.flink.archive import attach_archive, order_rows
from fraudstream.flink.functions import (
    ADMITTED,
    DEAD_LETTERS,
    AdmitFunction,
    CountDeadLetters,
    DedupFunction,
    DetectorFunction,
    OrderTimestamps,
    TagReader,
)
from fraudstream.flink.gateway import environ_set, start_gateway
from fraudstream.flink.sources import SourceSpec, raw_lines
from fraudstream.jars import archive_jars, flink_connector_jars, onnx_jars
from fraudstream.model.file import ModelFile
from fraudstream.rules.live import RulesPlan, plan
from fraudstream.rules.model import Limits

logger = logging.getLogger(__name__)

PICKLED = Types.PICKLED_BYTE_ARRAY()


@dataclass
class JobGraph:
    env: StreamExecutionEnvironment
    # (kind, record) pairs for the driver: ("alert", Alert) | ("dead", DeadLetter) | ("order", Order).
    # None when the job has no output for the driver (Kafka: alerts reach it through the topics).
    output: DataStream | None
    # Called once the job has consumed all of a bounded input (not when it was stopped).
    on_finished: Callable[[], None] | None = None

    def start(self, name: str = "fraudstream") -> tuple[JobClient, CloseableIterator | None]:
        """Submit the job; returns its client and, if it has one, its (kind, record) stream.

        Unlike `execute_and_collect`, this runs every sink attached to the environment
        (the Kafka and archive sinks) together with the collection.
        """
        with one_jvm_thread():
            j_iterator = self.output._j_data_stream.collectAsync() if self.output is not None else None
            client = self.env.execute_async(name)
        if j_iterator is None or self.output is None:
            return client, None
        return client, CloseableIterator(j_iterator, self.output.get_type())


def _python_path() -> str:
    """Where embedded (thread-mode) Python finds our package and its dependencies."""
    package_root = str(Path(fraudstream.__file__).resolve().parent.parent)
    return os.pathsep.join(dict.fromkeys([package_root, *site.getsitepackages()]))


def make_environment(
    settings: Settings, restore_from: str | None = None, context: bool = False
) -> StreamExecutionEnvironment:
    """The job's environment: Flink's embedded mini-cluster, or, with `cluster.jobmanager`, a
    submission to that cluster (see `fraudstream.flink.remote`). `context`: the environment
    `flink run` provides (fraudstream.flink.entry), which ships what `remote` would."""
    remote_target = settings.cluster.jobmanager is not None and not context
    local = not remote_target and not context
    # Flink's own logs go to the data directory, not inside site-packages.
    log_dir = settings.data_dir.resolve() / "flink-logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("FLINK_LOG_DIR", str(log_dir))
    # Set for PyFlink's Python workers; inherited by accident (e.g. from a process that ran a
    # process-mode job in loopback), it would stop this driver from starting its own gateway.
    os.environ.pop("PYFLINK_GATEWAY_DISABLED", None)
    if not context:
        start_gateway(shlex.split(settings.pipeline.jvm_options) if local else ())
    conf = Configuration()
    mode = execution_mode(settings, local)
    conf.set_string("python.execution-mode", mode)
    conf.set_string("python.client.executable", sys.executable)
    checkpoints.configure(conf, settings, restore_from, local=local)
    if local:
        conf.set_string("python.executable", sys.executable)
        conf.set_string("python.pythonpath", _python_path())
        # Only the mini-cluster's own servers and reporter: a cluster has its own.
        network.configure_network(conf, settings, worker_pool=mode != "thread")
        reporter.configure(conf, settings)
    elif remote_target:
        remote.configure(conf, settings)
    jars = job_jars(settings, with_python=not local)
    if jars:
        conf.set_string("pipeline.jars", ";".join(p.as_uri() for p in jars))
        # The connector's admin-client thread logs once more after a job ends; with the leak
        # check on, that prints a log4j "closed classloader" error on the console.
        conf.set_string("classloader.check-leaked-classloader", "false")
    if remote_target:
        env = remote.remote_environment(conf)
    else:
        with _loopback_pool(local and mode != "thread"):
            env = StreamExecutionEnvironment.get_execution_environment(conf)
    env.set_parallelism(settings.pipeline.parallelism)
    # Latency: how long a record may wait in a buffer, and how often event time moves on.
    env.set_buffer_timeout(settings.buffer_timeout_ms)
    env.get_config().set_auto_watermark_interval(settings.watermark_interval_ms)
    # Key groups of every keyed step (admission keeps its own, ADMIT_MAX_PARALLELISM): the
    # most the job can be rescaled to from its checkpoints, the same whatever its parallelism.
    env.set_max_parallelism(settings.pipeline.max_parallelism)
    return env


@contextmanager
def _loopback_pool(wanted: bool) -> Iterator[None]:
    """Whether PyFlink starts its loopback worker pool for the environment made inside. Only
    process-mode workers use it; in thread mode Python runs inside the JVM, and skipping the
    pool spares the driver importing Apache Beam (about a second of every start-up)."""
    # PyFlink's own switch: "process" starts no pool
    with environ_set({} if wanted else {"_python_worker_execution_mode": "process"}):
        yield


def execution_mode(settings: Settings, local: bool = True) -> str:
    """PyFlink's execution mode: `pipeline.execution_mode` on the mini-cluster, always `process` on a
    cluster. Thread mode runs Python inside the TaskManager through pemja, whose native library
    a JVM loads once: with flink-python shipped per job (pipeline.jars, as it must be: a cluster's
    lib/ lacks it), the second job on a TaskManager fails with `NoSuchFieldException:
    loadedLibraryNames` (measured on Flink 2.2.1, JDK 17)."""
    return settings.pipeline.execution_mode if local else "process"


def job_jars(settings: Settings, with_python: bool = False) -> list[Path]:
    """The jars the job's classes come from, shipped with it as `pipeline.jars`. `with_python`:
    the flink-python jar too, which a cluster's lib/ lacks (the mini-cluster has it)."""
    jars = [remote.flink_python_jar()] if with_python else []
    archive = settings.archive.enabled and settings.pipeline.engine != "reference"
    if settings.pipeline.source == "kafka" or settings.pipeline.engine == "sql" or archive:
        # The Kafka connector, and our own classes (jvm/src): the SQL engine's steps, the sinks.
        jars += flink_connector_jars(settings.broker.jars_dir)
    if archive:
        jars += archive_jars(settings.broker.jars_dir)
    if settings.model.path is not None and settings.pipeline.engine == "sql":
        jars += onnx_jars(settings.broker.jars_dir)  # the risk model is scored in the JVM
    return jars


@contextmanager
def one_jvm_thread() -> Iterator[None]:
    """Python's cyclic garbage collector off while the job is planned.

    Flink's SQL planner keeps its metadata provider in a JVM thread-local, set on the thread
    that created the table environment. py4j serves each client connection on a JVM thread
    of its own and opens another connection when a call comes while one is in flight: the
    collector, run in any Python thread (the SQLite writer's, say), frees py4j objects with
    a call of that kind, and the next planning call may then run on a new JVM thread and
    fail with `NullPointerException: metadataHandlerProvider` (seen once in a demo's start).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class ModelNotHere(UserFacingError):
    """A model given to an engine that does not score orders."""


def load_model(settings: Settings) -> ModelFile | None:
    """The risk model of the run (model.path), checked before anything starts: a missing,
    corrupt or incompatible file, one ONNX Runtime cannot load, or no ONNX Runtime jar, is one line."""
    path = settings.model.path
    if path is None:
        return None
    if settings.pipeline.engine != "sql":
        raise ModelNotHere(
            f"the model runs in the sql engine; --engine {settings.pipeline.engine} has no scoring step: "
            "run with --engine sql, or without a model (unset model.path)"
        )
    from fraudstream.features.spec import FeatureSpec
    from fraudstream.model.file import check_spec, load
    from fraudstream.model.score import Scorer

    try:
        stat = Path(path).stat()
        seen = (
            str(Path(path).resolve()),
            stat.st_mtime_ns,
            stat.st_size,
            settings.features.model_dump_json() + str(settings.broker.jars_dir),
        )
    except OSError:
        seen = None  # load() says what is wrong with the path
    if seen is not None and seen in _checked_models:
        return _checked_models[seen]  # checked at start-up already (run_cmd), not loaded twice
    model = load(Path(path))
    check_spec(model, FeatureSpec.from_settings(settings.features))  # trained on features like this run's
    Scorer(model)  # ONNX Runtime can load it: said here in a line, not by a failing task later
    onnx_jars(settings.broker.jars_dir)  # and the JVM's ONNX Runtime is there (make jars)
    if seen is not None:
        _checked_models.clear()
        _checked_models[seen] = model
    return model


# The model file last checked, by (path, mtime, size, features and jars settings): read once per start-up.
_checked_models: dict[tuple[str, int, int, str], ModelFile] = {}


def build_job(
    settings: Settings,
    spec: SourceSpec,
    env: StreamExecutionEnvironment | None = None,
    restore_from: str | None = None,
    scored: bool = False,
) -> JobGraph:
    """The job graph. Stateful operators carry fixed uids, so a checkpoint or savepoint of one
    run restores into the next even when thresholds or other settings changed.

    `scored` (tests): with a model, the output also carries ("scored", (transaction_id,
    features, risk, reasons)) for each order the model scored."""
    model = load_model(settings)
    rules = plan(settings, spec.kind)  # reads the rules topic: before the graph, in the driver
    if rules.note is not None:
        logger.warning("%s", rules.note)
    logger.info(
        "rules version %d in force at the start%s",
        rules.initial.version,
        f", then the versions published on {settings.rules.topic}" if rules.live else " (rules.live: not followed)",
    )
    with one_jvm_thread():
        return _build_job(settings, spec, env, restore_from, model, scored, rules)


def _build_job(
    settings: Settings,
    spec: SourceSpec,
    env: StreamExecutionEnvironment | None,
    restore_from: str | None,
    model: ModelFile | None,
    scored: bool,
    rules: RulesPlan,
) -> JobGraph:
    context = env is not None
    limits = ParseLimits(settings.pipeline.max_record_bytes, settings.store.dead_letter_max_chars)
    bound = settings.pipeline.out_of_orderness_ms

    readers = 1
    stop_at: dict[int, int] | None = None
    on_finished = None
    if spec.kind == "kafka":
        from fraudstream.kafka.clients import check_job_topics

        readers = check_job_topics(settings.kafka)
    if settings.cluster.jobmanager is not None and not context:
        remote.check_cluster(settings, readers)  # reachable, Flink 2.2, enough free slots: one line if not
    env = env or make_environment(settings, restore_from)
    watermarks = WatermarkStrategy.for_bounded_out_of_orderness(Duration.of_millis(bound))
    if spec.kind == "kafka":
        if settings.kafka.bounded:
            stop_at, on_finished = _bounded_run(settings.kafka)
        watermarks = watermarks.with_idleness(Duration.of_millis(settings.kafka.idle_timeout_ms))
    lines = raw_lines(env, spec, settings, readers, stop_at)
    # The clock check guards against other producers; the built-in generator's event time
    # may run ahead of the clock on purpose (a fast-forwarded day).
    max_future = settings.pipeline.max_future_ms if spec.kind != "generator" else 0
    if settings.pipeline.engine == "sql":
        from fraudstream.flink import sql_engine

        charset = {"kafka": None, "file": "ISO-8859-1", "generator": "UTF-8"}[spec.kind]
        bounded = (
            (spec.kind == "kafka" and settings.kafka.bounded)
            or spec.kind == "file"
            or (spec.kind == "generator" and settings.generator.count is not None)
        )
        versions, refused = _rule_versions(env, settings, rules, bounded) if rules.live else (None, None)
        streams = sql_engine.detect(
            env, settings, lines, readers, charset, max_future, model, scored, rules.initial, versions
        )
        return _outputs(
            env,
            settings,
            spec,
            streams.alerts,
            [streams.dead_letters] + ([refused] if refused is not None else []),
            streams.orders,
            on_finished,
            streams.archive_rows,
            streams.scored if scored else None,
        )
    # PyFlink builds key_by and the watermark step from hidden operators that take the
    # environment's default parallelism; they must run one per reader, or partitions merge
    # before their watermarks are taken and a fast partition makes the others late.
    env.set_parallelism(readers)
    # Admission must see each reader's records in the reader's order to judge lateness, and
    # keep its judgement in keyed state: it is keyed by reader, with keys chosen so that
    # reader i's records go to admission subtask i (and stay beside it).
    keys = reader_keys(readers)
    tagged = lines.map(TagReader(keys), output_type=PICKLED).name("tag-reader").set_parallelism(readers)
    admitted = (
        tagged.key_by(lambda t: t[0], key_type=Types.STRING())
        .process(AdmitFunction(limits, bound, spec.raw_latin1, max_future), output_type=PICKLED)
        .name("admit")
        .uid("admit")
        .set_parallelism(readers)
        .set_max_parallelism(ADMIT_MAX_PARALLELISM)
    )
    orders = admitted.assign_timestamps_and_watermarks(
        watermarks.with_timestamp_assigner(OrderTimestamps())
    ).set_parallelism(readers)
    env.set_parallelism(settings.pipeline.parallelism)
    # Latency: how long a record may wait in a buffer, and how often event time moves on.
    env.set_buffer_timeout(settings.buffer_timeout_ms)
    env.get_config().set_auto_watermark_interval(settings.watermark_interval_ms)

    detectors = build_detectors(settings.detectors, rule_version=rules.initial.version)
    reference = settings.pipeline.engine == "reference"
    rules_n = settings.pipeline.parallelism_of("rules")  # the detectors (with re-deliveries: by user)
    dead_streams = [admitted.get_side_output(DEAD_LETTERS)]
    keyed_outputs = []
    if reference:
        # The reference system's layout, kept as a benchmark baseline: every order printed,
        # and one Python operator behind its own key_by per detector (no re-delivery check).
        orders = orders.map(_print_order, output_type=PICKLED).name("print-each-order")
        for d in detectors:
            name = f"detect-{d.alert_type.lower()}"
            keyed_outputs.append(_detect(orders, [d], limits, name, parallelism=rules_n))
    else:
        by_user = _detect(
            orders, [d for d in detectors if d.key_field == "user_id"], limits, "detect-by-user_id",
            Redelivery(redelivery_horizon(settings.rules)), measure_lag=True, parallelism=rules_n,
        )  # fmt: skip
        # Only the first copy of an order goes on: to the device's rules and to the archive.
        orders = by_user.get_side_output(ADMITTED)
        by_device = _detect(
            orders,
            [d for d in detectors if d.key_field == "device_id"],
            limits,
            "detect-by-device_id",
            count_valid=True,
            parallelism=rules_n,
        )
        keyed_outputs = [by_user, by_device]
    dead_streams += [s.get_side_output(DEAD_LETTERS) for s in keyed_outputs]
    # counted by reason in one operator (fraudstream_reason_dead_letters), then on as before
    dead_streams = [
        dead_streams[0].union(*dead_streams[1:]).map(CountDeadLetters(), output_type=PICKLED).name("count-dead-letters")
    ]

    unioned = keyed_outputs[0].union(*keyed_outputs[1:])
    deduped = (
        unioned.key_by(lambda a: a.dedup_key, key_type=Types.STRING())
        .process(DedupFunction(AlertDeduplicator.from_settings(settings.detectors)), output_type=PICKLED)
        .name("dedup")
        .uid("dedup")
        .set_parallelism(settings.pipeline.parallelism_of("cooldown"))
    )

    archive = None if reference else order_rows(orders)
    return _outputs(
        env, settings, spec, deduped, dead_streams, orders if settings.pipeline.verbose else None, on_finished, archive
    )


def _rule_versions(
    env: StreamExecutionEnvironment, settings: Settings, rules: RulesPlan, bounded: bool = False
) -> tuple[DataStream, DataStream]:
    """The rules topic, read from the plan's offsets at parallelism 1 (`bounded`: up to them, for a
    run that ends with its input) and checked as the CLI checks it: valid versions as flat rows
    (for the sql engine's Stamper), and the refused messages as `invalid_rules` dead letters."""
    from fraudstream.flink.rules import INVALID, CheckRules, flat_type
    from fraudstream.flink.sources import rules_source

    raw = (
        env.from_source(
            rules_source(settings.kafka, settings.rules.topic, rules.start_offsets, bounded),
            WatermarkStrategy.no_watermarks(),
            "rules-kafka",
        )
        .uid("rules-kafka")
        .set_parallelism(1)
    )
    checked = (
        raw.process(CheckRules(Limits.from_settings(settings), settings.store.dead_letter_max_chars), flat_type())
        .name("check-rules")
        .uid("check-rules")
        .set_parallelism(1)
    )
    return checked, checked.get_side_output(INVALID)


def _outputs(
    env: StreamExecutionEnvironment,
    settings: Settings,
    spec: SourceSpec,
    alerts: DataStream,
    dead_streams: list[DataStream],
    orders: DataStream | None,
    on_finished: Callable[[], None] | None,
    archive_rows: DataStream | None = None,
    scored: DataStream | None = None,
) -> JobGraph:
    """Where alerts, dead letters and (with --verbose) orders go, whichever engine made them.

    `archive_rows`: the admitted orders as archive rows, for the raw-event archive; `scored`:
    the scoring step's rows, for tests."""
    tagged = []
    if archive_rows is not None and settings.archive.enabled:
        attach_archive(env, settings, archive_rows, dead_streams[0].union(*dead_streams[1:]))
    if spec.kind == "kafka":
        from fraudstream.flink.sinks import attach_kafka_sinks

        # Alerts and dead letters leave through the transactional sinks only; the driver
        # reads them back from the topics once committed (see fraudstream.store.mirror).
        attach_kafka_sinks(env, settings, alerts, dead_streams[0].union(*dead_streams[1:]))
    else:
        tagged.append(alerts.map(lambda a: ("alert", a), output_type=PICKLED))
        tagged += [s.map(lambda d: ("dead", d), output_type=PICKLED) for s in dead_streams]
    if orders is not None:
        tagged.append(orders.map(lambda o: ("order", o), output_type=PICKLED))
    if scored is not None:
        tagged.append(scored.map(lambda r: ("scored", (r[0], list(r[1]), r[2], r[3])), output_type=PICKLED))
    output = tagged[0].union(*tagged[1:]) if tagged else None
    return JobGraph(env, output, on_finished)


ADMIT_MAX_PARALLELISM = 128


def _detect(
    orders: DataStream,
    detectors: list,
    limits: ParseLimits,
    name: str,
    redelivery: Redelivery | None = None,
    count_valid: bool = False,
    measure_lag: bool = False,
    parallelism: int = 1,
) -> DataStream:
    """The detectors that share one key, in one keyed Python operator (uid = name)."""
    key_field = detectors[0].key_field
    return (
        orders.key_by(lambda o, f=key_field: getattr(o, f), key_type=Types.STRING())
        .process(DetectorFunction(detectors, limits, redelivery, count_valid, measure_lag), output_type=PICKLED)
        .name(name)
        .uid(name)
        .set_parallelism(parallelism)
    )


def _print_order(order: Order) -> Order:
    print(f"order {order.transaction_id} user={order.user_id} amount={order.amount}", flush=True)
    return order


def reader_keys(readers: int) -> list[str]:
    """One admission key per reader, such that Flink routes key i to admission subtask i.

    Flink places a key by hashing it into one of `ADMIT_MAX_PARALLELISM` key groups; asking
    its own assignment function (rather than re-implementing the hash) keeps this exact.
    PyFlink's `key_by` hands Java the key wrapped in a one-field Row, so that is what is hashed.
    """
    from pyflink.java_gateway import get_gateway

    jvm = get_gateway().jvm
    assign = jvm.org.apache.flink.runtime.state.KeyGroupRangeAssignment.assignKeyToParallelOperator
    found: dict[int, str] = {}
    n = 0
    while len(found) < readers:
        key = f"reader-{n}"
        row = jvm.org.apache.flink.types.Row.withPositions(1)
        row.setField(0, key)
        found.setdefault(assign(row, ADMIT_MAX_PARALLELISM, readers), key)
        n += 1
    return [found[i] for i in range(readers)]


def _bounded_run(k: KafkaSettings) -> tuple[dict[int, int], Callable[[], None]]:
    """Where a bounded Kafka run stops, and how it records that it got there.

    Without checkpoints the source commits nothing for partitions it has finished, so the
    run stops at offsets read here and commits exactly those once it has consumed them:
    the next `--start-from committed` run starts where this one ended. The run's record
    (checkpoints.RunRecord) keeps them too, so that a kill between the job's end and this
    commit is completed by the next run (`checkpoints.reconcile`) instead of repeating the tail.
    """
    from fraudstream.kafka.clients import commit_offsets, end_offsets

    stop_at = end_offsets(k, k.raw_topic)
    run = checkpoints.current_run()
    if run is not None:
        run.update(bounded_end=stop_at)

    done = []

    def finished() -> None:  # once: the runner calls it as soon as the job ends, and again later
        if done:
            return
        commit_offsets(k, k.raw_topic, stop_at)
        done.append(True)
        if run is not None:
            run.update(ended="finished")

    return stop_at, finished
