"""GEO_ANOMALY_FRAUD: one user ordering from different cities within minutes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from fraudstream.detectors.base import Alert, Detector, same_time
from fraudstream.events.model import Order


@dataclass
class GeoAnomalyState:
    # city -> event time of the user's latest order from it (MapState in Flink).
    last_city_time: dict[str, int] = field(default_factory=dict)


class GeoAnomalyDetector(Detector[GeoAnomalyState]):
    alert_type = "GEO_ANOMALY_FRAUD"
    severity = "HIGH"
    key_field = "user_id"

    def __init__(self, window_ms: int = 600_000) -> None:
        self.window_ms = window_ms

    def new_state(self) -> GeoAnomalyState:
        return GeoAnomalyState()

    def horizon_ms(self) -> int:
        return self.window_ms

    def evaluate(self, state: GeoAnomalyState, orders: Sequence[Order]) -> list[Alert]:
        t = same_time(orders)
        # The window (t - w, t) is open at both ends: orders at the same instant are not
        # "another order" before this one. State holds only times < t, so check it first.
        recent = {c: ts for c, ts in state.last_city_time.items() if ts > t - self.window_ms}
        alerts = []
        for o in orders:
            others = {c: ts for c, ts in recent.items() if c != o.city}
            if others:
                alerts.append(self.alert(o, others))
        for o in orders:
            recent[o.city] = t
        state.last_city_time = recent
        return alerts

    def alert(self, order: Order, others: Mapping[str, int]) -> Alert:
        """The alert for `order`, given the latest time of each other city inside the window."""
        prev_city = max(others, key=lambda c: (others[c], c))
        minutes = (order.event_time - others[prev_city]) / 60_000
        return self.make_alert(
            order,
            f"User {order.user_id} ordered from {order.city} {minutes:.1f} min after {prev_city}",
            {
                "city": order.city,
                "previous_city": prev_city,
                "other_cities": sorted(others),
                "minutes_apart": round(minutes, 3),
                "window_ms": self.window_ms,
            },
        )
