"""Commands around Kafka: the local broker, topics, the alert tail and the all-in-one demo."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click

from fraudstream.cli.app import global_options, resolve_settings, sigterm_as_interrupt
from fraudstream.cli.options import Command, Group, model_option
from fraudstream.cli.run_cmd import banner, check_cluster, check_model, summarize
from fraudstream.config import SECRETS, DashboardSettings, Settings
from fraudstream.sockets import answers, free_port

# How long the demo waits for its dashboard to answer: the web stack's imports and the first
# look at the store take a second or two; a dashboard that is not up by then is left out.
DASHBOARD_START_S = 15.0


def _broker(settings: Settings):
    from fraudstream.kafka.broker import LocalBroker

    return LocalBroker(settings.broker, settings.data_dir)


# ------------------------------------------------------------------------- kafka
@click.group("kafka", cls=Group)
def kafka_group() -> None:
    """Run a local single-node Kafka broker (KRaft, no Docker) and manage the topics.

    \b
    The broker keeps its data and logs under <data-dir>/kafka and listens on
    broker.host:broker.port (127.0.0.1:9092). Its jars come from Maven Central
    ('make jars'). Users with Docker may run the official image instead:
      docker run -d -p 9092:9092 apache/kafka:4.1.1
    and then 'fraudstream kafka topics' to create the topics.
    """


@kafka_group.command("start")
@click.option("--no-topics", is_flag=True, help="Do not create the pipeline's topics.")
@click.pass_context
def kafka_start(ctx: click.Context, no_topics: bool) -> None:
    """Start the broker in the background (returns once it answers) and create the topics."""
    settings = resolve_settings(ctx)
    broker = _broker(settings)
    already = broker.pid() is not None
    started = time.monotonic()
    status = broker.start()
    if already:
        click.echo(f"Kafka broker already running: pid {status.pid}, {status.bootstrap}")
    else:
        click.echo(
            f"Kafka broker started: pid {status.pid}, {status.bootstrap} "
            f"(ready in {time.monotonic() - started:.1f}s; logs in {broker.log_dir})"
        )
    if not no_topics:
        _create_topics(settings.model_copy(update={"kafka": broker.kafka_settings(settings.kafka)}))


@kafka_group.command("stop")
@click.pass_context
def kafka_stop(ctx: click.Context) -> None:
    """Stop the broker that 'kafka start' started (by its PID)."""
    broker = _broker(resolve_settings(ctx))
    pid = broker.pid()
    if broker.stop():
        click.echo(f"Kafka broker stopped (pid {pid})")
    else:
        click.echo("no Kafka broker of ours is running")


@kafka_group.command("status")
@click.pass_context
def kafka_status(ctx: click.Context) -> None:
    """Is our broker running and answering? Exit status 0 if so, 1 if not."""
    settings = resolve_settings(ctx)
    status = _broker(settings).status()
    if status.running and status.ready:
        click.echo(f"running: pid {status.pid}, answering at {status.bootstrap}")
        _list_topics(settings.model_copy(update={"kafka": _broker(settings).kafka_settings(settings.kafka)}))
        return
    if status.running:
        click.echo(f"starting or unhealthy: pid {status.pid}, not answering at {status.bootstrap}")
    else:
        click.echo(f"not running (would listen on {status.bootstrap}); start it with 'fraudstream kafka start'")
    ctx.exit(1)


@kafka_group.command("topics")
@click.option("--bootstrap-servers", metavar="HOST:PORT", help="Brokers to use [kafka.bootstrap_servers].")
@click.pass_context
def kafka_topics(ctx: click.Context, bootstrap_servers: str | None) -> None:
    """Create the pipeline's topics where missing (raw orders, alerts, dead letters, the compacted
    rules topic) and list them."""
    settings = resolve_settings(ctx, **{"kafka.bootstrap_servers": bootstrap_servers})
    _create_topics(settings)


def _create_topics(settings: Settings) -> None:
    from fraudstream.kafka.clients import ensure_project_topics

    created = ensure_project_topics(settings)
    if created:
        click.echo(f"created topics: {', '.join(created)}")
    _list_topics(settings)


def _list_topics(settings: Settings) -> None:
    from fraudstream.kafka.clients import connect_admin, project_topics

    k = settings.kafka
    meta = connect_admin(k).list_topics(timeout=10)
    for name in project_topics(k, settings.rules.topic):
        info = meta.topics.get(name)
        shown = f"{len(info.partitions)} partitions" if info and not info.error else "missing"
        click.echo(f"   {name:<32} {shown}")


# ------------------------------------------------------------------------ alerts
@click.group("alerts", cls=Group)
def alerts_group() -> None:
    """Watch the alerts topic."""


@alerts_group.command("tail")
@click.option("--bootstrap-servers", metavar="HOST:PORT", help="Brokers to read [kafka.bootstrap_servers].")
@click.option("--topic", help="Alerts topic [zomato_fraud_alerts].")
@click.option("--from-beginning", is_flag=True, help="Start with the oldest alert instead of new ones.")
@click.option("--max", "max_alerts", type=click.IntRange(min=1), help="Exit after this many alerts.")
@click.option("--idle-timeout", type=float, help="Exit after this many seconds without a new alert.")
@click.pass_context
def alerts_tail(
    ctx: click.Context,
    bootstrap_servers: str | None,
    topic: str | None,
    from_beginning: bool,
    max_alerts: int | None,
    idle_timeout: float | None,
) -> None:
    """Print alerts from the alerts topic as they arrive (committed alerts only), until Ctrl-C."""
    from fraudstream.kafka.tail import tail_alerts

    settings = resolve_settings(ctx, **{"kafka.bootstrap_servers": bootstrap_servers})
    k = settings.kafka
    click.echo(f"following {topic or k.alerts_topic} at {k.bootstrap_servers}; Ctrl-C to stop", err=True)
    with sigterm_as_interrupt():
        shown = tail_alerts(
            k,
            click.echo,
            from_beginning=from_beginning,
            max_alerts=max_alerts,
            idle_timeout_s=idle_timeout,
            topic=topic,
        )
    click.echo(f"{shown} alerts shown", err=True)


# -------------------------------------------------------------------------- demo
@click.command(cls=Command)
@click.option("--rate", type=float, default=50.0, show_default=True, help="Orders per second from the producer.")
@click.option("--keep-broker", is_flag=True, help="Leave the broker running afterwards.")
@click.option("--no-dashboard", is_flag=True, help="Do not start the dashboard.")
@click.option(
    "--jobmanager",
    metavar="HOST:PORT",
    help="Run the job on the Flink cluster with this REST address (cluster.jobmanager; e.g. "
    "'fraudstream cluster start') instead of the local mini-cluster.",
)
@click.pass_context
def demo(
    ctx: click.Context,
    rate: float,
    keep_broker: bool,
    no_dashboard: bool,
    jobmanager: str | None,
    model_path: Path | None,
) -> None:
    """Everything at once: local broker, producer, dashboard and the job on Kafka; Ctrl-C stops all.

    The dashboard's address is printed before the job starts (dashboard.host and
    dashboard.port, 127.0.0.1:8050; its log in <data-dir>/dashboard.log). The broker is
    stopped at the end if this command started it (unless --keep-broker).
    Watch the alerts topic from another terminal with 'fraudstream alerts tail'.
    """
    from fraudstream.cli.logs import configure_logging
    from fraudstream.cli.runner import run_job
    from fraudstream.flink.sources import SourceSpec

    settings = resolve_settings(ctx, **{"model.path": model_path, "cluster.jobmanager": jobmanager})
    configure_logging(settings)
    check_model(settings)  # a bad model file is one line before anything starts
    check_cluster(settings)  # and no cluster at --jobmanager
    broker = _broker(settings)
    started_broker = broker.pid() is None
    producer = dashboard = None
    try:
        status = broker.start()
        click.echo(
            f"Kafka broker {'started' if started_broker else 'already running'}: pid {status.pid}, {status.bootstrap}"
        )
        k = broker.kafka_settings(settings.kafka)
        settings = settings.model_copy(
            update={"kafka": k, "pipeline": settings.pipeline.model_copy(update={"source": "kafka"})}
        )
        _create_topics(settings)
        # Started first and awaited after the producer: the two start up side by side.
        started = None if no_dashboard else _start_dashboard(ctx, settings)
        dashboard = started[0] if started else None
        if started is not None:  # its port as chosen (0 = any free): links in notifications point there
            settings = settings.model_copy(update={"dashboard": started[1]})
        producer = _start_producer(ctx, settings, rate)
        click.echo(
            f"Producer started: pid {producer.pid}, {rate:g} orders/s (progress in {settings.data_dir}/producer.log)"
        )
        if started is not None and not _await_dashboard(*started):
            dashboard = None  # it has ended, or was stopped
        click.echo(banner(settings))
        summary = run_job(settings, SourceSpec("kafka"), click.echo)
        summarize(summary, settings)
    finally:
        # Clean-up is bounded by timeouts; a second Ctrl-C must not cut it short.
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            if producer is not None:
                _stop_child(producer)
                click.echo(f"Producer stopped (exit {producer.returncode})")
            if dashboard is not None:
                _stop_child(dashboard)
                click.echo(f"Dashboard stopped (exit {dashboard.returncode})")
            if started_broker and not keep_broker and broker.stop():
                click.echo("Kafka broker stopped")
            elif broker.pid() is not None:
                click.echo(f"Kafka broker left running (pid {broker.pid()}); 'fraudstream kafka stop' stops it")
        finally:
            signal.signal(signal.SIGINT, previous)


demo.params.append(model_option())


def _child(ctx: click.Context, settings: Settings) -> tuple[list[str], dict[str, str]]:
    """A `fraudstream` command line and environment for a child of the demo: this command's
    --config, --profile and --set, and the demo broker's address.

    Secrets (the broker's login, a --set dashboard token or notification URL) go through the
    environment, so that none appears in the process list."""
    given = global_options(ctx)
    k = settings.kafka
    env = dict(os.environ)
    secret_keys = {f"{section}.{key}" for section, key in SECRETS}
    args = [sys.executable, "-m", "fraudstream", "--data-dir", str(settings.data_dir)]
    if given.config is not None:
        args += ["--config", str(given.config)]
    if given.profile is not None:
        args += ["--profile", given.profile]
    for key, value in given.set.items():
        if key in secret_keys:
            env[f"FRAUDSTREAM_{key.replace('.', '__').upper()}"] = str(value)
        else:
            args += ["--set", f"{key}={value}"]
    for key in ("bootstrap_servers", "security_protocol", "sasl_mechanism", "sasl_username"):
        if getattr(k, key) is not None:
            args += ["--set", f"kafka.{key}={getattr(k, key)}"]
    if k.sasl_password is not None:
        env["FRAUDSTREAM_KAFKA__SASL_PASSWORD"] = k.sasl_password
    return args, env


def _start_producer(ctx: click.Context, settings: Settings, rate: float) -> subprocess.Popen[bytes]:
    """`fraudstream produce` to the demo's broker."""
    args, env = _child(ctx, settings)
    args += ["produce", "--topic", settings.kafka.raw_topic, "--rate", str(rate)]
    with open(settings.data_dir / "producer.log", "ab") as log:
        return subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log, env=env)


def _start_dashboard(
    ctx: click.Context, settings: Settings
) -> tuple[subprocess.Popen[bytes], DashboardSettings, Path, int] | None:
    """`fraudstream dashboard` beside the job, its output in <data-dir>/dashboard.log; None
    (said in one line) if its port is taken. Port 0 becomes a free port chosen here, so that
    the demo knows the address to print."""
    d = settings.dashboard
    d = d.model_copy(update={"port": d.port or free_port(d.host)})
    if answers(d.host, d.port):
        click.echo(
            f"Dashboard not started: something else answers on {d.host}:{d.port} "
            "(choose another port with --set dashboard.port=N)"
        )
        return None
    args, env = _child(ctx, settings)
    args += ["dashboard", "--host", d.host, "--port", str(d.port)]
    path = settings.data_dir / "dashboard.log"
    with open(path, "ab") as log:
        offset = log.tell()  # this run's lines start here
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env)
    return proc, d, path, offset


def _await_dashboard(proc: subprocess.Popen[bytes], d: DashboardSettings, log: Path, offset: int) -> bool:
    """Wait until the dashboard answers and print its address; if it ends or does not answer in
    time, stop it, say so in one line and go on without it (False)."""
    deadline = time.monotonic() + DASHBOARD_START_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            click.echo(
                f"Dashboard did not start (exit {proc.returncode}: {_last_line(log, offset)}); going on without it"
            )
            return False
        if answers(d.host, d.port):
            token = "; open it once with ?token=<access token>" if d.token else ""
            click.echo(f"Dashboard: {d.url} (pid {proc.pid}, log in {log}{token})")
            return True
        time.sleep(0.1)
    _stop_child(proc)
    click.echo(
        f"Dashboard did not answer on {d.host}:{d.port} within {DASHBOARD_START_S:g}s (see {log}); going on without it"
    )
    return False


def _last_line(log: Path, offset: int) -> str:
    """The last line the child wrote to its log (its one-line error, usually)."""
    try:
        with open(log, "rb") as fh:
            fh.seek(offset)
            lines = [line.strip() for line in fh.read().decode(errors="replace").splitlines() if line.strip()]
    except OSError:
        lines = []
    return lines[-1][:300] if lines else f"nothing in {log}"


def _stop_child(proc: subprocess.Popen[Any], timeout_s: float = 20.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
