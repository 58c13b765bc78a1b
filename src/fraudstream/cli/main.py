"""Entry point of the `fraudstream` command."""

from __future__ import annotations

import logging
import re
import signal
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
import orjson

from fraudstream import __version__
from fraudstream.config import (
    PROFILE_ENV,
    PROFILES,
    ConfigError,
    Settings,
    load_settings,
    parse_set_option,
    pin_generator,
    to_toml,
)
from fraudstream.errors import UserFacingError
from fraudstream.store import StoreMissingError

logger = logging.getLogger("fraudstream.cli")


class UserError(UserFacingError):
    """A mistake the user can fix; shown as one line, no traceback."""


def _settings(ctx: click.Context, **flags: Any) -> Settings:
    obj = ctx.find_root().obj
    overrides = dict(obj["set"])
    if obj["data_dir"] is not None:
        overrides["data_dir"] = obj["data_dir"]
    overrides.update({k: v for k, v in flags.items() if v is not None})
    return load_settings(obj["config"], overrides, profile=obj["profile"])


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="fraudstream")
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="FRAUDSTREAM_CONFIG",
    help="TOML settings file (env: FRAUDSTREAM_CONFIG). See 'fraudstream config show'.",
)
@click.option(
    "--set",
    "set_items",
    multiple=True,
    metavar="SECTION.KEY=VALUE",
    help="Override any setting, e.g. --set detectors.velocity_threshold=5 (repeatable).",
)
@click.option(
    "--profile",
    type=click.Choice(sorted(PROFILES)),
    envvar=PROFILE_ENV,
    help="Named rule settings under the file and flags: 'default' (tuned) or 'seed' (the replaced system's).",
)
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Where the database, app.log and Flink logs go (env: FRAUDSTREAM_DATA_DIR; default ./data).",
)
@click.pass_context
def cli(
    ctx: click.Context, config_file: Path | None, set_items: tuple[str, ...], profile: str | None, data_dir: Path | None
) -> None:
    """Real-time fraud detection for food-delivery orders on Apache Flink.

    \b
    Typical session:
      fraudstream run                         # generator -> Flink job -> alerts (Ctrl-C to stop)
      fraudstream produce --count 10000 --seed 7 -o orders.jsonl
      fraudstream run --source file:orders.jsonl
      fraudstream query stats
    """
    ctx.obj = {"config": config_file, "set": parse_set_option(set_items), "data_dir": data_dir, "profile": profile}


# --------------------------------------------------------------------------- run
@cli.command()
@click.option(
    "--source",
    help="'generator' (default), 'file:PATH' (JSON lines; the job ends at end of file) or 'kafka' (the raw topic).",
)
@click.option("--count", type=int, help="Generator: stop after this many orders (default: until Ctrl-C).")
@click.option("--rate", type=float, help="Generator: orders per second of wall clock, 0 = flat out [50].")
@click.option("--seed", type=int, help="Generator: fix the random stream (reproducible runs).")
@click.option("--fraud-ratio", type=float, help="Generator: share of fraudulent orders [0.2].")
@click.option("--out-of-orderness-ms", type=int, help="Watermark bound: how late an order may arrive [5000].")
@click.option("--parallelism", type=int, help="Flink parallelism of the keyed operators [1].")
@click.option("--execution-mode", type=click.Choice(["thread", "process"]), help="PyFlink execution mode [thread].")
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
    help="Continue from the newest completed checkpoint (after a crash, kill or Ctrl-C) instead of starting fresh.",
)
@click.option(
    "--from-savepoint",
    metavar="PATH",
    help="Start from this savepoint (see 'fraudstream savepoint') or checkpoint directory.",
)
@click.pass_context
def run(ctx: click.Context, **opts: Any) -> None:
    """Run the fraud-detection job on Flink's local mini-cluster.

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
        "pipeline.engine": opts["engine"],
        "store.db_path": opts["db"],
        "pipeline.verbose": opts["verbose"],
        "kafka.bootstrap_servers": opts["bootstrap_servers"],
        "kafka.group_id": opts["group_id"],
        "kafka.start_from": opts["start_from"],
        "kafka.bounded": opts["bounded"],
    }
    settings = pin_generator(_settings(ctx, **flags))
    try:
        spec = SourceSpec.parse(settings.pipeline.source)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    configure_logging(settings)
    restore_from = _restore_point(settings, spec, opts["resume"], opts["from_savepoint"])
    if spec.kind == "kafka" and settings.kafka.bounded and settings.kafka.start_from == "latest":
        raise click.UsageError("--bounded with --start-from latest would read nothing: use earliest or committed")
    if spec.kind == "kafka":  # before Flink starts: no broker or no topic is a one-line answer
        from fraudstream.kafka.clients import check_job_topics

        check_job_topics(settings.kafka)
    click.echo(banner(settings, restore_from))
    logger.info("starting: %s", orjson.dumps(settings.redacted()).decode())
    summary = run_job(settings, spec, click.echo, restore_from)
    summarize(summary, settings)


def _restore_point(settings: Settings, spec: Any, resume: bool, savepoint: str | None) -> str | None:
    """The checkpoint or savepoint a run starts from, if any."""
    from fraudstream.flink import checkpoints

    if resume and savepoint:
        raise click.UsageError("--resume and --from-savepoint exclude each other")
    if (resume or savepoint) and (spec.kind != "kafka" or settings.pipeline.verbose):
        # Such runs send their output through Flink's collect sink, and a job restored with one
        # fails in Flink 2.2 ("userVisibleTail should not be larger than offset").
        raise click.UsageError(
            "only a Kafka run without --verbose can resume: the generator and file sources, and "
            "--verbose, return results through Flink's collect sink, which cannot be restored"
        )
    if resume:
        return str(checkpoints.latest_checkpoint(settings))
    if savepoint:
        return checkpoints.check_restore_path(savepoint)
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
    click.echo(f"Stored {summary.stored} records in {settings.db_path}; log in {settings.log_file}")


def banner(s: Settings, restore_from: str | None = None) -> str:
    d, p, g = s.detectors, s.pipeline, s.generator
    lines = [
        "=" * 80,
        "fraudstream: real-time fraud detection for food-delivery orders (Apache Flink)",
        "=" * 80,
        "Configuration:",
        f"   Source              : {p.source}"
        + (
            f" (seed={g.seed}, start={g.start_time or 'seeded default'}, rate={g.rate:g}/s,"
            f" count={g.count if g.count is not None else 'until stopped'}, fraud ratio={g.fraud_ratio:g})"
            if p.source == "generator"
            else ""
        ),
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
        f"   Alert cooldown      : {d.dedup_cooldown_ms / 60000:g} min per alert type and user/device",
        f"   Out-of-orderness    : {p.out_of_orderness_ms} ms",
        f"   Flink               : local mini-cluster, {p.engine} engine, {p.execution_mode} mode, "
        f"parallelism {p.parallelism}",
        f"   Checkpoints         : every {s.checkpoint.interval_ms / 1000:g}s to {s.checkpoint_uri}",
        f"   Starting from       : {restore_from or 'empty state'}",
        f"   Database            : {s.db_path}",
        f"   Log file            : {s.log_file}",
        "=" * 80,
    ]
    return "\n".join(lines)


# ----------------------------------------------------------------------- produce
@cli.command()
@click.option("-o", "--output", default="-", show_default=True, help="File to write JSON lines to; '-' = stdout.")
@click.option(
    "--bootstrap-servers",
    metavar="HOST:PORT",
    help="Publish to Kafka at these brokers instead of writing lines (env: FRAUDSTREAM_KAFKA__BOOTSTRAP_SERVERS).",
)
@click.option("--kafka", "to_kafka", is_flag=True, help="Publish to Kafka at the configured brokers [127.0.0.1:9092].")
@click.option("--topic", help="Kafka topic to publish to [zomato_transactions_raw].")
@click.option(
    "--from-file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Replay this JSON-lines file (as it is, bad lines included) instead of generating orders; "
    "as fast as possible unless --rate is given.",
)
@click.option("--count", type=int, help="Orders to generate (default: until Ctrl-C).")
@click.option("--rate", type=float, help="Orders per second of wall clock; 0 = as fast as possible [50].")
@click.option("--seed", type=int, help="Fix the random stream; same seed, same orders.")
@click.option("--fraud-ratio", type=float, help="Share of fraudulent orders [0.2].")
@click.option("--jitter-ms", type=int, help="Bounded out-of-order jitter of event times [0].")
@click.option("--start-time", help="ISO-8601 start of event time [now; 2026-01-01T00:00:00Z with --seed].")
@click.option("--users", type=int, help="Normal users in the population [20000].")
@click.option("--quiet", is_flag=True, help="No progress line on stderr.")
@click.pass_context
def produce(
    ctx: click.Context,
    output: str,
    bootstrap_servers: str | None,
    to_kafka: bool,
    topic: str | None,
    from_file: Path | None,
    quiet: bool,
    **opts: Any,
) -> None:
    """Generate synthetic orders (about 80% normal, 20% fraud in four patterns) as JSON lines,
    to stdout, a file, or a Kafka topic (keyed by user_id, idempotent, acks=all).

    \b
    Examples:
      fraudstream produce --count 10000 --seed 7 -o orders.jsonl
      fraudstream produce --bootstrap-servers 127.0.0.1:9092 --rate 100
      fraudstream produce --kafka --from-file orders.jsonl --rate 0
    """
    flags = {f"generator.{k}": v for k, v in opts.items()}
    flags["kafka.bootstrap_servers"] = bootstrap_servers
    settings = pin_generator(_settings(ctx, **flags))
    cfg = settings.generator
    if from_file is not None and not from_file.is_file():
        raise UserError(f"input file not found: {from_file}")
    to_kafka = bool(bootstrap_servers or to_kafka or topic)
    records, seed = _order_records(settings, from_file, keyed=to_kafka)
    if to_kafka:
        if output != "-":
            raise click.UsageError(
                "-o/--output writes lines; it cannot be combined with --kafka, --bootstrap-servers or --topic"
            )
        _produce_to_kafka(settings, topic, records, cfg.rate if from_file is None or opts["rate"] else 0.0, quiet)
        return
    from fraudstream.generator.pacing import Pacer

    pacer = Pacer(cfg.rate)
    out = sys.stdout.buffer if output == "-" else _open_output(Path(output))
    started = last_report = time.monotonic()
    n = 0
    try:
        for _, value in records:
            pacer.wait()
            out.write(value + b"\n")
            n += 1
            now = time.monotonic()
            if not quiet and now - last_report >= 2.0:
                click.echo(f"produced {n} orders ({n / (now - started):,.0f}/s)", err=True)
                last_report = now
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:
        return
    finally:
        out.flush()
        if out is not sys.stdout.buffer:
            out.close()
    if not quiet:
        elapsed = max(time.monotonic() - started, 1e-9)
        where = "stdout" if output == "-" else output
        origin = f"from {from_file}" if from_file else f"(seed {seed})"
        click.echo(f"produced {n} orders to {where} in {elapsed:.1f}s {origin}", err=True)


def _order_records(
    settings: Settings, from_file: Path | None, keyed: bool
) -> tuple[Iterator[tuple[bytes | None, bytes]], int | None]:
    """The records to produce, from a file or generated: (Kafka key, JSON line without its
    newline). The key is the user_id, worked out only when `keyed`; generated orders have it
    at hand, file lines are parsed for it."""
    if from_file is not None:

        def lines() -> Iterator[tuple[bytes | None, bytes]]:
            if keyed:
                from fraudstream.kafka.producer import user_key
            with open(from_file, "rb") as fh:
                for line in fh:
                    line = line.rstrip(b"\r\n")
                    if line.strip():
                        yield (user_key(line) if keyed else None), line

        return lines(), None
    from fraudstream.generator import generator_from_settings

    gen = generator_from_settings(settings.generator)
    orders = gen.orders(settings.generator.count)
    return ((str(o["user_id"]).encode(), orjson.dumps(o)) for o in orders), gen.seed


def _produce_to_kafka(
    settings: Settings, topic: str | None, records: Iterator[tuple[bytes | None, bytes]], rate: float, quiet: bool
) -> None:
    from fraudstream.kafka.producer import OrderPublisher, PublishSummary

    publisher = OrderPublisher(settings.kafka, topic)
    target = f"{publisher.topic} ({publisher.partitions} partitions) at {settings.kafka.bootstrap_servers}"
    if not quiet:
        click.echo(f"publishing to {target}; Ctrl-C to stop", err=True)

    def progress(s: PublishSummary) -> None:
        click.echo(
            f"sent {s.sent} orders ({s.sent / max(s.seconds, 1e-9):,.0f}/s), delivered {s.delivered}, failed {s.failed}",
            err=True,
        )

    with _sigterm_as_interrupt():
        summary = publisher.publish(records, rate=rate, progress=None if quiet else progress)
    how = "stopped" if summary.interrupted else "done"
    click.echo(
        f"{how}: {summary.delivered} of {summary.sent} orders delivered to {publisher.topic} "
        f"in {summary.seconds:.1f}s ({summary.delivered / max(summary.seconds, 1e-9):,.0f}/s)",
        err=True,
    )
    if summary.failed:
        raise UserError(f"{summary.failed} orders were not delivered: {summary.first_error}")


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM like Ctrl-C in pure-Python loops, so they stop cleanly and flush."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _open_output(path: Path):
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return open(path, "wb")
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror}") from None


# ------------------------------------------------------------------------- query
@cli.group()
@click.option("--db", type=click.Path(path_type=Path, dir_okay=False), help="SQLite file [<data-dir>/fraud_alerts.db].")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON output.")
@click.pass_context
def query(ctx: click.Context, db: Path | None, as_json: bool) -> None:
    """Query stored alerts: stats, all, user ID, high, type TYPE, dead."""
    settings = _settings(ctx, **{"store.db_path": db})
    ctx.obj = {**ctx.find_root().obj, "db": settings.db_path, "json": as_json}


def _limit_option(f):
    return click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True, help="Rows to show.")(f)


def _fetch(ctx: click.Context, query: Callable[[sqlite3.Connection], Any]) -> Any:
    """Run one read-only query on the chosen database and close it again."""
    from fraudstream.store.sqlite import connect

    conn = connect(ctx.obj["db"])
    try:
        return query(conn)
    finally:
        conn.close()


def _show(ctx: click.Context, title: str, query: Callable[[sqlite3.Connection], list[dict[str, Any]]]) -> None:
    from tabulate import tabulate

    from fraudstream.cli.format import iso

    rows = _fetch(ctx, query)
    if ctx.obj["json"]:
        click.echo(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode())
        return
    click.echo(f"{title} ({len(rows)} shown)")
    if not rows:
        click.echo("   (none)")
        return
    shown = []
    for r in rows:
        r = dict(r)
        for k in ("event_time", "detected_at", "seen_at"):
            if k in r:
                r[k] = iso(r[k])
        if r.get("amount") is not None:
            r["amount"] = f"{r['amount']:,.2f}"
        r.pop("alert_id", None)
        shown.append(r)
    click.echo(tabulate(shown, headers="keys", tablefmt="simple"))


@query.command("stats")
@click.pass_context
def query_stats(ctx: click.Context) -> None:
    """Totals, counts by type and severity, top users, alerts in the last hour."""
    from fraudstream.store import queries

    data = _fetch(ctx, lambda conn: queries.stats(conn, int(time.time() * 1000)))
    if ctx.obj["json"]:
        click.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())
        return
    click.echo("Fraud detection statistics")
    click.echo("=" * 60)
    click.echo(f"Total alerts: {data['total_alerts']}")
    sections = [
        ("Alerts by type", "by_type", "alert_type", "alerts"),
        ("Alerts by severity", "by_severity", "severity", "alerts"),
        ("Top users by alerts", "top_users", "user_id", "alerts"),
    ]
    for title, key, label, count in sections:
        click.echo(f"\n{title}:")
        for r in data[key]:
            click.echo(f"   {r[label]:<22} {r[count]}")
    click.echo(f"\nAlerts detected in the last hour: {data['alerts_last_hour']}")
    if data["dead_letters"]:
        click.echo("\nDead letters by reason:")
        for r in data["dead_letters"]:
            click.echo(f"   {r['reason']:<22} {r['records']}")
    click.echo("=" * 60)


@query.command("all")
@_limit_option
@click.pass_context
def query_all(ctx: click.Context, limit: int) -> None:
    """Most recent alerts (by event time)."""
    from fraudstream.store import queries

    _show(ctx, "Recent alerts", lambda conn: queries.recent(conn, limit))


@query.command("user")
@click.argument("user_id")
@_limit_option
@click.pass_context
def query_user(ctx: click.Context, user_id: str, limit: int) -> None:
    """Alerts of one user."""
    from fraudstream.store import queries

    _show(ctx, f"Alerts for user {user_id}", lambda conn: queries.for_user(conn, user_id, limit))


@query.command("high")
@_limit_option
@click.pass_context
def query_high(ctx: click.Context, limit: int) -> None:
    """HIGH and CRITICAL alerts."""
    from fraudstream.store import queries

    _show(ctx, "HIGH and CRITICAL alerts", lambda conn: queries.high_priority(conn, limit))


@query.command("type")
@click.argument("alert_type")
@_limit_option
@click.pass_context
def query_type(ctx: click.Context, alert_type: str, limit: int) -> None:
    """Alerts of one type, e.g. VELOCITY_FRAUD."""
    from fraudstream.store import queries

    kind = alert_type.upper()
    _show(ctx, f"{kind} alerts", lambda conn: queries.of_type(conn, kind, limit))


@query.command("dead")
@_limit_option
@click.pass_context
def query_dead(ctx: click.Context, limit: int) -> None:
    """Most recent dead letters with their reasons."""
    from fraudstream.store import queries

    _show(ctx, "Dead letters", lambda conn: queries.dead_letters(conn, limit))


# ------------------------------------------------------------------------ config
@cli.group("config")
def config_group() -> None:
    """Inspect the effective configuration."""


@config_group.command("show")
@click.option("--json", "as_json", is_flag=True, help="JSON instead of TOML-like text.")
@click.pass_context
def config_show(ctx: click.Context, as_json: bool) -> None:
    """Print the effective settings (defaults < file < environment < flags)."""
    settings = _settings(ctx)
    data = settings.redacted()
    if as_json:
        click.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())
        return
    click.echo(to_toml(data), nl=False)


# -------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    try:
        code = cli.main(args=argv, prog_name="fraudstream", standalone_mode=False)
        if isinstance(code, int) and code:  # ctx.exit(n) from a command
            return code
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.UsageError as exc:
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx else ""
        click.echo(f"fraudstream: error: {exc.format_message()}{hint}", err=True)
        return 2
    except click.ClickException as exc:
        click.echo(f"fraudstream: error: {exc.format_message()}", err=True)
        return exc.exit_code
    except (ConfigError, StoreMissingError, UserFacingError) as exc:
        click.echo(f"fraudstream: error: {exc}", err=True)
        return 2 if isinstance(exc, ConfigError) else 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `fraudstream ... | head`: the reader has gone, which is fine
        _silence_stdout()
        return 0
    except Exception as exc:  # last resort: one line for the user, the traceback in the log
        from fraudstream.cli.logs import FILE_ONLY

        logger.error("unexpected failure", exc_info=True, extra=FILE_ONLY)
        click.echo(f"fraudstream: error: {_first_line(exc)} (details in the log)", err=True)
        return 1
    return 0


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that Python's final flush does not fail again at exit."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def _first_line(exc: BaseException) -> str:
    """One line for the user: for a failed Flink job, the innermost error, preferring the
    Python exception raised inside a user function over the Java wrappers around it."""
    text = str(exc).strip() or type(exc).__name__
    lines = [line.strip() for line in text.splitlines()]
    errors = [line for line in lines if _ERROR_LINE.match(line)]
    python_errors = [line for line in errors if not line.startswith(("java.", "org.", "py4j."))]
    causes = [line.removeprefix("Caused by:").strip() for line in lines if line.startswith("Caused by:")]
    best = (python_errors or causes or errors or lines)[-1]
    return best[:300]


_ERROR_LINE = re.compile(r"^(?:[\w.]+\.)?\w*(?:Error|Exception|Interrupt): \S")


def entry() -> None:
    """Console-script entry point."""

    sys.exit(main())


# The kafka, alerts, demo, savepoint, evaluate and backtest commands live in their own modules and register on `cli`.
from fraudstream.cli import bench_cmd, job_cmds, kafka_cmds, quality_cmds  # noqa: E402, F401
