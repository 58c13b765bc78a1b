"""DEVICE_SHARING_FRAUD: many accounts ordering from one device (account farms)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from fraudstream.detectors.base import Alert, Detector, same_time
from fraudstream.events.model import Order


@dataclass
class DeviceSharingState:
    # user_id -> event time of that user's latest order on the device (MapState in Flink).
    last_seen: dict[str, int] = field(default_factory=dict)


class DeviceSharingDetector(Detector[DeviceSharingState]):
    alert_type = "DEVICE_SHARING_FRAUD"
    severity = "CRITICAL"
    key_field = "device_id"

    def __init__(self, threshold: int = 3, window_ms: int = 3_600_000) -> None:
        self.threshold = threshold
        self.window_ms = window_ms

    def new_state(self) -> DeviceSharingState:
        return DeviceSharingState()

    def horizon_ms(self) -> int:
        return self.window_ms

    def evaluate(self, state: DeviceSharingState, orders: Sequence[Order]) -> list[Alert]:
        t = same_time(orders)
        seen = {u: ts for u, ts in state.last_seen.items() if ts > t - self.window_ms}
        for o in orders:
            seen[o.user_id] = t
        state.last_seen = seen
        if len(seen) <= self.threshold:
            return []
        return [self.alert(o, seen) for o in orders]

    def alert(self, order: Order, users: Iterable[str]) -> Alert:
        """The alert for `order`, given every distinct user of its device inside the window."""
        names = sorted(users)
        minutes = self.window_ms / 60_000
        return self.make_alert(
            order,
            f"Device {order.device_id} used by {len(names)} users in {minutes:g} minutes",
            {"distinct_users": len(names), "threshold": self.threshold, "window_ms": self.window_ms, "users": names},
        )
