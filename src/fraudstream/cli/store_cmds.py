"""`fraudstream store`: the alert store's schema, a local PostgreSQL server, and the copier alone."""

from __future__ import annotations

import logging
import signal
import threading
import time
from types import FrameType
from typing import Any

import click

from fraudstream.cli.app import resolve_settings, sigterm_as_interrupt
from fraudstream.cli.options import Group
from fraudstream.config import Settings
from fraudstream.errors import UserFacingError

logger = logging.getLogger(__name__)


@click.group("store", cls=Group)
def store_group() -> None:
    """The alert store: SQLite by default (store.db_path, <data-dir>/fraud_alerts.db), or a
    PostgreSQL database a team shares (store.url = postgresql://USER[:PASSWORD]@HOST[:PORT]/DB,
    best given as FRAUDSTREAM_STORE__URL or with the password in ~/.pgpass). The same
    schema, versions and exactly-once copy on both: see docs/store.md.
    """


def _location(settings: Settings) -> Any:
    from fraudstream.store.db import Location

    return Location.of(settings)


@store_group.command("migrate")
@click.pass_context
def store_migrate(ctx: click.Context) -> None:
    """Create the store if it is new, or apply the migrations it lacks, and print its schema
    version. Safe to run beside a running copier and readers, and twice at once. Writers (the
    copier, 'fraudstream run') migrate by themselves at start; readers never do."""
    from fraudstream.store import db, schema
    from fraudstream.store.alert_store import open_writer

    settings = resolve_settings(ctx)
    loc = _location(settings)
    with db.one_line(loc):
        conn = db.connect(loc, create=True, busy_timeout_ms=settings.store.busy_timeout_ms)
        try:
            before = schema.version(conn)
        finally:
            conn.close()
        conn = open_writer(loc, settings.store.busy_timeout_ms)
        try:
            after = schema.version(conn)
        finally:
            conn.close()
    if before == after:
        click.echo(f"{loc}: schema version {after}, up to date")
    else:
        click.echo(f"{loc}: schema version {before} -> {after}")


@store_group.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON output.")
@click.pass_context
def store_status(ctx: click.Context, as_json: bool) -> None:
    """Which store the settings name, its schema version against this fraudstream's, its rows
    per table, and how far the copier has copied each topic. Reads only."""
    from fraudstream.store.db import one_line

    settings = resolve_settings(ctx)
    loc = _location(settings)
    with one_line(loc):
        _store_status(settings, loc, as_json)


def _store_status(settings: Settings, loc: Any, as_json: bool) -> None:
    import orjson

    from fraudstream.store import queries, schema
    from fraudstream.store.db import DatabaseMissing, StoreMissingError

    out: dict[str, Any] = {"store": str(loc), "kind": loc.dialect, "known_version": schema.LATEST}
    try:
        conn = queries.open_read_only(loc, busy_timeout_ms=settings.store.busy_timeout_ms)
    except DatabaseMissing:
        raise  # not something `migrate` makes
    except StoreMissingError as exc:
        out.update(version=None, problem=str(exc))
        conn = None
    if conn is not None:
        try:
            out["version"] = schema.version(conn)
            out["rows"] = {
                t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                for t in ("fraud_alerts", "dead_letters", "alert_reviews", "notify_sent")
                if conn.has_table(t)
            }
            out["positions"] = queries.source_positions(conn) if conn.has_table("source_offsets") else []
            if conn.dialect == "postgresql":
                from fraudstream.store.lock import CopierLock

                holder = CopierLock.holder(conn)
                out["copier"] = holder
                out["server"] = conn.execute("SHOW server_version").fetchone()[0]
        finally:
            conn.close()
    if as_json:
        click.echo(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode())
        return
    click.echo(f"Store: {out['store']}" + (f" (PostgreSQL {out['server']})" if out.get("server") else ""))
    if out["version"] is None:
        click.echo(f"   {out['problem']}")
        click.echo("   'fraudstream store migrate' creates it")
        return
    version = out["version"]
    line = f"Schema version: {version} (this fraudstream's: {schema.LATEST})"
    if version < schema.LATEST:
        line += "; older: 'fraudstream store migrate' (or the next copier) upgrades it"
    click.echo(line)
    click.echo("Rows: " + ", ".join(f"{t} {n}" for t, n in out["rows"].items()))
    for p in out["positions"]:
        click.echo(f"   copied {p['topic']}/{p['partition']} up to offset {p['next_offset']}")
    if loc.dialect == "postgresql":
        click.echo(f"Copier: {out['copier'] or 'none running'}")


@store_group.command("follow")
@click.option("--quiet", is_flag=True, help="Do not print each alert as it is stored.")
@click.pass_context
def store_follow(ctx: click.Context, quiet: bool) -> None:
    """Copy the committed alerts and dead-letter topics (kafka.alerts_topic,
    kafka.dead_letter_topic) into the store, and send notifications (notify.*), until Ctrl-C
    or SIGTERM: the store's side of a job that runs elsewhere (a Flink cluster, 'flink run',
    'fraudstream run --jobmanager' on another machine). Exactly once: the topics' offsets are
    kept in the store, in the rows' transaction, and the next 'follow' goes on from them.
    One copier per store: a second one is refused."""
    from confluent_kafka import KafkaException

    from fraudstream.cli.format import alert_line, dead_letter_line
    from fraudstream.cli.logs import ALERT_LOGGER, configure_logging
    from fraudstream.metrics import process as process_metrics
    from fraudstream.notify import Notifier
    from fraudstream.store import AlertStore
    from fraudstream.store.mirror import TopicMirror

    settings = resolve_settings(ctx)
    configure_logging(settings)
    alert_log = logging.getLogger(ALERT_LOGGER)
    dead_log = logging.getLogger("fraudstream.dead_letters")

    def on_alert(alert: Any) -> None:
        line = alert_line(alert)
        alert_log.info(line)
        if not quiet:
            click.echo(line)

    def on_dead(dead: Any) -> None:
        dead_log.info(dead_letter_line(dead))

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    with sigterm_as_interrupt():  # Ctrl-C while connecting: a clean end, in one line
        store = AlertStore.open(settings)
    mirror = notifier = metrics_server = None
    handlers = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    copier: threading.Thread | None = None
    started = time.monotonic()
    try:
        try:
            mirror = TopicMirror(settings, store, on_alert=on_alert, on_dead=on_dead)
        except KafkaException as exc:
            why = exc.args[0].str() if exc.args and hasattr(exc.args[0], "str") else str(exc)
            raise UserFacingError(
                f"cannot read the topics from Kafka at {settings.kafka.bootstrap_servers}: {why}"
            ) from None
        metrics_server = process_metrics.serve(settings.metrics)
        if settings.notify.enabled:
            notifier = Notifier(settings).start()
        k = settings.kafka
        click.echo(
            f"Copying {k.alerts_topic} and {k.dead_letter_topic} from {k.bootstrap_servers} into "
            f"{store.location}" + (" and notifying" if notifier is not None else "") + "; Ctrl-C stops"
        )
        copier = threading.Thread(target=mirror.follow, args=(stop,), name="store-mirror", daemon=True)
        copier.start()
        while not stop.wait(0.2):
            if notifier is not None:
                notifier.check()
            if mirror.failure is not None:
                break
    finally:
        stop.set()
        if copier is not None:
            copier.join(30)
        for sig, previous in handlers.items():
            signal.signal(sig, previous)
        if mirror is not None:
            mirror.close()
        store.close()
        if notifier is not None:
            try:
                notifier.stop(settings.notify.timeout_s + 5, announce=click.echo)
            except KeyboardInterrupt:
                logger.warning("notifications not sent: interrupted; the next follow sends them")
        if metrics_server is not None:
            metrics_server.shutdown()
            metrics_server.server_close()
    if mirror.failure is not None:
        raise UserFacingError(f"the store's copier stopped: {mirror.failure}")
    s = mirror.stats
    click.echo(
        f"Stopped after {time.monotonic() - started:.0f}s: {sum(s.alerts.values())} alerts and "
        f"{sum(s.dead_letters.values())} dead letters copied into {store.location}"
    )


# --------------------------------------------------------------------------- postgres
@store_group.group("postgres", cls=Group)
def postgres_group() -> None:
    """A throwaway PostgreSQL server on this machine (Debian's postgresql package, 'make
    tools'), to try the shared store: a generated password, loopback only, its files under
    the data directory (as root, under the postgres user's home). 'start' prints the URL to
    put in store.url or FRAUDSTREAM_STORE__URL. Not for production: use a managed database."""


def _server(settings: Settings, port: int | None = None) -> Any:
    from fraudstream.store.server import LocalPostgres, server_root

    root = server_root(settings.data_dir)
    if port is not None:
        return LocalPostgres(root, port, settings.store.server_host)
    return LocalPostgres.at(root, settings.store.server_port, settings.store.server_host)


@postgres_group.command("start")
@click.option("--port", type=click.IntRange(1, 65535), help="Port to listen on [store.server_port, 5433].")
@click.pass_context
def postgres_start(ctx: click.Context, port: int | None) -> None:
    """Start the local server in the background (created on first use) and print its URL."""
    settings = resolve_settings(ctx)
    server = _server(settings, port)
    status = server.status()
    if status.running:
        click.echo(f"PostgreSQL already running: PID {status.pid}, port {server.port}")
    else:
        _refuse_taken_port(server.host, server.port)
        with sigterm_as_interrupt():
            status = server.start()
        click.echo(f"PostgreSQL started: PID {status.pid}, port {server.port} (files in {server.root})")
    click.echo("Use it for the store:")
    click.echo(f"   export FRAUDSTREAM_STORE__URL='{status.url}'")
    click.echo("   fraudstream store migrate")
    click.echo("Stop it with: fraudstream store postgres stop")


def _refuse_taken_port(host: str, port: int) -> None:
    import socket

    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError as exc:
            raise UserFacingError(
                f"cannot start PostgreSQL on {host}:{port}: {exc.strerror}; choose another with --port"
            ) from None


@postgres_group.command("stop")
@click.pass_context
def postgres_stop(ctx: click.Context) -> None:
    """Stop the local server (by its PID; clients are disconnected). Its data stays for the
    next start."""
    server = _server(resolve_settings(ctx))
    pid = server.pid()
    if server.stop():
        click.echo(f"PostgreSQL stopped (PID {pid})")
    else:
        click.echo("PostgreSQL is not running")


@postgres_group.command("status")
@click.pass_context
def postgres_status(ctx: click.Context) -> None:
    """Whether the local server runs, and its URL."""
    server = _server(resolve_settings(ctx))
    status = server.status()
    if not status.running:
        click.echo(f"PostgreSQL is not running (files in {server.root})")
        return
    click.echo(f"PostgreSQL running: PID {status.pid}, port {server.port}, {'ready' if status.ready else 'starting'}")
    click.echo(f"   store.url: {status.url}")
