"""`fraudstream bench`: the job beside its ceilings, on this machine, in one run.

Steps: start a private broker; load N generated orders (the default fraud mix, a large user
population) into a fresh raw topic; measure the Kafka and Python ceilings over those very
records; run the Quix Streams peer over them (at-least-once, then exactly-once); run each
engine bounded over them (the slow Python-operator layouts for a limited time: their rate
is steady long before the end); measure alert latency at fixed offered
loads below the fastest engine's maximum; write JSON, a Markdown table and a PNG chart.
"""

from __future__ import annotations

import logging
import platform
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import psutil

from fraudstream.bench.ceilings import kafka_ceiling, python_ceiling, read_values
from fraudstream.bench.jobs import JobRun, run_job
from fraudstream.bench.latency import LatencyRun, measure_latency
from fraudstream.bench.peers import GUARANTEES, PeerRun, peer_python, run_quix
from fraudstream.config import BrokerSettings, GeneratorSettings, KafkaSettings, Settings
from fraudstream.generator import generator_from_settings
from fraudstream.kafka.broker import LocalBroker
from fraudstream.kafka.clients import connect_admin, ensure_topics, project_topics
from fraudstream.kafka.producer import OrderPublisher

logger = logging.getLogger(__name__)

ENGINES = ("sql", "sql-p2", "sql-model", "datastream", "reference")
# The SQL engine with a risk model (`run --model`): every order's features and score beside the rules.
MODEL_ENGINE = "sql-model"
# The SQL engine on two task slots (every step at parallelism 2): how throughput grows with slots.
TWO_SLOTS = "sql-p2"
MODEL_TRAINING_ORDERS = 30_000


@dataclass(frozen=True)
class BenchOptions:
    orders: int = 2_000_000
    users: int = 1_000_000
    engines: tuple[str, ...] = ENGINES
    slow_seconds: float = 120.0  # time limit of a run of a Python-operator engine
    fast_seconds: float = 1_800.0  # time limit of any other run
    latency_loads: tuple[float, ...] = (0.25, 0.5)  # offered rates, as fractions of the fastest engine's
    latency_seconds: float = 60.0
    latency_checkpoint_ms: int | None = None  # checkpoint interval of the latency runs (None: configured)
    latency_rates: tuple[float, ...] = ()  # offered rates in orders/s; replaces latency_loads when given
    # The Quix Streams peer, once per processing guarantee given (none: no peer).
    peer_guarantees: tuple[str, ...] = GUARANTEES
    seed: int = 20261130
    out_dir: Path = Path("benchmarks/results")
    work_dir: Path = Path("data/bench")

    @staticmethod
    def quick(**overrides: Any) -> BenchOptions:
        """A few minutes' proof that every step works (what CI runs); not figures to quote."""
        values: dict[str, Any] = dict(
            orders=50_000, users=20_000, slow_seconds=50.0, latency_loads=(0.25,), latency_seconds=20.0
        )
        return BenchOptions(**(values | overrides))


@dataclass
class BenchResult:
    options: dict[str, Any]
    machine: dict[str, Any]
    kafka_ceiling: dict[str, Any] = field(default_factory=dict)
    python_ceiling: dict[str, Any] = field(default_factory=dict)
    peers: list[dict[str, Any]] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)
    # each engine's and peer's throughput over the ceilings' and the peer's (report.ratios)
    ratios: dict[str, dict[str, float | None]] = field(default_factory=dict)
    latency: list[dict[str, Any]] = field(default_factory=list)


def _machine() -> dict[str, Any]:
    return {
        "cpus": psutil.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": time.strftime("%Y-%m-%d"),
    }


def _job_engine(engine: str) -> str:
    """The job's --engine of a bench engine (sql-model and sql-p2 are the SQL engine's)."""
    return "sql" if engine in (MODEL_ENGINE, TWO_SLOTS) else engine


def run_bench(settings: Settings, opts: BenchOptions, echo: Callable[[str], None]) -> BenchResult:
    result = BenchResult({k: (str(v) if isinstance(v, Path) else v) for k, v in opts.__dict__.items()}, _machine())
    work = opts.work_dir
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    broker = LocalBroker(BrokerSettings(port=_free_port(), controller_port=_free_port()), work / "kafka")
    echo("starting a private Kafka broker")
    broker.start()
    try:
        k = _topics(broker, settings.kafka)
        echo(f"loading {opts.orders:,} generated orders ({opts.users:,} users) into {k.raw_topic}")
        _load(k, opts)
        echo("Python ceiling: parsing and the rules over the same records, in one process")
        values = read_values(k, opts.orders)
        result.python_ceiling = python_ceiling(values, settings.detectors)
        del values
        echo(f"   {result.python_ceiling['events_per_s']:,.0f} events/s")
        echo("Kafka ceiling: read the records and write as many alert-sized records as the rules give")
        result.kafka_ceiling = kafka_ceiling(k, opts.orders, result.python_ceiling["alerts"])
        echo(f"   {result.kafka_ceiling['events_per_s']:,.0f} events/s")
        result.peers = [p.to_dict() for p in _peers(settings, opts, k, work, result.python_ceiling["alerts"], echo)]
        runs: list[JobRun] = []
        for engine in opts.engines:
            limit = opts.fast_seconds if engine in ("sql", TWO_SLOTS, MODEL_ENGINE) else opts.slow_seconds
            extra = None
            if engine == MODEL_ENGINE:
                extra = ["--set", f"model.path={_model(settings, opts, work, echo)}"]
            elif engine == TWO_SLOTS:
                extra = ["--set", "pipeline.parallelism=2"]
            echo(f"job, {engine} engine: bounded over the topic (time limit {limit:g} s)")
            run = run_job(_job_engine(engine), k, work / f"run-{engine}", opts.orders, limit, extra)
            run.engine = engine
            runs.append(run)
            echo(f"   {run.events_per_s:,.0f} events/s over {run.records:,} records, start-up {run.startup_s} s")
        result.runs = [r.to_dict() for r in runs]
        # latency is measured on the fastest engine on its defaults (one slot, no model)
        plain = [r for r in runs if r.engine not in (MODEL_ENGINE, TWO_SLOTS)]
        fastest = max(plain, key=lambda r: r.events_per_s, default=None)
        if fastest is not None and fastest.events_per_s > 0 and (opts.latency_loads or opts.latency_rates):
            ck = opts.latency_checkpoint_ms or settings.checkpoint.interval_ms
            rates = opts.latency_rates or tuple(round(share * fastest.events_per_s) for share in opts.latency_loads)
            for rate in rates:
                share = round(rate / fastest.events_per_s, 3)
                echo(f"latency, {fastest.engine} engine, {rate:,} orders/s offered for {opts.latency_seconds:g} s")
                lat: LatencyRun = measure_latency(
                    fastest.engine, _fresh(k), work / f"latency-{share}", rate, opts.latency_seconds, ck
                )
                result.latency.append(lat.to_dict() | {"share_of_max": share})
                echo(f"   p50 {lat.p50_ms} ms, p99 {lat.p99_ms} ms over {lat.alerts} alerts")
    finally:
        broker.stop()
    from fraudstream.bench.report import ratios

    result.ratios = ratios(result.__dict__)
    write_reports(result, opts.out_dir)
    echo(f"results in {opts.out_dir}/ (bench.json, bench.md, latency.png)")
    return result


def _peers(
    settings: Settings, opts: BenchOptions, k: KafkaSettings, work: Path, exact: int, echo: Callable[[str], None]
) -> list[PeerRun]:
    """The Quix Streams peer over the same records, once per processing guarantee; its
    commit interval is the job's checkpoint interval over a backlog (the bounded job commits its
    alerts then)."""
    if not opts.peer_guarantees:
        return []
    python = peer_python(echo)
    found = []
    for guarantee in opts.peer_guarantees:
        echo(f"peer, Quix Streams ({guarantee}): the same rules and cooldown, in arrival order")
        run = run_quix(
            k,
            work / f"peer-quix-{guarantee}",
            opts.orders,
            settings.detectors,
            guarantee,
            settings.checkpoint.backlog_interval_ms / 1000,
            opts.fast_seconds,
            python,
        )
        found.append(run)
        echo(
            f"   {run.events_per_s:,.0f} events/s over {run.records:,} records, start-up {run.startup_s} s, "
            f"{run.alerts:,} alerts (exact: {exact:,})"
        )
    return found


def _model(settings: Settings, opts: BenchOptions, work: Path, echo: Callable[[str], None]) -> Path:
    """A model trained offline on another stream of the generator (another seed), for the
    sql-model run; its quality does not matter here, only the work of scoring every order."""
    from fraudstream.model.evaluate import train_on_stream
    from fraudstream.model.file import save

    path = work / "model.zip"
    if not path.exists():
        count = min(opts.orders, MODEL_TRAINING_ORDERS)
        echo(f"training a risk model on {count:,} other generated orders (for the sql-model run)")
        save(path, train_on_stream(opts.seed + 1, count, settings))
    return path.resolve()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _fresh(k: KafkaSettings) -> KafkaSettings:
    """The same broker with new topics: each measurement starts from an empty topic."""
    tag = uuid.uuid4().hex[:8]
    fresh = k.model_copy(
        update={
            "raw_topic": f"bench-raw-{tag}",
            "alerts_topic": f"bench-alerts-{tag}",
            "dead_letter_topic": f"bench-dlq-{tag}",
            "group_id": f"bench-{tag}",
        }
    )
    ensure_topics(connect_admin(fresh), project_topics(fresh))
    return fresh


def _topics(broker: LocalBroker, base: KafkaSettings) -> KafkaSettings:
    return _fresh(broker.kafka_settings(base))


def _load(k: KafkaSettings, opts: BenchOptions) -> None:
    gen = generator_from_settings(GeneratorSettings(seed=opts.seed, count=opts.orders, rate=0, users=opts.users))
    publisher = OrderPublisher(k)

    def records():
        for order in gen.orders(opts.orders):
            value = orjson.dumps(order)
            yield order["user_id"].encode(), value

    summary = publisher.publish(records())
    if summary.delivered != opts.orders:
        raise RuntimeError(f"only {summary.delivered} of {opts.orders} orders reached the raw topic")


def write_reports(result: BenchResult, out_dir: Path) -> None:
    from fraudstream.bench.report import markdown, plot_latency

    out_dir.mkdir(parents=True, exist_ok=True)
    data = result.__dict__
    (out_dir / "bench.json").write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2))
    (out_dir / "bench.md").write_text(markdown(data))
    plot_latency(data, out_dir / "latency.png")
