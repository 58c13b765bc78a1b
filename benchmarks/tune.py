"""Search rule settings on the generator's mix of loud patterns, offline, to choose the defaults.

Runs the rules' own code (`fraudstream.detectors.replay`, the same decisions as the Flink job)
over a generated stream for each candidate value of one setting at a time, the others at the
defaults, and scores each with `fraudstream.evaluation`. The chosen values are then checked
through the real job with `fraudstream backtest` (see docs/quality.md, Tuned defaults).

The stream holds the four patterns the rules target, in equal shares (the generator's mix when
the defaults were tuned, so the published table stays reproducible); the quiet patterns
(account_takeover, promo_abuse) are for the model, and `--pattern-shares` adds them.

    .venv/bin/python benchmarks/tune.py --orders 100000 --seed 11
"""

from __future__ import annotations

import argparse
import time

import orjson

from fraudstream.config import DetectorSettings, GeneratorSettings
from fraudstream.detectors import AlertDeduplicator, build_detectors
from fraudstream.detectors.replay import replay
from fraudstream.evaluation import AlertRecord, evaluate, iter_labelled
from fraudstream.events import parse_record
from fraudstream.generator import generator_from_settings

# The mix the defaults were tuned on (docs/quality.md pins it in its commands too).
LOUD_MIX = '{"velocity_burst": 1, "account_farm": 1, "high_value": 1, "city_hopping": 1}'

GRID: dict[str, list[float]] = {
    "velocity_threshold": [2, 3, 4, 5, 6],
    "velocity_window_ms": [120_000, 300_000, 600_000],
    "device_sharing_threshold": [2, 3, 4, 5],
    "device_sharing_window_ms": [1_800_000, 3_600_000, 7_200_000],
    "high_value_threshold": [1500.0, 2000.0, 2500.0, 3000.0, 3500.0],
    "geo_window_ms": [300_000, 600_000, 1_200_000, 1_800_000, 3_600_000],
}
RULE_OF = {
    "velocity": "VELOCITY_FRAUD",
    "device_sharing": "DEVICE_SHARING_FRAUD",
    "high_value": "HIGH_VALUE_FRAUD",
    "geo": "GEO_ANOMALY_FRAUD",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--mean-gap-ms", type=int, default=1_000, help="event-time gap: 100k orders ~ 28 hours")
    parser.add_argument(
        "--pattern-shares", default=LOUD_MIX, help="generator.pattern_shares as JSON (default: %(default)s)"
    )
    args = parser.parse_args()
    started = time.monotonic()
    gen = generator_from_settings(
        GeneratorSettings(seed=args.seed, mean_gap_ms=args.mean_gap_ms, pattern_shares=args.pattern_shares)
    )
    raw = list(gen.orders(args.orders))
    orders = [parse_record(orjson.dumps(r)) for r in raw]
    labelled = list(iter_labelled(raw))
    print(f"{len(orders):,} orders generated in {time.monotonic() - started:.0f}s")
    base = DetectorSettings()
    print(f"{'setting':<26}{'value':>10}  {'alerts':>7}{'precision':>10}{'recall':>8}{'false/1k':>9}{'ttd p50 s':>10}")
    for name, values in GRID.items():
        rule = RULE_OF[next(r for r in RULE_OF if name.startswith(r))]
        for value in values:
            cfg = base.model_copy(update={name: value})
            alerts = replay(orders, build_detectors(cfg), AlertDeduplicator(cfg.dedup_cooldown_ms))
            records = [AlertRecord(a.alert_type, a.transaction_id, a.alert_id) for a in alerts if a.alert_type == rule]
            row = evaluate(labelled, records).row(rule)

            def pct(x: float | None) -> str:
                return "n/a" if x is None else f"{100 * x:.1f}%"

            ttd = "n/a" if row.ttd_median_s is None else f"{row.ttd_median_s:.0f}"
            mark = " *" if value == getattr(base, name) else ""
            print(
                f"{name:<26}{value:>10g}  {row.alerts:>7}{pct(row.precision):>10}{pct(row.actor_recall):>8}"
                f"{row.false_per_1k_honest or 0:>9.2f}{ttd:>10}{mark}"
            )
    print(f"done in {time.monotonic() - started:.0f}s (* = the current default)")


if __name__ == "__main__":
    main()
