"""A report as JSON, as a table, as a chart, and two reports side by side (for backtests)."""

from __future__ import annotations

import logging
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from tabulate import SEPARATING_LINE, tabulate

from fraudstream.evaluation.metrics import ALL, Counts, DetectorRow, PatternRow, Report
from fraudstream.evaluation.reviews import POOLED, ReviewReport

logger = logging.getLogger(__name__)

JSON_VERSION = 1
NA = "n/a"

# Metrics shown by `compare`, with how each is printed: "pct" ratios as percentages (their
# differences in percentage points), "int" counts, "f1" and "num" plain numbers.
COMPARED_METRICS: tuple[tuple[str, str], ...] = (
    ("alerts", "int"),
    ("false_alerts", "int"),
    ("precision", "pct"),
    ("actor_recall", "pct"),
    ("event_recall", "pct"),
    ("f1", "f1"),
    ("false_per_1k_honest", "num"),
    ("ttd_median_s", "num"),
    ("ttd_p95_s", "num"),
)
COMPARED_COUNTS = ("events", "honest_orders", "fraud_events", "actors", "alerts", "unmatched_alerts")


def _pct(value: float | None) -> str:
    return NA if value is None else f"{value * 100:.1f}%"


def _num(value: float | None, digits: int) -> str:
    return NA if value is None else f"{value:,.{digits}f}"


def _int(value: int | None) -> str:
    return NA if value is None else f"{value:,}"


def _fmt(value: float | int | None, kind: str) -> str:
    if kind == "pct":
        return _pct(value)
    if kind == "int":
        return _int(None if value is None else int(value))
    if kind == "f1":
        return _num(value, 3)
    return _num(value, 2)


def _delta(base: float | int | None, cand: float | int | None, kind: str) -> str:
    if base is None or cand is None:
        return NA
    diff = cand - base
    if kind == "pct":
        return f"{diff * 100:+.1f} pp"
    if kind == "int":
        return f"{int(diff):+,}"
    return f"{diff:+,.{3 if kind == 'f1' else 2}f}"


# ---------------------------------------------------------------- JSON


def report_to_json(report: Report) -> dict[str, Any]:
    """The report as plain JSON types; keys are fixed (unrounded figures, None for n/a)."""
    return {
        "version": JSON_VERSION,
        "counts": asdict(report.counts),
        "patterns": [{**asdict(p), "actor_recall": p.actor_recall} for p in report.patterns],
        "detectors": [asdict(row) for row in report.rows],
    }


def report_from_json(data: dict[str, Any]) -> Report:
    """The inverse of `report_to_json`, so a saved baseline can be compared with a new run."""
    if data.get("version") != JSON_VERSION:
        raise ValueError(f"unsupported report version {data.get('version')!r}, expected {JSON_VERSION}")
    pattern_fields = {f.name for f in fields(PatternRow)}
    return Report(
        rows=tuple(DetectorRow(**row) for row in data["detectors"]),
        patterns=tuple(PatternRow(**{k: v for k, v in p.items() if k in pattern_fields}) for p in data["patterns"]),
        counts=Counts(**data["counts"]),
    )


# ---------------------------------------------------------------- table


def format_table(report: Report) -> str:
    """Counts, fraud per pattern and the per-detector figures, as plain-text tables."""
    c = report.counts
    summary = [
        ["Events", _int(c.events)],
        ["Honest orders", _int(c.honest_orders)],
        ["Fraud events", _int(c.fraud_events)],
        ["Fraud actors", _int(c.actors)],
        ["Alerts", _int(c.alerts)],
        ["True alerts", _int(c.true_alerts)],
        ["False alerts", _int(c.false_alerts)],
        ["Unmatched alerts (false, order not in events)", _int(c.unmatched_alerts)],
    ]
    skipped = [
        ("Duplicate events (counted once)", c.duplicate_events),
        ("Duplicate alerts (counted once)", c.duplicate_alerts),
        ("Unreadable event records", c.unreadable_events),
        ("Invalid event records", c.invalid_events),
        ("Fraud events without fraud_actor", c.events_missing_actor),
        ("Unreadable alert records", c.unreadable_alerts),
        ("Invalid alert records", c.invalid_alerts),
        ("Held-back alerts (stored, not delivered; not in the figures)", c.held_back_alerts),
        ("Held-back alerts that were true", c.held_back_true if c.held_back_alerts else 0),
    ]
    summary += [[label, _int(value)] for label, value in skipped if value]
    patterns = [
        [p.pattern, _int(p.fraud_events), _int(p.actors), _int(p.actors_caught), _pct(p.actor_recall)]
        for p in report.patterns
    ]
    detectors = [
        [
            row.detector,
            row.target_pattern or ("(all)" if row.detector == ALL else "-"),
            _int(row.alerts),
            _int(row.true_alerts),
            _int(row.false_alerts),
            _int(row.unmatched_alerts),
            _pct(row.precision),
            NA if row.actors is None else f"{row.actors_caught:,}/{row.actors:,}",
            _pct(row.actor_recall),
            _pct(row.event_recall),
            _num(row.f1, 3),
            _num(row.false_per_1k_honest, 2),
            _num(row.ttd_median_s, 1),
            _num(row.ttd_p95_s, 1),
            *([_int(row.held_back), _int(row.held_back_true)] if c.held_back_alerts else []),
        ]
        for row in report.rows
    ]
    headers = [
        "Detector",
        "Target",
        "Alerts",
        "True",
        "False",
        "Unmatched",
        "Precision",
        "Actors caught",
        "Actor recall",
        "Event recall",
        "F1",
        "False/1k honest",
        "TTD p50 s",
        "TTD p95 s",
        *(["Held back", "Held back true"] if c.held_back_alerts else []),
    ]
    parts = [
        tabulate(summary, tablefmt="plain", colalign=("left", "right")),
        tabulate(
            patterns,
            headers=["Pattern", "Fraud events", "Actors", "Caught", "Actor recall"],
            tablefmt="simple",
            disable_numparse=True,
            colalign=("left", "right", "right", "right", "right"),
        ),
        tabulate(
            detectors,
            headers=headers,
            tablefmt="simple",
            disable_numparse=True,
            colalign=("left", "left", *["right"] * (len(headers) - 2)),
        ),
    ]
    return "\n\n".join(parts)


# ---------------------------------------------------------------- reviews

REVIEWS_CAVEAT = (
    "Precision = confirmed / reviewed alerts (the latest verdict on each). Reviews give no recall: missed\n"
    "fraud raises no alert. Alerts analysts chose to review may not stand for the rest (docs/quality.md).\n"
    "The pooled row weighs each rule by how many of its alerts were reviewed, not by how many it raised."
)
# How the pooled row is named in the table (in JSON its detector is "pooled").
POOLED_LABEL = "all reviewed (pooled)"


REVIEW_HEADERS = ("Detector", "Alerts", "Reviewed", "Coverage", "Confirmed", "False pos.", "Precision")


def review_report_to_json(report: ReviewReport) -> dict[str, Any]:
    """Scores from verdicts as plain JSON types (unrounded, None for n/a)."""
    return {
        "version": JSON_VERSION,
        "source": "reviews",
        "interval": "wilson",
        "confidence": report.confidence,
        "detectors": [{**asdict(row), "coverage": row.coverage} for row in report.rows],
    }


def format_review_table(report: ReviewReport) -> str:
    """One line per rule: alerts stored, reviewed, verdicts, precision and its interval."""
    level = f"{report.confidence * 100:g}%"
    rows = [
        [
            POOLED_LABEL if row.detector == POOLED else row.detector,
            _int(row.alerts),
            _int(row.reviewed),
            _pct(row.coverage),
            _int(row.confirmed),
            _int(row.false_positives),
            _pct(row.precision),
            NA if row.ci_low is None else f"{_pct(row.ci_low)} - {_pct(row.ci_high)}",
        ]
        for row in report.rows
    ]
    table = tabulate(
        rows,
        headers=[*REVIEW_HEADERS, f"{level} interval (Wilson)"],
        tablefmt="simple",
        disable_numparse=True,
        colalign=("left", *["right"] * 7),
    )
    return f"{table}\n\n{REVIEWS_CAVEAT}"


# ---------------------------------------------------------------- chart


def save_chart(report: Report, path: str | Path, title: str = "Detection quality per detector") -> Path:
    """A PNG bar chart of precision and actor recall per detector; n/a bars are empty and labelled."""
    # Imported here: matplotlib is slow to import and only this function needs it. The Agg canvas
    # is used directly, so no display is needed and no global backend is switched.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    names = [row.detector for row in report.rows]
    series = (
        ("Precision", [row.precision for row in report.rows], "#4C72B0"),
        ("Actor recall", [row.actor_recall for row in report.rows], "#DD8452"),
    )
    width = 0.38
    fig = Figure(figsize=(max(6.0, 1.4 * len(names) + 2), 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for i, (label, values, colour) in enumerate(series):
        xs = [x + (i - 0.5) * width for x in range(len(names))]
        heights = [0.0 if v is None else v * 100 for v in values]
        bars = ax.bar(xs, heights, width, label=label, color=colour)
        texts = [NA if v is None else f"{v * 100:.1f}" for v in values]
        ax.bar_label(bars, labels=texts, fontsize=7, padding=2)
    ax.set_xticks(range(len(names)), names, rotation=20, ha="right", fontsize=8)
    ax.set_ylim(0, 120)
    ax.set_ylabel("%")
    ax.set_title(title)
    ax.legend(loc="upper center", ncol=2, fontsize=8, frameon=False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    logger.info("chart written to %s", path)
    return path


# ---------------------------------------------------------------- compare


def _detector_names(baseline: Report, candidate: Report) -> list[str]:
    names = [row.detector for row in baseline.rows if row.detector != ALL]
    names += [row.detector for row in candidate.rows if row.detector != ALL and row.detector not in names]
    return [*names, ALL]


def _find(report: Report, name: str) -> DetectorRow | None:
    try:
        return report.row(name)
    except KeyError:
        return None


def compare_to_json(baseline: Report, candidate: Report) -> dict[str, Any]:
    """Both runs' figures and candidate minus baseline, per count and per detector metric."""

    def entry(base: Any, cand: Any) -> dict[str, Any]:
        delta = None if base is None or cand is None else cand - base
        return {"baseline": base, "candidate": cand, "delta": delta}

    counts = {name: entry(getattr(baseline.counts, name), getattr(candidate.counts, name)) for name in COMPARED_COUNTS}
    detectors = []
    for name in _detector_names(baseline, candidate):
        base, cand = _find(baseline, name), _find(candidate, name)
        metrics = {
            metric: entry(getattr(base, metric, None), getattr(cand, metric, None)) for metric, _ in COMPARED_METRICS
        }
        detectors.append({"detector": name, "metrics": metrics})
    return {"version": JSON_VERSION, "counts": counts, "detectors": detectors}


def compare(baseline: Report, candidate: Report) -> str:
    """Baseline and candidate side by side with the difference, one line per detector and metric."""
    data = compare_to_json(baseline, candidate)
    count_rows = [
        [name, _int(v["baseline"]), _int(v["candidate"]), _delta(v["baseline"], v["candidate"], "int")]
        for name, v in data["counts"].items()
    ]
    kinds = dict(COMPARED_METRICS)
    metric_rows: list[Any] = []
    for det in data["detectors"]:
        if metric_rows:
            metric_rows.append(SEPARATING_LINE)
        for i, (metric, v) in enumerate(det["metrics"].items()):
            kind = kinds[metric]
            metric_rows.append(
                [
                    det["detector"] if i == 0 else "",
                    metric,
                    _fmt(v["baseline"], kind),
                    _fmt(v["candidate"], kind),
                    _delta(v["baseline"], v["candidate"], kind),
                ]
            )
    parts = [
        tabulate(
            count_rows,
            headers=["Input", "Baseline", "Candidate", "Diff"],
            tablefmt="simple",
            disable_numparse=True,
            colalign=("left", "right", "right", "right"),
        ),
        tabulate(
            metric_rows,
            headers=["Detector", "Metric", "Baseline", "Candidate", "Diff"],
            tablefmt="simple",
            disable_numparse=True,
            colalign=("left", "left", "right", "right", "right"),
        ),
    ]
    if data["counts"]["events"]["delta"] or data["counts"]["fraud_events"]["delta"]:
        parts.insert(0, "Note: the two runs were scored on different events; differences mix data and detectors.")
    return "\n\n".join(parts)
