"""GEO_ANOMALY_FRAUD: one user ordering from different cities within minutes.

The alert's `other_cities` lists at most `list_max` of the user's other cities inside the
window: those of the newest orders, equal times in name order (`base.newest`; its first is
`previous_city`); `cities_total` counts them all.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from fraudstream.detectors.base import Alert, Detector, newest, same_time
from fraudstream.events.model import Order


@dataclass
class GeoAnomalyState:
    # city -> event time of the user's latest order from it (MapState in Flink).
    last_city_time: dict[str, int] = field(default_factory=dict)


class GeoAnomalyDetector(Detector[GeoAnomalyState]):
    alert_type = "GEO_ANOMALY_FRAUD"
    severity = "HIGH"
    key_field = "user_id"

    def __init__(self, window_ms: int = 600_000, list_max: int = 20) -> None:
        self.window_ms = window_ms
        self.list_max = list_max

    def new_state(self) -> GeoAnomalyState:
        return GeoAnomalyState()

    def horizon_ms(self) -> int:
        return self.window_ms

    def evaluate(self, state: GeoAnomalyState, orders: Sequence[Order]) -> list[Alert]:
        t = same_time(orders)
        # The window (t - w, t) is open at both ends: orders at the same instant are not
        # "another order" before this one. State holds only times < t, so check it first.
        recent = {c: ts for c, ts in state.last_city_time.items() if ts > t - self.window_ms}
        # The newest list_max + 1 cities hold the newest list_max other than any order's own.
        top = {c: recent[c] for c in newest(recent, self.list_max + 1)}
        alerts = []
        for o in orders:
            total = len(recent) - (o.city in recent)
            if total:
                alerts.append(self.alert(o, {c: ts for c, ts in top.items() if c != o.city}, total))
        for o in orders:
            recent[o.city] = t
        state.last_city_time = recent
        return alerts

    def alert(self, order: Order, others: Mapping[str, int], total: int | None = None) -> Alert:
        """The alert for `order`, given the latest time of other cities inside the window: all
        of them, or at least the newest `list_max` and the number of them all, `total`."""
        cities = newest(others, self.list_max)
        prev_city = cities[0]
        minutes = (order.event_time - others[prev_city]) / 60_000
        return self.make_alert(
            order,
            f"User {order.user_id} ordered from {order.city} {minutes:.1f} min after {prev_city}",
            {
                "city": order.city,
                "previous_city": prev_city,
                "other_cities": cities,
                "cities_total": len(others) if total is None else total,
                "minutes_apart": round(minutes, 3),
                "window_ms": self.window_ms,
            },
        )
