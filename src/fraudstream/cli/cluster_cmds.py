"""`fraudstream cluster`: a local standalone Flink cluster, to run the job as it runs on any cluster."""

from __future__ import annotations

import time

import click
import psutil
from tabulate import tabulate

from fraudstream.cli.app import resolve_settings, sigterm_as_interrupt
from fraudstream.cli.options import Group
from fraudstream.config import Settings
from fraudstream.events.text import escape_controls as esc


def _cluster(settings: Settings):
    from fraudstream.cluster.standalone import LocalCluster

    return LocalCluster(settings)


@click.group("cluster", cls=Group)
def cluster_group() -> None:
    """Start, stop and look at a local standalone Flink cluster (a JobManager and TaskManagers
    from the Flink that PyFlink carries, with its web UI); submit the job to it with
    'fraudstream run --jobmanager HOST:PORT'.

    \b
      fraudstream cluster start --taskmanagers 2      # 2 x 2 task slots, ~15 s
      fraudstream run --jobmanager 127.0.0.1:8081     # the job, submitted to it
      fraudstream cluster status                      # processes, slots, jobs
      fraudstream cluster stop

    \b
    It keeps its configuration, logs and pid files under cluster.dir (default
    <data-dir>/cluster), and listens on cluster.host (127.0.0.1) only: the web UI and
    REST endpoint on cluster.rest_port (8081), the JVMs' own ports on free ones.
    Settings: cluster.taskmanagers, cluster.slots, cluster.jobmanager_memory,
    cluster.taskmanager_memory; see 'fraudstream config show'.
    """


@cluster_group.command("start")
@click.option(
    "--taskmanagers",
    type=click.IntRange(1, 16),
    help="TaskManagers to start [cluster.taskmanagers, 1].",
)
@click.option("--slots", type=click.IntRange(1, 64), help="Task slots per TaskManager [cluster.slots, 2].")
@click.pass_context
def cluster_start(ctx: click.Context, taskmanagers: int | None, slots: int | None) -> None:
    """Start the cluster in the background; returns once every TaskManager is registered
    (10-20 s). Does nothing if ours already runs. Parallelism up to TaskManagers x slots."""
    settings = resolve_settings(ctx, **{"cluster.taskmanagers": taskmanagers, "cluster.slots": slots})
    cluster = _cluster(settings)
    status = cluster.status()
    if status is not None:
        click.echo(f"Flink cluster already running: JobManager pid {status.jobmanager_pid}, {status.web_url}")
        if taskmanagers is not None and taskmanagers != len(status.taskmanager_pids):
            click.echo(
                f"   it has {len(status.taskmanager_pids)} TaskManager(s), not {taskmanagers}: "
                "'fraudstream cluster stop' first to start it anew"
            )
    else:
        c = settings.cluster
        click.echo(
            f"Starting a local Flink cluster: 1 JobManager, {c.taskmanagers} TaskManager(s) x {c.slots} slots "
            f"(files in {cluster.root})"
        )
        started = time.monotonic()
        with sigterm_as_interrupt():  # stopped again if interrupted half-way
            status = cluster.start(progress=lambda line: click.echo(f"   {line}"))
        click.echo(f"Flink cluster started in {time.monotonic() - started:.1f}s")
    tms = ", ".join(str(p) for p in status.taskmanager_pids) or "none"
    click.echo(f"   JobManager pid {status.jobmanager_pid}; TaskManager pids {tms}")
    click.echo(f"   {status.slots_total} task slots, {status.slots_available} free")
    click.echo(f"Web UI: {status.web_url}")
    click.echo(f"Submit the job: fraudstream run --jobmanager {status.rest_address} ...")
    click.echo(f"Logs: {cluster.log_dir}")
    if status.reporter:
        click.echo(f"No Prometheus metrics from the cluster: {status.reporter}")
    click.echo("Stop it with: fraudstream cluster stop")


@cluster_group.command("stop")
@click.pass_context
def cluster_stop(ctx: click.Context) -> None:
    """Stop the cluster that 'cluster start' started (its JVMs by PID, and their Python workers);
    running jobs end with it (take a savepoint first: 'fraudstream savepoint')."""
    cluster = _cluster(resolve_settings(ctx))
    status = cluster.status()
    started = time.monotonic()
    pids = [status.jobmanager_pid, *status.taskmanager_pids] if status else cluster.taskmanager_pids()
    if cluster.stop():
        shown = f" (pids {', '.join(map(str, pids))})" if pids else ""
        click.echo(f"Flink cluster stopped{shown} in {time.monotonic() - started:.1f}s")
    else:
        click.echo("no local Flink cluster of ours is running")


@cluster_group.command("status")
@click.pass_context
def cluster_status(ctx: click.Context) -> None:
    """Processes, task slots and jobs of the local cluster. Exit status 0 if it runs and every
    TaskManager is registered, 1 if not."""
    cluster = _cluster(resolve_settings(ctx))
    status = cluster.status()
    if status is None:
        left = cluster.taskmanager_pids()
        if left:  # a JobManager killed or crashed leaves its TaskManagers (300 MB each) behind
            pids = ", ".join(map(str, left))
            click.echo(f"JobManager gone; TaskManager pid(s) {pids} left: run 'fraudstream cluster stop'")
        else:
            click.echo(
                f"not running (would listen on {cluster.rest_address}); start it with 'fraudstream cluster start'"
            )
        ctx.exit(1)
    state = "running" if status.ready else "starting or unhealthy"
    click.echo(f"Flink cluster {state}: Web UI {status.web_url} (logs in {status.log_dir})")
    procs = [("JobManager", status.jobmanager_pid)] + [("TaskManager", pid) for pid in status.taskmanager_pids]
    rows = [(name, pid, _rss(pid), status.metrics.get(pid, "-")) for name, pid in procs]
    click.echo(tabulate(rows, headers=["Process", "PID", "Memory (RSS)", "Metrics"], tablefmt="simple"))
    if not status.rest_ok:
        click.echo(f"its REST endpoint at {status.rest_address} does not answer")
        ctx.exit(1)
    click.echo(
        f"\nTaskManagers registered: {status.taskmanagers} of {len(status.taskmanager_pids)}; "
        f"task slots: {status.slots_total} ({status.slots_available} free)"
    )
    if status.jobs:
        jobs = [(j.id, esc(j.name), j.state) for j in status.jobs]
        click.echo("\n" + tabulate(jobs, headers=["Job", "Name", "State"], tablefmt="simple"))
    else:
        click.echo("no jobs")
    if status.reporter:
        click.echo(f"no Prometheus metrics: {status.reporter}")
    if not status.ready:
        ctx.exit(1)


def _rss(pid: int) -> str:
    try:
        return f"{psutil.Process(pid).memory_info().rss / 2**20:.0f} MB"
    except psutil.Error:
        return "-"
