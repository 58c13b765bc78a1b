"""The benchmark's results as a Markdown table (pasted into the README) and a latency chart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

LABELS = {
    "sql": "fraudstream job, SQL engine (`--engine sql`)",
    "sql-model": "fraudstream job, SQL engine with the risk model (`--model`)",
    "datastream": "fraudstream job, DataStream engine (`--engine datastream`)",
    "reference": "reference layout (`--engine reference`)",
}


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}" if a and b else "–"


def markdown(data: dict[str, Any]) -> str:
    kafka = data["kafka_ceiling"].get("events_per_s")
    python = data["python_ceiling"].get("events_per_s")
    runs = data["runs"]
    reference = next((r["events_per_s"] for r in runs if r["engine"] == "reference"), None)
    opts = data["options"]
    lines = [
        f"Machine: {data['machine']['cpus']} CPUs, {data['machine']['memory_gb']} GB, {data['machine']['date']}; "
        f"{opts['orders']:,} orders, {opts['users']:,} users.",
        "",
        "| what | events/s | × reference layout | ÷ Kafka ceiling | records measured |",
        "|---|---:|---:|---:|---:|",
        f"| Kafka ceiling (read + write alerts, no processing) | {kafka:,.0f} | {_ratio(kafka, reference)} | 1.00 "
        f"| {data['kafka_ceiling'].get('records', 0):,} |",
        f"| Python ceiling (parse + rules, one process, no Flink) | {python:,.0f} | {_ratio(python, reference)} "
        f"| {_ratio(python, kafka)} | {opts['orders']:,} |",
    ]
    for r in runs:
        note = "" if r["finished"] else " (time limit)"
        lines.append(
            f"| {LABELS.get(r['engine'], r['engine'])} | {r['events_per_s']:,.0f} | "
            f"{_ratio(r['events_per_s'], reference)} | {_ratio(r['events_per_s'], kafka)} | "
            f"{r['records']:,}{note} |"
        )
    plain = next((r["events_per_s"] for r in runs if r["engine"] == "sql"), None)
    scored = next((r["events_per_s"] for r in runs if r["engine"] == "sql-model"), None)
    if plain and scored:
        lines += [
            "",
            f"With the risk model the SQL engine keeps {scored / plain:.2f} of its throughput (the issue asks >= 0.5).",
        ]
    lines += [
        "",
        "| engine | start-up s | checkpoint avg / max ms | state MB | peak RSS MB (per process kind) |",
        "|---|---:|---:|---:|---|",
    ]
    for r in runs:
        ck = r["checkpoint_ms"]
        state = f"{r['state_bytes'] / 1e6:.1f}" if r["state_bytes"] else "–"
        rss = ", ".join(f"{k} {v:,.0f}" for k, v in sorted(r["peak_rss_mb"].items()))
        cks = f"{ck['avg']:.0f} / {ck['max']:.0f}" if ck else "–"
        lines.append(f"| {r['engine']} | {r['startup_s']} | {cks} | {state} | {rss} |")
    if data["latency"]:
        lines += [
            "",
            "| engine | offered orders/s | share of max | alerts | p50 ms | p95 ms | p99 ms | checkpoint interval ms |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for lat in data["latency"]:
            lines.append(
                f"| {lat['engine']} | {lat['offered_per_s']:,.0f} | {lat['share_of_max']:.2f} | {lat['alerts']:,} | "
                f"{lat['p50_ms']} | {lat['p95_ms']} | {lat['p99_ms']} | {lat['checkpoint_interval_ms']} |"
            )
    return "\n".join(lines) + "\n"


def plot_latency(data: dict[str, Any], path: Path) -> None:
    """Alert latency (p50, p95, p99) against offered load."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = sorted((p for p in data["latency"] if p["p50_ms"] is not None), key=lambda p: p["offered_per_s"])
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    if points:
        x = [p["offered_per_s"] for p in points]
        for q, style in (("p50_ms", "o-"), ("p95_ms", "s--"), ("p99_ms", "^-.")):
            ax.plot(x, [p[q] / 1000 for p in points], style, label=q.removesuffix("_ms"))
    ax.set_xlabel("offered load (orders/s)")
    ax.set_ylabel("alert latency (s): append to committed alert")
    ax.set_ylim(bottom=0)
    ax.set_title("fraudstream alert latency against offered load")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
