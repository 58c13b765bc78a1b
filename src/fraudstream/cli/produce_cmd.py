"""`fraudstream produce`: generated orders, or a file's lines, to stdout, a file or Kafka."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import orjson

from fraudstream.cli.app import UserError, pin_stream, resolve_settings, sigterm_as_interrupt
from fraudstream.cli.options import Command
from fraudstream.config import Settings
from fraudstream.generator import is_live


@click.command(cls=Command)
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
@click.option(
    "--rate",
    type=float,
    help="Orders per second of wall clock; 0 = as fast as possible [50]. Above 0 and without --seed or "
    "--start-time, a live stream: each order is stamped with the wall clock when it is made.",
)
@click.option("--seed", type=int, help="Fix the random stream on its own clock; same seed, same orders.")
@click.option("--fraud-ratio", type=float, help="Share of fraudulent orders [0.2].")
@click.option("--jitter-ms", type=int, help="Bounded out-of-order jitter of event times [0].")
@click.option(
    "--start-time",
    help="ISO-8601 start of the stream's own clock, or 'now' for the wall clock (a live stream, with --rate "
    "above 0) [now; 2026-01-01T00:00:00Z with --seed].",
)
@click.option(
    "--users",
    type=int,
    help="Normal users in the population [20000]; a live stream scales them to its rate (x rate/4), so each "
    "orders as often as at the reproducible stream's 4 orders/s.",
)
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
    settings = pin_stream(resolve_settings(ctx, **flags))
    cfg = settings.generator
    # A file is replayed as fast as possible unless a rate is asked for.
    rate = cfg.rate if from_file is None or opts["rate"] is not None else 0.0
    if from_file is not None and not from_file.is_file():
        raise UserError(f"input file not found: {from_file}")
    to_kafka = bool(bootstrap_servers or to_kafka or topic)
    if to_kafka and output != "-":
        raise click.UsageError(
            "-o/--output writes lines; it cannot be combined with --kafka, --bootstrap-servers or --topic"
        )
    records, seed = _order_records(settings, from_file, keyed=to_kafka)
    if to_kafka:
        _produce_to_kafka(settings, topic, records, rate, quiet)
        return
    from fraudstream.generator.pacing import paced

    out = sys.stdout.buffer if output == "-" else _open_output(Path(output))
    started = last_report = time.monotonic()
    n = 0
    try:
        for _, value in paced(records, rate):
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
        origin = f"from {from_file}" if from_file else f"(seed {seed}{', live clock' if is_live(cfg) else ''})"
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

    with sigterm_as_interrupt():
        summary = publisher.publish(records, rate=rate, progress=None if quiet else progress)
    how = "stopped" if summary.interrupted else "done"
    click.echo(
        f"{how}: {summary.delivered} of {summary.sent} orders delivered to {publisher.topic} "
        f"in {summary.seconds:.1f}s ({summary.delivered / max(summary.seconds, 1e-9):,.0f}/s)",
        err=True,
    )
    if summary.failed:
        raise UserError(f"{summary.failed} orders were not delivered: {summary.first_error}")


def _open_output(path: Path):
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return open(path, "wb")
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror}") from None
