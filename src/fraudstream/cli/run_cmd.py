"""`fraudstream run`: the job on Flink's local mini-cluster, with its banner and summary."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
import orjson

from fraudstream.cli.app import UserError, pin_stream, resolve_settings
from fraudstream.cli.options import Command, model_option
from fraudstream.config import GeneratorSettings, Settings
from fraudstream.store.db import Location

logger = logging.getLogger("fraudstream.cli")


@click.command(cls=Command)
@click.option(
    "--source",
    help="'generator' (default), 'file:PATH' (JSON lines; the job ends at end of file) or 'kafka' (the raw topic).",
)
@click.option("--count", type=int, help="Generator: stop after this many orders (default: until Ctrl-C).")
@click.option(
    "--rate",
    type=float,
    help="Generator: orders per second of wall clock, 0 = flat out [50]. Above 0 and without --seed, "
    "a live stream: each order is stamped with the wall clock when it is made.",
)
@click.option("--seed", type=int, help="Generator: fix the random stream, on its own clock (reproducible runs).")
@click.option("--fraud-ratio", type=float, help="Generator: share of fraudulent orders [0.2].")
@click.option("--out-of-orderness-ms", type=int, help="Watermark bound: how late an order may arrive [5000].")
@click.option("--parallelism", type=int, help="Flink parallelism of the keyed operators [1].")
@click.option("--execution-mode", type=click.Choice(["thread", "process"]), help="PyFlink execution mode [thread].")
@click.option(
    "--jobmanager",
    metavar="HOST:PORT",
    help="Submit the job to the Flink 2.2 cluster with this REST address (cluster.jobmanager; e.g. "
    "'fraudstream cluster start') instead of the local mini-cluster.",
)
@click.option(
    "--engine",
    type=click.Choice(["sql", "datastream", "reference"]),
    help="'sql': rules as Flink SQL in the JVM (fast); 'datastream': rules in Python operators; "
    "'reference': the replaced system's layout (a benchmark baseline) [sql].",
)
@click.option("--db", type=click.Path(path_type=Path, dir_okay=False), help="SQLite file [<data-dir>/fraud_alerts.db].")
@click.option("-v", "--verbose", is_flag=True, default=None, help="Also echo every order and dead letter.")
@click.option("--bootstrap-servers", metavar="HOST:PORT", help="Kafka: brokers to read and write [127.0.0.1:9092].")
@click.option("--group-id", help="Kafka: consumer group of the job [fraudstream-detector].")
@click.option(
    "--start-from",
    type=click.Choice(["earliest", "latest", "committed"]),
    help="Kafka: where to start reading; 'committed' = the group's position, else earliest [committed].",
)
@click.option(
    "--bounded", is_flag=True, default=None, help="Kafka: stop at the offsets that were latest at start (backfills)."
)
@click.option(
    "--resume",
    is_flag=True,
    help="Continue the last run from its newest completed checkpoint (after a crash, kill or Ctrl-C) instead of "
    "starting fresh; refused when the last run finished, or when the checkpoint is older than "
    "kafka.transaction_timeout_ms.",
)
@click.option(
    "--from-savepoint",
    metavar="PATH",
    help="Start from this savepoint (see 'fraudstream savepoint') or checkpoint directory.",
)
@click.pass_context
def run(ctx: click.Context, **opts: Any) -> None:
    """Run the fraud-detection job on Flink's local mini-cluster, or on a Flink cluster (--jobmanager).

    Alerts are printed, logged to app.log and stored in SQLite. With the generator the
    job runs until Ctrl-C (or --count); with a file it ends when the file is consumed.
    With --source kafka it reads the raw topic (one reader per partition) and also writes
    alerts and dead letters to their topics; it runs until Ctrl-C, or with --bounded until
    it has read what was in the topic when it started.

    Every valid order, as received, and every dead letter are also archived as Parquet files
    by event hour under <data-dir>/archive (archive.path; --set archive.enabled=false to skip),
    for `fraudstream evaluate` and `fraudstream backtest`.

    \b
    The job checkpoints its state and positions every few seconds (checkpoint.interval_ms)
    under <data-dir>/checkpoints and restarts itself, with backoff, when a task fails.
    With Kafka, alerts are written in transactions that commit at each checkpoint, and
    SQLite copies the committed alerts (exactly once), so alerts show up at checkpoints.
    After a crash or a stop, --resume continues exactly where the last checkpoint was;
    without it a run starts with empty state (from the group's committed offsets).
    """
    from fraudstream.cli.logs import configure_logging
    from fraudstream.cli.runner import run_job
    from fraudstream.flink.sources import SourceSpec

    flags = {
        "pipeline.source": opts["source"],
        "generator.count": opts["count"],
        "generator.rate": opts["rate"],
        "generator.seed": opts["seed"],
        "generator.fraud_ratio": opts["fraud_ratio"],
        "pipeline.out_of_orderness_ms": opts["out_of_orderness_ms"],
        "pipeline.parallelism": opts["parallelism"],
        "pipeline.execution_mode": opts["execution_mode"],
        "cluster.jobmanager": opts["jobmanager"],
        "pipeline.engine": opts["engine"],
        "store.db_path": opts["db"],
        "pipeline.verbose": opts["verbose"],
        "kafka.bootstrap_servers": opts["bootstrap_servers"],
        "kafka.group_id": opts["group_id"],
        "kafka.start_from": opts["start_from"],
        "kafka.bounded": opts["bounded"],
        "model.path": opts["model_path"],
    }
    settings = pin_stream(resolve_settings(ctx, **flags))
    try:
        spec = SourceSpec.parse(settings.pipeline.source)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    configure_logging(settings)
    _check_restore_options(spec, settings, opts["resume"], opts["from_savepoint"])
    check_model(settings)
    check_cluster(settings)
    if spec.kind == "kafka" and settings.kafka.bounded and settings.kafka.start_from == "latest":
        raise click.UsageError("--bounded with --start-from latest would read nothing: use earliest or committed")
    if spec.kind == "kafka":  # before Flink starts: no broker or no topic is a one-line answer
        from fraudstream.flink import checkpoints
        from fraudstream.kafka.clients import check_job_topics

        check_job_topics(settings.kafka)
        completed = checkpoints.reconcile(settings)
        if completed:
            logger.warning("%s", completed)
    restore_from = _restore_point(settings, spec, opts["resume"], opts["from_savepoint"])
    click.echo(banner(settings, restore_from))
    logger.info("starting: %s", orjson.dumps(settings.redacted()).decode())
    with _watching(settings):
        summary = run_job(settings, spec, click.echo, restore_from)
    summarize(summary, settings)


run.params.append(model_option())


@contextmanager
def _watching(settings: Settings) -> Iterator[None]:
    """The run's record kept up to date while it runs (see checkpoints.RunWatcher)."""
    from fraudstream.flink import checkpoints
    from fraudstream.flink.jobinfo import JobInfo

    # The record appears when the job is configured (inside run_job): watch for it.
    stop = threading.Event()

    def watch() -> None:
        watcher = None
        while not stop.wait(0.25):
            run = checkpoints.current_run()
            if run is None:
                continue
            if watcher is None or watcher.run is not run:
                watcher = checkpoints.RunWatcher(run, JobInfo.stop_marker(JobInfo.path(settings)))
            try:
                watcher.poll()
            except OSError:
                logger.debug("could not update the run record", exc_info=True)

    thread = threading.Thread(target=watch, name="run-watcher", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)


def check_cluster(settings: Settings) -> None:
    """No Flink cluster at cluster.jobmanager, or one of another version, is one line before
    anything starts (its free slots are checked once the job's width is known)."""
    if settings.cluster.jobmanager is None:
        return
    from fraudstream.flink import remote

    why = remote.refusal(remote.overview(settings.cluster.jobmanager), settings, readers=0, slots=False)
    if why is not None:
        raise UserError(why)


def check_model(settings: Settings) -> None:
    """A missing, corrupt or incompatible model file, or a model with an engine that cannot
    score, is one line before Flink starts."""
    if settings.model.path is None:
        return
    from fraudstream.flink.job import load_model

    load_model(settings)


def _check_restore_options(spec: Any, settings: Settings, resume: bool, savepoint: str | None) -> None:
    """Usage errors of --resume and --from-savepoint, before anything is looked at."""
    if resume and savepoint:
        raise click.UsageError("--resume and --from-savepoint exclude each other")
    if (resume or savepoint) and (spec.kind != "kafka" or settings.pipeline.verbose):
        # Such runs send their output through Flink's collect sink, and a job restored with one
        # fails in Flink 2.2 ("userVisibleTail should not be larger than offset").
        raise click.UsageError(
            "only a Kafka run without --verbose can resume: the generator and file sources, and "
            "--verbose, return results through Flink's collect sink, which cannot be restored"
        )


def _restore_point(settings: Settings, spec: Any, resume: bool, savepoint: str | None) -> str | None:
    """The checkpoint or savepoint a run starts from, if any."""
    from fraudstream.flink import checkpoints

    _check_restore_options(spec, settings, resume, savepoint)
    if resume:
        return str(checkpoints.resume_point(settings))
    if savepoint:
        return checkpoints.check_restore_path(savepoint, settings)
    return None


def summarize(summary: Any, settings: Settings) -> None:
    """The closing lines of a run: what was found and where it went."""
    alerts = sum(summary.alerts.values())
    dead = sum(summary.dead_letters.values())
    how = "stopped" if summary.interrupted else "finished"
    click.echo("=" * 80)
    click.echo(f"Job {how} after {summary.seconds:.1f}s: {alerts} alerts, {dead} dead letters.")
    for alert_type, n in summary.alerts.most_common():
        click.echo(f"   {alert_type:<22} {n}")
    for reason, n in summary.dead_letters.most_common():
        click.echo(f"   dead letter: {reason:<10} {n}")
    click.echo(f"Stored {summary.stored} records in {Location.of(settings)}; log in {settings.log_file}")


def _generator_line(g: GeneratorSettings) -> str:
    from fraudstream.generator import is_live, live_users

    count = g.count if g.count is not None else "until stopped"
    if is_live(g):
        clock = f"live: stamped with the wall clock, {live_users(g):,} customers"
    else:
        clock = f"start={g.start_time or 'seeded default'}"
    return f" (seed={g.seed}, {clock}, rate={g.rate:g}/s, count={count}, fraud ratio={g.fraud_ratio:g})"


def execution_mode(s: Settings, local: bool) -> str:
    from fraudstream.flink.job import execution_mode as mode

    return mode(s, local)


def where_it_runs(s: Settings) -> str:
    """The banner's word on where the job runs: the mini-cluster, or the cluster and its web UI."""
    address = s.cluster.jobmanager
    if address is None:
        return "local mini-cluster"
    return f"cluster at {address} (web UI http://{address})"


def banner(s: Settings, restore_from: str | None = None) -> str:
    d, p, g = s.detectors, s.pipeline, s.generator
    lines = [
        "=" * 80,
        "fraudstream: real-time fraud detection for food-delivery orders (Apache Flink)",
        "=" * 80,
        "Configuration:",
        f"   Source              : {p.source}" + (_generator_line(g) if p.source == "generator" else ""),
        *(
            [
                f"   Kafka               : {s.kafka.bootstrap_servers} {s.kafka.raw_topic} -> {s.kafka.alerts_topic}"
                f" (dead letters: {s.kafka.dead_letter_topic}); group {s.kafka.group_id},"
                f" start {s.kafka.start_from}{', bounded' if s.kafka.bounded else ''}"
            ]
            if p.source == "kafka"
            else []
        ),
        f"   Velocity            : more than {d.velocity_threshold} orders in {d.velocity_window_ms / 60000:g} min",
        f"   Device sharing      : more than {d.device_sharing_threshold} users per device in "
        f"{d.device_sharing_window_ms / 60000:g} min",
        f"   High value          : amount above ₹{d.high_value_threshold:,.2f}",
        f"   Geo anomaly         : another city within {d.geo_window_ms / 60000:g} min",
        "   Risk model          : "
        + (
            f"{s.model.path} (ACCOUNT_TAKEOVER from risk {s.model.takeover_risk:g}; rule alerts below "
            f"risk {s.alerts.min_risk:g} held back)"
            if s.model.path is not None
            else "none (rules only; --model FILE to score orders)"
        ),
        f"   Alert cooldown      : {d.dedup_cooldown_ms / 60000:g} min per alert type and user/device",
        f"   Out-of-orderness    : {p.out_of_orderness_ms} ms",
        f"   Flink               : {where_it_runs(s)}, {p.engine} engine, "
        f"{execution_mode(s, s.cluster.jobmanager is None)} mode, "
        f"parallelism {p.parallelism}" + "".join(f", {k} {v}" for k, v in sorted(p.step_parallelism.items())),
        *(
            [
                "   Warning             : the datastream engine runs every order through Python, in process"
                " mode on a cluster: hundreds of orders/s per step; the sql engine is the one for a cluster"
            ]
            if s.cluster.jobmanager is not None and p.engine == "datastream"
            else []
        ),
        f"   Checkpoints         : every {s.checkpoint.interval_ms / 1000:g}s to {s.checkpoint_uri}",
        f"   Starting from       : {restore_from or 'empty state'}",
        f"   Database            : {Location.of(s)}",
        f"   Log file            : {s.log_file}",
        "=" * 80,
    ]
    return "\n".join(lines)
