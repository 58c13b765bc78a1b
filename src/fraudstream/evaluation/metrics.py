"""Scoring a run: alerts matched to labelled fraud by their triggering order (see MATCHING_RULE).

The rule text below is the single statement of how figures are computed; the CLI's --help and
the README quote it, and the code follows it line by line.
"""

from __future__ import annotations

import logging
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from fraudstream.evaluation.alerts import AlertRecord
from fraudstream.evaluation.labels import LabelledEvent, LoadStats, fallback_actor

logger = logging.getLogger(__name__)

MATCHING_RULE = """\
An alert points at the order whose transaction_id it carries (its triggering order). It is TRUE
when that order is a fraud event, and then catches that order's fraud actor; otherwise (an honest
order, or an order not among the labelled events) it is FALSE. Alerts whose order is not among
the labelled events are also counted as "unmatched": many of them mean that events and alerts
cover different periods. An order is honest when its behavior is missing or "normal".
Detector targets: VELOCITY_FRAUD -> velocity_burst, DEVICE_SHARING_FRAUD -> account_farm,
HIGH_VALUE_FRAUD -> high_value, GEO_ANOMALY_FRAUD -> city_hopping, ACCOUNT_TAKEOVER (the
learned model's) -> account_takeover; other alert types have none.
Held-back alerts (a rule alert whose order's risk was under alerts.min_risk: stored, not
delivered) are scored as not raised: every figure below is of the alerts as delivered; how many
were held back, and how many of those were true, is reported beside them.
- Precision = true alerts / alerts.
- Actor recall: per detector, actors of its target pattern it caught / actors of that pattern;
  overall, actors caught by any detector / all actors.
- Event recall (fraud events covered): a fraud event is covered when its actor was caught by an
  alert whose triggering order's event time is <= the event's. Per detector over its target
  pattern's events with its own alerts; overall over all fraud events with any alert.
- F1 = harmonic mean of precision and actor recall.
- False alerts per 1,000 honest orders = false alerts / honest orders * 1000.
- Time to detect, per caught actor = event time of the triggering order of its earliest true
  alert - event time of its first fraud event; median and p95 by nearest rank, per detector over
  the actors it caught (any pattern), overall with the earliest alert of any detector.
A ratio whose denominator is 0 is n/a. An event whose transaction_id repeats, or an alert whose
alert_id repeats, counts once."""

DETECTOR_PATTERNS: dict[str, str] = {
    "VELOCITY_FRAUD": "velocity_burst",
    "DEVICE_SHARING_FRAUD": "account_farm",
    "HIGH_VALUE_FRAUD": "high_value",
    "GEO_ANOMALY_FRAUD": "city_hopping",
    "ACCOUNT_TAKEOVER": "account_takeover",
}
ALL = "all"

ActorKey = tuple[str, str]  # (pattern, fraud_actor): episode ids need only be unique per pattern


@dataclass(frozen=True, slots=True)
class DetectorRow:
    """The figures of one detector (alert type), or of all detectors together (`detector == "all"`)."""

    detector: str
    target_pattern: str | None
    alerts: int
    true_alerts: int
    false_alerts: int
    unmatched_alerts: int
    precision: float | None
    actors: int | None  # actors of the target pattern(s); None when the detector has no target
    actors_caught: int | None
    actor_recall: float | None
    fraud_events: int | None
    events_covered: int | None
    event_recall: float | None
    f1: float | None
    false_per_1k_honest: float | None
    ttd_actors: int  # actors (any pattern) whose time to detect is in the two figures below
    ttd_median_s: float | None
    ttd_p95_s: float | None
    held_back: int = 0  # alerts held back (not among `alerts`): alerts.min_risk
    held_back_true: int = 0  # ... of which true by the matching rule


@dataclass(frozen=True, slots=True)
class PatternRow:
    """How much fraud of one pattern the stream holds, and how much of it any detector caught."""

    pattern: str
    fraud_events: int
    actors: int
    actors_caught: int
    events_covered: int

    @property
    def actor_recall(self) -> float | None:
        return ratio(self.actors_caught, self.actors)


@dataclass(frozen=True, slots=True)
class Counts:
    """Totals over the inputs, including what the loaders skipped, so period or file problems show."""

    events: int
    honest_orders: int
    fraud_events: int
    actors: int
    alerts: int
    true_alerts: int
    false_alerts: int
    unmatched_alerts: int
    duplicate_events: int = 0
    duplicate_alerts: int = 0
    unreadable_events: int = 0
    invalid_events: int = 0
    events_missing_actor: int = 0
    unreadable_alerts: int = 0
    invalid_alerts: int = 0
    held_back_alerts: int = 0  # not among `alerts` (as delivered); see DetectorRow.held_back
    held_back_true: int = 0


@dataclass(frozen=True, slots=True)
class Report:
    """Detection quality of one run: one row per detector, then the "all" row."""

    rows: tuple[DetectorRow, ...]
    patterns: tuple[PatternRow, ...]
    counts: Counts

    @property
    def overall(self) -> DetectorRow:
        return self.row(ALL)

    def row(self, detector: str) -> DetectorRow:
        for row in self.rows:
            if row.detector == detector:
                return row
        raise KeyError(detector)


def ratio(numerator: int | float, denominator: int | float) -> float | None:
    """numerator / denominator, or None (printed "n/a") when the denominator is 0."""
    return numerator / denominator if denominator else None


def f1_score(precision: float | None, recall: float | None) -> float | None:
    if precision is None or recall is None:
        return None
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def nearest_rank(values: Iterable[float], percent: int) -> float | None:
    """The smallest value with at least `percent`% of values <= it: always an observed value."""
    ordered = sorted(values)
    if not ordered:
        return None
    rank = max(1, -(-percent * len(ordered) // 100))  # ceil(percent/100 * n) in integers
    return ordered[rank - 1]


@dataclass(slots=True)
class _Tally:
    alerts: int = 0
    true_alerts: int = 0
    false_alerts: int = 0
    unmatched_alerts: int = 0
    held_back: int = 0
    held_back_true: int = 0


def actor_key(event: LabelledEvent | None) -> ActorKey | None:
    """The fraud actor an order belongs to, or None for an honest (or absent) order."""
    if event is None or event.pattern is None:
        return None
    actor = event.actor or fallback_actor(event.pattern, event.user_id, event.device_id)
    return (event.pattern, actor)


class _Stream:
    """Indexes of the labelled events that every row is computed from."""

    def __init__(self, events: Iterable[LabelledEvent]) -> None:
        self.by_tx: dict[str, LabelledEvent] = {}
        self.duplicates = 0
        for event in events:
            if event.transaction_id in self.by_tx:
                self.duplicates += 1
                continue
            self.by_tx[event.transaction_id] = event
        times: dict[ActorKey, list[int]] = defaultdict(list)
        self.honest = 0
        for event in self.by_tx.values():
            key = actor_key(event)
            if key is None:
                self.honest += 1
            else:
                times[key].append(event.event_time)
        self.actor_times = {key: sorted(ts) for key, ts in times.items()}
        self.fraud_events = sum(len(ts) for ts in self.actor_times.values())

    def actors_of(self, pattern: str | None) -> list[ActorKey]:
        """The actors of one pattern, or of all patterns for None."""
        return [key for key in self.actor_times if pattern is None or key[0] == pattern]

    def covered(self, key: ActorKey, caught_at: int | None) -> int:
        """How many of the actor's events are at or after the trigger of its earliest alert."""
        if caught_at is None:
            return 0
        times = self.actor_times[key]
        return len(times) - bisect_left(times, caught_at)


def _row(
    name: str,
    target: str | None,
    scope: list[ActorKey] | None,
    tally: _Tally,
    caught_at: dict[ActorKey, int],
    stream: _Stream,
) -> DetectorRow:
    precision = ratio(tally.true_alerts, tally.alerts)
    actors = actors_caught = fraud_events = events_covered = None
    actor_recall = event_recall = None
    if scope is not None:  # None: an alert type with no target pattern, so no recall
        actors = len(scope)
        actors_caught = sum(1 for key in scope if key in caught_at)
        fraud_events = sum(len(stream.actor_times[key]) for key in scope)
        events_covered = sum(stream.covered(key, caught_at.get(key)) for key in scope)
        actor_recall = ratio(actors_caught, actors)
        event_recall = ratio(events_covered, fraud_events)
    ttd_ms = [at - stream.actor_times[key][0] for key, at in caught_at.items()]
    median_ms = nearest_rank(ttd_ms, 50)
    p95_ms = nearest_rank(ttd_ms, 95)
    per_1k = ratio(tally.false_alerts, stream.honest)
    return DetectorRow(
        detector=name,
        target_pattern=target,
        alerts=tally.alerts,
        true_alerts=tally.true_alerts,
        false_alerts=tally.false_alerts,
        unmatched_alerts=tally.unmatched_alerts,
        precision=precision,
        actors=actors,
        actors_caught=actors_caught,
        actor_recall=actor_recall,
        fraud_events=fraud_events,
        events_covered=events_covered,
        event_recall=event_recall,
        f1=f1_score(precision, actor_recall),
        false_per_1k_honest=None if per_1k is None else per_1k * 1000,
        ttd_actors=len(ttd_ms),
        ttd_median_s=None if median_ms is None else median_ms / 1000,
        ttd_p95_s=None if p95_ms is None else p95_ms / 1000,
        held_back=tally.held_back,
        held_back_true=tally.held_back_true,
    )


def evaluate(
    events: Iterable[LabelledEvent],
    alerts: Iterable[AlertRecord],
    event_stats: LoadStats | None = None,
    alert_stats: LoadStats | None = None,
) -> Report:
    """Score `alerts` against `events` by MATCHING_RULE; the stats only feed the report's counts."""
    stream = _Stream(events)
    tallies: dict[str, _Tally] = {name: _Tally() for name in DETECTOR_PATTERNS}
    overall = _Tally()
    # Per detector and overall: actor -> event time of the triggering order of its earliest true alert.
    caught: dict[str, dict[ActorKey, int]] = defaultdict(dict)
    caught_any: dict[ActorKey, int] = {}
    seen_ids: set[str] = set()
    duplicate_alerts = 0
    for alert in alerts:
        if alert.alert_id is not None:
            if alert.alert_id in seen_ids:
                duplicate_alerts += 1
                continue
            seen_ids.add(alert.alert_id)
        order = stream.by_tx.get(alert.transaction_id) if alert.transaction_id is not None else None
        key = actor_key(order)
        is_true = key is not None
        if alert.held_back:
            for tally in (tallies.setdefault(alert.alert_type, _Tally()), overall):
                tally.held_back += 1
                tally.held_back_true += is_true
            continue
        for tally in (tallies.setdefault(alert.alert_type, _Tally()), overall):
            tally.alerts += 1
            tally.true_alerts += is_true
            tally.false_alerts += not is_true
            tally.unmatched_alerts += order is None
        if order is not None and key is not None:
            for table in (caught[alert.alert_type], caught_any):
                if key not in table or order.event_time < table[key]:
                    table[key] = order.event_time
    if overall.unmatched_alerts:
        logger.warning(
            "%d of %d alert(s) point at orders that are not among the labelled events (a period mismatch?)",
            overall.unmatched_alerts,
            overall.alerts,
        )

    known = list(DETECTOR_PATTERNS)
    unknown = sorted(name for name in tallies if name not in DETECTOR_PATTERNS)
    rows = [
        _row(
            name,
            DETECTOR_PATTERNS[name],
            stream.actors_of(DETECTOR_PATTERNS[name]),
            tallies[name],
            caught[name],
            stream,
        )
        for name in known
    ]
    rows += [_row(name, None, None, tallies[name], caught[name], stream) for name in unknown]
    rows.append(_row(ALL, None, stream.actors_of(None), overall, caught_any, stream))

    pattern_names = list(DETECTOR_PATTERNS.values())
    pattern_names += sorted({key[0] for key in stream.actor_times} - set(pattern_names))
    patterns = []
    for pattern in pattern_names:
        scope = stream.actors_of(pattern)
        patterns.append(
            PatternRow(
                pattern=pattern,
                fraud_events=sum(len(stream.actor_times[key]) for key in scope),
                actors=len(scope),
                actors_caught=sum(1 for key in scope if key in caught_any),
                events_covered=sum(stream.covered(key, caught_any.get(key)) for key in scope),
            )
        )

    ev = event_stats or LoadStats()
    al = alert_stats or LoadStats()
    counts = Counts(
        events=len(stream.by_tx),
        honest_orders=stream.honest,
        fraud_events=stream.fraud_events,
        actors=len(stream.actor_times),
        alerts=overall.alerts,
        true_alerts=overall.true_alerts,
        false_alerts=overall.false_alerts,
        unmatched_alerts=overall.unmatched_alerts,
        duplicate_events=stream.duplicates,
        duplicate_alerts=duplicate_alerts,
        unreadable_events=ev.unreadable,
        invalid_events=ev.invalid,
        events_missing_actor=ev.missing_actor,
        unreadable_alerts=al.unreadable,
        invalid_alerts=al.invalid,
        held_back_alerts=overall.held_back,
        held_back_true=overall.held_back_true,
    )
    return Report(rows=tuple(rows), patterns=tuple(patterns), counts=counts)
