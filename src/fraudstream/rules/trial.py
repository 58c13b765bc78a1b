"""The backtest of a rule change: the archive's last hours replayed with the rules in force and
with the candidate, both scored against the events' labels, before anyone publishes it.

Glue over `fraudstream.backtest` (the same Flink job, bounded, twice) and
`fraudstream.evaluation`; the CLI (`rules set`) and the dashboard's rules panel both call
`trial` and show the `Trial` it returns, whatever it holds (a trial that did not run says why).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tabulate import tabulate

from fraudstream.config import Settings
from fraudstream.rules.model import RuleSet

logger = logging.getLogger(__name__)

HOUR_MS = 3_600_000


@dataclass
class Trial:
    """What a backtest of a candidate found (ran=False: it did not run, `reason` says why)."""

    ran: bool
    reason: str = ""
    hours: float = 0.0
    baseline_version: int | None = None
    candidate_version: int | None = None
    start_ms: int | None = None
    end_ms: int | None = None
    orders: int = 0
    alerts: dict[str, dict[str, int]] = field(default_factory=dict)  # type -> {baseline, candidate}
    added: int = 0  # alerts only the candidate raises (by type and order)
    removed: int = 0  # alerts only the baseline raises
    quality: list[dict[str, Any]] = field(default_factory=list)  # per detector and "all"
    comparison: dict[str, Any] | None = None  # compare_to_json
    work_dir: str | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-able; the dashboard shows it as is, `rules set --json` prints it."""
        out: dict[str, Any] = {"ran": self.ran, "hours": self.hours}
        if not self.ran:
            return {**out, "reason": self.reason}
        return {
            **out,
            "baseline_version": self.baseline_version,
            "candidate_version": self.candidate_version,
            "from": _iso(self.start_ms),
            "to": _iso(self.end_ms),
            "orders": self.orders,
            "added_alerts": self.added,
            "removed_alerts": self.removed,
            "alerts": [{"type": t, **c} for t, c in sorted(self.alerts.items())],
            "quality": self.quality,
            "work_dir": self.work_dir,
            "seconds": round(self.seconds, 1),
            "comparison": self.comparison,
        }

    def table(self) -> str:
        """The result for people: alerts per type, then precision and recall per detector."""
        if not self.ran:
            return f"No backtest: {self.reason}"
        head = (
            f"Backtest over {self.orders:,} archived orders from {_iso(self.start_ms)} to {_iso(self.end_ms)} "
            f"(version {self.baseline_version} vs the candidate {self.candidate_version}): "
            f"{self.added:,} alerts added, {self.removed:,} removed"
        )
        counts = tabulate(
            [[t, c["baseline"], c["candidate"], c["candidate"] - c["baseline"]] for t, c in sorted(self.alerts.items())]
            or [["(none)", 0, 0, 0]],
            headers=["Alert type", "Baseline", "Candidate", "Diff"],
            tablefmt="simple",
        )
        quality = tabulate(
            [
                [
                    q["detector"],
                    _pct(q["precision_baseline"]),
                    _pct(q["precision_candidate"]),
                    _pct(q["recall_baseline"]),
                    _pct(q["recall_candidate"]),
                ]
                for q in self.quality
            ],  # fmt: skip
            headers=["Detector", "Precision", "-> candidate", "Recall", "-> candidate"],
            tablefmt="simple",
            disable_numparse=True,
        )
        return f"{head}\n\n{counts}\n\n{quality}\n\nStores and logs of both runs: {self.work_dir}"


def _iso(ms: int | None) -> str | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.1f} %"


def trial(
    settings: Settings,
    candidate: RuleSet,
    hours: float | None = None,
    echo: Callable[[str], None] = lambda s: None,
) -> Trial:
    """Replay the archive's last `hours` (settings.rules.backtest_hours when None) with the rules
    in force (the rules topic's latest version) and with `candidate`, and compare them."""
    from fraudstream.backtest import archived_period, newest_event_time, run_replay
    from fraudstream.backtest.replay import NothingToReplay
    from fraudstream.evaluation import compare_to_json, load_alerts_sqlite, load_jsonl
    from fraudstream.evaluation import evaluate as score
    from fraudstream.rules.topic import current

    hours = settings.rules.backtest_hours if hours is None else float(hours)
    if hours <= 0:
        return Trial(False, "no backtest asked for (0 hours)", hours)
    archive = Path(settings.archive.path or settings.data_dir / "archive").expanduser().resolve()
    newest = newest_event_time(archive)
    if newest is None:
        return Trial(False, f"no archived orders at {archive} (run the job with archive.enabled first)", hours)
    end_ms = newest + 1
    start_ms = end_ms - round(hours * HOUR_MS)
    base = current(settings)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    work = (settings.data_dir / "backtests" / f"rules-{stamp}-v{candidate.version}").resolve()
    events = work / "events.jsonl"
    started = time.monotonic()
    try:
        count = archived_period(archive, start_ms, end_ms, events)
    except NothingToReplay as exc:
        return Trial(False, str(exc), hours)
    echo(f"backtest over {count:,} archived orders of the last {hours:g} h (work directory {work})")
    runs = [
        run_replay(name, settings.with_overrides(rules.to_overrides()), events, work, echo)
        for name, rules in (("baseline", base), ("candidate", candidate))
    ]
    echo("scoring both runs against the events' labels")
    labelled = load_jsonl(events)
    found = [load_alerts_sqlite(r.settings.db_path) for r in runs]
    reports = [score(labelled, alerts) for alerts in found]
    keys = [Counter((a.alert_type, a.transaction_id) for a in alerts) for alerts in found]
    per_type: dict[str, dict[str, int]] = {}
    for side, alerts in zip(("baseline", "candidate"), found, strict=True):
        for a in alerts:
            per_type.setdefault(a.alert_type, {"baseline": 0, "candidate": 0})[side] += 1
    comparison = compare_to_json(*reports)
    quality = [
        {
            "detector": d["detector"],
            "precision_baseline": d["metrics"].get("precision", {}).get("baseline"),
            "precision_candidate": d["metrics"].get("precision", {}).get("candidate"),
            "recall_baseline": d["metrics"].get("actor_recall", {}).get("baseline"),
            "recall_candidate": d["metrics"].get("actor_recall", {}).get("candidate"),
        }
        for d in comparison["detectors"]
    ]
    return Trial(
        True,
        hours=hours,
        baseline_version=base.version,
        candidate_version=candidate.version,
        start_ms=start_ms,
        end_ms=end_ms,
        orders=count,
        alerts=per_type,
        added=sum((keys[1] - keys[0]).values()),
        removed=sum((keys[0] - keys[1]).values()),
        quality=quality,
        comparison=comparison,
        work_dir=str(work),
        seconds=time.monotonic() - started,
    )
