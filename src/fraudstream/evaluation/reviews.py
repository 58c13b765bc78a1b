"""Scoring the rules from analysts' verdicts (`fraudstream evaluate --reviews`).

In production orders carry no generator labels, so the only ground truth is what analysts
decide on alerts in the dashboard. That gives precision (of the alerts a rule raised, how many
were fraud) but never recall: fraud that raised no alert is never reviewed. Pure Python: the
verdicts in force and the alert counts come in, a report goes out.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from statistics import NormalDist

CONFIRMED = "confirmed_fraud"
FALSE_POSITIVE = "false_positive"
DEFAULT_CONFIDENCE = 0.95
# The row over every verdict: it pools verdicts, so a rule weighs by how often its alerts were
# reviewed, not by how many it raised; it is not the system's precision. The table names it
# "all reviewed (pooled)".
POOLED = "pooled"


def wilson_interval(successes: int, trials: int, confidence: float = DEFAULT_CONFIDENCE) -> tuple[float, float] | None:
    """The Wilson score interval for a proportion `successes / trials`; None when `trials` is 0.

    Why Wilson: reviews are few (tens per rule) and a good rule's precision is near 100 %, which
    is where the textbook normal (Wald) interval fails: at 40 of 40 confirmed it has zero width,
    and near the ends it leaves [0, 1]. Wilson's interval stays inside [0, 1], is never empty,
    and covers the true value about as often as it claims even for small samples (Brown, Cai and
    DasGupta 2001 recommend it); the exact Clopper-Pearson interval is wider than needed and
    wants a beta quantile function. The reviewed alerts are treated as a sample of the rule's
    alerts as a process (including those it will raise), so there is no finite-population
    correction for having reviewed most of the stored ones.
    """
    if trials <= 0:
        return None
    if not 0 <= successes <= trials:
        raise ValueError(f"successes must be between 0 and {trials}, got {successes}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p, n, z2 = successes / trials, trials, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    # At 0 or all successes the bound is exactly 0 or 1; rounding would leave 1e-17 off it.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == trials else min(1.0, centre + half)
    return low, high


@dataclass(frozen=True, slots=True)
class ReviewRow:
    """One rule (alert type), or every verdict pooled (`detector == POOLED`), scored from verdicts."""

    detector: str
    alerts: int  # alerts of this rule in the store, reviewed or not
    reviewed: int
    confirmed: int
    false_positives: int
    precision: float | None  # confirmed / reviewed; None when nothing was reviewed
    ci_low: float | None
    ci_high: float | None

    @property
    def coverage(self) -> float | None:
        """The share of the rule's stored alerts that were reviewed."""
        return self.reviewed / self.alerts if self.alerts else None


@dataclass(frozen=True, slots=True)
class ReviewReport:
    """Precision per rule from analysts' verdicts, then the pooled row."""

    rows: tuple[ReviewRow, ...]
    confidence: float

    @property
    def reviewed(self) -> int:
        return self.rows[-1].reviewed

    def row(self, detector: str) -> ReviewRow:
        for r in self.rows:
            if r.detector == detector:
                return r
        raise KeyError(detector)


def _row(detector: str, alerts: int, confirmed: int, false_positives: int, confidence: float) -> ReviewRow:
    reviewed = confirmed + false_positives
    interval = wilson_interval(confirmed, reviewed, confidence)
    return ReviewRow(
        detector=detector,
        alerts=max(alerts, reviewed),  # a verdict is always on a stored alert; never show fewer
        reviewed=reviewed,
        confirmed=confirmed,
        false_positives=false_positives,
        precision=confirmed / reviewed if reviewed else None,
        ci_low=interval[0] if interval else None,
        ci_high=interval[1] if interval else None,
    )


def score_reviews(
    verdicts: Iterable[tuple[str, str]],
    alert_counts: Mapping[str, int],
    confidence: float = DEFAULT_CONFIDENCE,
) -> ReviewReport:
    """Precision per rule from `(alert_type, verdict in force)` pairs, one per reviewed alert.

    `alert_counts`: alert type -> alerts of that type in the store, so a row says "reviewed 40
    of 900"; rules with alerts but no verdicts get a row with precision n/a. The pooled row pools
    every verdict, so rules reviewed more weigh more in it.
    """
    confirmed: Counter[str] = Counter()
    false_positives: Counter[str] = Counter()
    for alert_type, verdict in verdicts:
        if verdict == CONFIRMED:
            confirmed[alert_type] += 1
        elif verdict == FALSE_POSITIVE:
            false_positives[alert_type] += 1
        else:
            raise ValueError(f"unknown verdict {verdict!r} on a {alert_type} alert")
    names = sorted(set(alert_counts) | set(confirmed) | set(false_positives))
    rows = [_row(n, alert_counts.get(n, 0), confirmed[n], false_positives[n], confidence) for n in names]
    total = _row(
        POOLED,
        sum(r.alerts for r in rows),
        sum(confirmed.values()),
        sum(false_positives.values()),
        confidence,
    )
    return ReviewReport(rows=(*rows, total), confidence=confidence)
