"""`fraudstream bench`: the job's throughput, latency, memory and checkpoints beside its ceilings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from fraudstream.cli.app import UserError, resolve_settings, sigterm_as_interrupt
from fraudstream.cli.options import Command


@click.command(cls=Command)
@click.option("--orders", type=int, help="Orders to load into the raw topic [2,000,000; --quick: 50,000].")
@click.option("--users", type=int, help="Distinct users in the generated population [1,000,000; --quick: 20,000].")
@click.option(
    "--engine",
    "engines",
    multiple=True,
    type=click.Choice(["sql", "sql-p2", "sql-model", "datastream", "reference"]),
    help="Engines to run (repeatable) [all five]; sql-p2 is the SQL engine on two task slots (parallelism 2), "
    "sql-model the SQL engine with a risk model trained for the run.",
)
@click.option("--slow-seconds", type=float, help="Time limit of a Python-operator engine's run [120].")
@click.option(
    "--latency-load",
    "latency_loads",
    multiple=True,
    type=float,
    help="Offered load of a latency run, as a share of the fastest engine's throughput (repeatable) [0.25, 0.5].",
)
@click.option(
    "--latency-rate",
    "latency_rates",
    multiple=True,
    type=float,
    help="Offered load of a latency run in orders/s (repeatable); replaces --latency-load.",
)
@click.option("--latency-seconds", type=float, help="How long each latency run offers load [60].")
@click.option(
    "--latency-checkpoint-ms",
    type=int,
    help="Checkpoint interval of the latency runs: alerts commit at checkpoints [checkpoint.interval_ms].",
)
@click.option(
    "--peer",
    "peer_guarantees",
    multiple=True,
    type=click.Choice(["at-least-once", "exactly-once"]),
    help="Processing guarantee of a Quix Streams peer run (repeatable) [both].",
)
@click.option("--no-peer", is_flag=True, help="Skip the Quix Streams peer.")
@click.option(
    "--quick", is_flag=True, help="A small, fast run that proves every step works (CI runs it, on fewer orders)."
)
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("benchmarks/results"),
    show_default=True,
    help="Where bench.json, bench.md and latency.png go.",
)
@click.pass_context
def bench(ctx: click.Context, quick: bool, no_peer: bool, out: Path, **opts: Any) -> None:
    """Measure the job on this machine, beside the ceilings it cannot beat.

    Starts a private Kafka broker, loads generated orders into a fresh raw topic and
    measures, over those same records: the Kafka ceiling (read them and write as many
    alert-sized records, no processing), the Python ceiling (parse and apply the rules
    in one process, no Flink; exact), the Quix Streams peer, and the job with each
    engine, bounded. Python-operator engines run for --slow-seconds only (their rate is
    steady long before). Then the fastest engine runs at fixed offered loads to measure
    alert latency, from an order's append to its alert's commit. Throughput is the slope
    of the source's record count (Flink's REST metrics), so start-up is reported apart.

    The peer is the same four rules and cooldown written on Quix Streams, the pure-Python
    stream processor a Python team would pick instead of Flink, run at-least-once and
    exactly-once (--peer picks one, --no-peer skips it). It processes orders in arrival
    order, so its alert counts are shown beside the exact ones; each engine's throughput
    is shown as a ratio to its own. It runs in an environment of its own, .venv-peers
    (quixstreams pins older Kafka and pydantic libraries), which `make setup` creates, or
    the bench on first use.

    \b
    Results: <out>/bench.json, bench.md (the README's table) and latency.png.
    Takes about 15 minutes with the defaults on 2 cores, 3 with --quick.
    """
    from fraudstream.bench.suite import BenchOptions, run_bench
    from fraudstream.cli.logs import configure_logging

    settings = resolve_settings(ctx)
    configure_logging(settings)
    given = {
        "orders": opts["orders"],
        "users": opts["users"],
        "engines": tuple(opts["engines"]) or None,
        "slow_seconds": opts["slow_seconds"],
        "latency_loads": tuple(opts["latency_loads"]) or None,
        "latency_seconds": opts["latency_seconds"],
        "latency_rates": tuple(opts["latency_rates"]) or None,
        "latency_checkpoint_ms": opts["latency_checkpoint_ms"],
        "peer_guarantees": () if no_peer else tuple(opts["peer_guarantees"]) or None,
    }
    given = {k: v for k, v in given.items() if v is not None}
    if given.get("orders", 1000) < 1000:
        raise UserError("--orders must be at least 1000")
    work = settings.data_dir / "bench"
    options = (
        BenchOptions.quick(out_dir=out, work_dir=work, **given)
        if quick
        else BenchOptions(out_dir=out, work_dir=work, **given)
    )
    with sigterm_as_interrupt():  # a stop from a service manager cleans up as Ctrl-C does
        run_bench(settings, options, click.echo)
