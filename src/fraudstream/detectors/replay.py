"""Run the rules offline over a finished stream, exactly as the Flink job evaluates them:
re-deliveries dropped, then per key, in event-time order, orders of the same instant
together, then the cooldown.

Used by tests and for trying rule changes on recorded history without a cluster.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import groupby
from typing import Any

from fraudstream.config import RulesSettings
from fraudstream.detectors.base import Alert, Detector
from fraudstream.detectors.dedup import AlertDeduplicator
from fraudstream.events.model import Order
from fraudstream.events.redelivery import Redelivery, redelivery_horizon


def _batches_per_key(
    orders: Iterable[Order], key_of: Callable[[Order], str], sort_key: Callable[[Order], Any]
) -> Iterator[list[list[Order]]]:
    """For each key, its orders in `sort_key` order, cut into batches of one event time."""
    by_key: dict[str, list[Order]] = defaultdict(list)
    for o in orders:
        by_key[key_of(o)].append(o)
    for key_orders in by_key.values():
        key_orders.sort(key=sort_key)
        yield [list(batch) for _, batch in groupby(key_orders, key=lambda o: o.event_time)]


def run_detector(detector: Detector, orders: Iterable[Order]) -> list[Alert]:
    alerts: list[Alert] = []
    for batches in _batches_per_key(orders, lambda o: getattr(o, detector.key_field), lambda o: o.sort_key):
        state = detector.new_state()
        for batch in batches:
            alerts.extend(detector.evaluate(state, batch))
    return alerts


def deduplicate(alerts: Iterable[Alert], dedup: AlertDeduplicator) -> list[Alert]:
    by_key: dict[str, list[Alert]] = defaultdict(list)
    for a in alerts:
        by_key[a.dedup_key].append(a)
    kept: list[Alert] = []
    for key_alerts in by_key.values():
        state = dedup.new_state()
        key_alerts.sort(key=lambda a: (a.event_time, a.transaction_id, a.user_id, a.device_id))
        kept.extend(a for a in key_alerts if dedup.admit(state, a))
    return kept


def first_copies(orders: Iterable[Order], redelivery: Redelivery) -> list[Order]:
    """The orders the rules see: per user in event-time order (one instant in the order
    given, i.e. arrival order: the sort is stable), each re-delivery dropped."""
    kept: list[Order] = []
    for batches in _batches_per_key(orders, lambda o: o.user_id, lambda o: o.event_time):
        state = redelivery.new_state()
        for batch in batches:
            kept.extend(redelivery.admit(state, batch)[0])
    return kept


def replay(
    orders: Sequence[Order],
    detectors: Sequence[Detector],
    dedup: AlertDeduplicator,
    rules: RulesSettings | None = None,
) -> list[Alert]:
    """The job's alerts for `orders`; re-deliveries judged over `rules`' horizon (the defaults')."""
    orders = first_copies(orders, Redelivery(redelivery_horizon(rules or RulesSettings())))
    raw = [a for d in detectors for a in run_detector(d, orders)]
    return deduplicate(raw, dedup)
