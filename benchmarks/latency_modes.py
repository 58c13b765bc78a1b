"""Alert latency against offered load, exactly-once beside at-least-once, in one chart.

    for mode in exactly-once at-least-once; do
      FRAUDSTREAM_KAFKA__DELIVERY=$mode .venv/bin/fraudstream --data-dir /tmp/lat-$mode bench \\
        --orders 20000 --users 10000 --engine sql --latency-rate 100 --latency-rate 300 \\
        --latency-rate 1000 --latency-seconds 30 --no-peer --out /tmp/lat-$mode/out
    done
    .venv/bin/python benchmarks/latency_modes.py /tmp/lat-exactly-once/out/bench.json \\
        /tmp/lat-at-least-once/out/bench.json --out docs/images/latency-modes.png

Each `bench.json` is one `fraudstream bench` run in one delivery mode (the environment variable
reaches every job the bench starts); the chart shows p50 and p99 of each, with the out-of-
orderness bound and the bound plus 1 s drawn for reference. Prints the points as a table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("exactly_once", type=Path, help="bench.json of the exactly-once run")
    parser.add_argument("at_least_once", type=Path, help="bench.json of the at-least-once run")
    parser.add_argument("--bound-s", type=float, default=5.0, help="the runs' out-of-orderness bound")
    parser.add_argument("--out", type=Path, default=Path("latency-modes.png"))
    args = parser.parse_args()
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    print("mode | offered/s | alerts | p50 ms | p99 ms")
    for label, path, colour in (
        ("exactly-once", args.exactly_once, "tab:blue"),
        ("at-least-once", args.at_least_once, "tab:orange"),
    ):
        points = sorted(
            (p for p in json.loads(path.read_text())["latency"] if p["p50_ms"] is not None),
            key=lambda p: p["offered_per_s"],
        )
        x = [p["offered_per_s"] for p in points]
        ax.plot(x, [p["p50_ms"] / 1000 for p in points], "o-", color=colour, label=f"{label} p50")
        ax.plot(x, [p["p99_ms"] / 1000 for p in points], "^--", color=colour, label=f"{label} p99")
        for p in points:
            print(f"{label} | {p['offered_per_s']:g} | {p['alerts']} | {p['p50_ms']:.0f} | {p['p99_ms']:.0f}")
    ax.axhline(args.bound_s, color="grey", linewidth=0.8)
    ax.axhline(args.bound_s + 1, color="grey", linewidth=0.8, linestyle=":")
    ax.text(ax.get_xlim()[1], args.bound_s + 1.1, "bound + 1 s ", ha="right", va="bottom", fontsize=8, color="grey")
    ax.set_xscale("log")
    ax.set_xlabel("offered load (orders/s)")
    ax.set_ylabel("alert latency (s): append to readable alert")
    ax.set_ylim(0, max(args.bound_s + 2, ax.get_ylim()[1]))  # room above the bound + 1 s line
    ax.set_title("alert latency by delivery mode (5 s out-of-orderness bound)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out)
    plt.close(fig)


if __name__ == "__main__":
    main()
