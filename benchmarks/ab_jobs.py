"""A/B of the job: two (or more) checkouts, or settings, run in turn over one topic.

    git worktree add /tmp/before <commit>          # and its helper jar: make jvm/lib/flink/fraudstream-flink.jar
    .venv/bin/python benchmarks/ab_jobs.py --orders 600000 --users 300000 --rounds 3 \\
        before=/tmp/before after=. \\
        'g1=.|FRAUDSTREAM_PIPELINE__JVM_OPTIONS=-XX:+UseG1GC -Xmx1g'

Each variant is `name=checkout[|VAR=value...]`: the job runs with that checkout's code
(PYTHONPATH=<checkout>/src, so its own helper jar) and those environment variables. One
private broker, one raw topic of generated orders; each round measures the Python ceiling
again and runs every variant once, bounded over the whole topic (`fraudstream bench`'s own
measured run), the order reversed every other round, so that the machine's drift (up to 3x
within minutes here) falls on both sides. Prints, per run, one JSON line: throughput, its ratio
to that round's Python ceiling, start-up, peak RSS and the Flink JVM's CPU seconds by kind of
thread. Only ratios within one round compare.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import orjson

from fraudstream.bench.ceilings import python_ceiling, read_values
from fraudstream.bench.jobs import run_job
from fraudstream.bench.suite import BenchOptions, _free_port, _load, _topics
from fraudstream.config import BrokerSettings, load_settings
from fraudstream.kafka.broker import LocalBroker


def _variant(text: str) -> tuple[str, Path, dict[str, str]]:
    name, _, spec = text.partition("=")
    checkout, *assignments = spec.split("|")
    if not name or not (Path(checkout) / "src" / "fraudstream").is_dir():
        raise SystemExit(f"not a variant (name=checkout[|VAR=value...] with a checkout's src/fraudstream): {text}")
    env = dict(a.split("=", 1) for a in assignments)
    return name, Path(checkout).resolve(), env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("variants", nargs="+", help="name=checkout[|VAR=value...]")
    parser.add_argument("--orders", type=int, default=600_000)
    parser.add_argument("--users", type=int, default=300_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    variants = [_variant(v) for v in args.variants]
    settings = load_settings()
    work = Path(tempfile.mkdtemp(prefix="ab-jobs-"))
    broker = LocalBroker(BrokerSettings(port=_free_port(), controller_port=_free_port()), work / "kafka")
    broker.start()
    base = dict(os.environ)
    try:
        k = _topics(broker, settings.kafka)
        print(f"loading {args.orders:,} orders ({args.users:,} users)", file=sys.stderr)
        _load(k, BenchOptions(orders=args.orders, users=args.users))
        values = read_values(k, args.orders)
        for r in range(args.rounds):
            ceiling = python_ceiling(values, settings.detectors)["events_per_s"]
            for name, checkout, env in variants if r % 2 == 0 else variants[::-1]:
                os.environ.clear()
                os.environ.update(base | env | {"PYTHONPATH": str(checkout / "src")})
                run = run_job("sql", k, work / f"run-{r}-{name}", args.orders, 1_800)
                line = {
                    "round": r, "variant": name, "events_per_s": run.events_per_s,
                    "python_ceiling": round(ceiling), "ratio": round(run.events_per_s / ceiling, 3),
                    "startup_s": run.startup_s, "finished": run.finished,
                    "jvm_rss_mb": run.peak_rss_mb.get("Flink JVM"), "jvm_cpu_s": run.jvm_cpu_s,
                    "at": time.strftime("%H:%M:%S"),
                }  # fmt: skip
                print(orjson.dumps(line).decode(), flush=True)
    finally:
        os.environ.clear()
        os.environ.update(base)
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
