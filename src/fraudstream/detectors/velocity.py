"""VELOCITY_FRAUD: too many orders by one user in a short window."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from fraudstream.detectors.base import Alert, Detector, same_time
from fraudstream.events.model import Order


@dataclass
class VelocityState:
    # Event times of the user's orders still inside the window (ListState in Flink).
    order_times: list[int] = field(default_factory=list)


class VelocityDetector(Detector[VelocityState]):
    alert_type = "VELOCITY_FRAUD"
    severity = "HIGH"
    key_field = "user_id"

    def __init__(self, threshold: int = 3, window_ms: int = 300_000) -> None:
        self.threshold = threshold
        self.window_ms = window_ms

    def new_state(self) -> VelocityState:
        return VelocityState()

    def horizon_ms(self) -> int:
        return self.window_ms

    def evaluate(self, state: VelocityState, orders: Sequence[Order]) -> list[Alert]:
        t = same_time(orders)
        # Half-open window (t - w, t]: an order exactly w old no longer counts.
        kept = [ts for ts in state.order_times if ts > t - self.window_ms]
        kept.extend(o.event_time for o in orders)
        state.order_times = kept
        count = len(kept)
        if count <= self.threshold:
            return []
        return [self.alert(o, count) for o in orders]

    def alert(self, order: Order, count: int) -> Alert:
        """The alert for `order`, the `count`-th order of its user inside the window."""
        minutes = self.window_ms / 60_000
        return self.make_alert(
            order,
            f"User {order.user_id} placed {count} orders in {minutes:g} minutes",
            {"order_count": count, "threshold": self.threshold, "window_ms": self.window_ms},
        )
