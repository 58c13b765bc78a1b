"""Run the rules offline over a finished stream, exactly as the Flink job evaluates them:
re-deliveries dropped, then per key, in event-time order, orders of the same instant
together, then the cooldown.

Used by tests and for trying rule changes on recorded history without a cluster.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from itertools import groupby

from fraudstream.detectors.base import Alert, Detector
from fraudstream.detectors.dedup import AlertDeduplicator
from fraudstream.events.model import Order
from fraudstream.events.redelivery import Redelivery, horizon_of


def run_detector(detector: Detector, orders: Iterable[Order]) -> list[Alert]:
    by_key: dict[str, list[Order]] = defaultdict(list)
    for o in orders:
        by_key[getattr(o, detector.key_field)].append(o)
    alerts: list[Alert] = []
    for key_orders in by_key.values():
        state = detector.new_state()
        key_orders.sort(key=lambda o: o.sort_key)
        for _, batch in groupby(key_orders, key=lambda o: o.event_time):
            alerts.extend(detector.evaluate(state, list(batch)))
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
    given, i.e. arrival order), each re-delivery dropped."""
    by_user: dict[str, list[Order]] = defaultdict(list)
    for o in orders:
        by_user[o.user_id].append(o)
    kept: list[Order] = []
    for user_orders in by_user.values():
        state = redelivery.new_state()
        user_orders.sort(key=lambda o: o.event_time)  # stable: arrival order within an instant
        for _, batch in groupby(user_orders, key=lambda o: o.event_time):
            kept.extend(redelivery.admit(state, list(batch))[0])
    return kept


def replay(orders: Sequence[Order], detectors: Sequence[Detector], dedup: AlertDeduplicator) -> list[Alert]:
    orders = first_copies(orders, Redelivery(horizon_of(detectors)))
    raw = [a for d in detectors for a in run_detector(d, orders)]
    return deduplicate(raw, dedup)
