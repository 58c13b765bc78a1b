"""DEVICE_SHARING_FRAUD: many accounts ordering from one device (account farms).

The alert's `users` lists at most `list_max` of the device's users inside the window: those
whose latest order there is newest (this order's own user first), equal times in name order
(`base.newest`); `users_total` (and `distinct_users`) counts them all. A farm of thousands of
accounts thus makes an alert of a few kilobytes, which any Kafka sink can send.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from fraudstream.detectors.base import Alert, Detector, newest, same_time
from fraudstream.events.model import Order


@dataclass
class DeviceSharingState:
    # user_id -> event time of that user's latest order on the device (MapState in Flink).
    last_seen: dict[str, int] = field(default_factory=dict)


class DeviceSharingDetector(Detector[DeviceSharingState]):
    alert_type = "DEVICE_SHARING_FRAUD"
    severity = "CRITICAL"
    key_field = "device_id"

    def __init__(self, threshold: int = 3, window_ms: int = 3_600_000, list_max: int = 20) -> None:
        self.threshold = threshold
        self.window_ms = window_ms
        self.list_max = list_max

    def new_state(self) -> DeviceSharingState:
        return DeviceSharingState()

    def horizon_ms(self) -> int:
        return self.window_ms

    def evaluate(self, state: DeviceSharingState, orders: Sequence[Order]) -> list[Alert]:
        t = same_time(orders)
        seen = state.last_seen
        if seen and min(seen.values()) <= t - self.window_ms:  # a copy only when a user left the window
            seen = {u: ts for u, ts in seen.items() if ts > t - self.window_ms}
        for o in orders:
            seen[o.user_id] = t
        state.last_seen = seen
        if len(seen) <= self.threshold:
            return []
        # One list for the whole batch: the orders of one instant share their window.
        recent = {u: seen[u] for u in newest(seen, self.list_max)}
        return [self.alert(o, recent, len(seen)) for o in orders]

    def alert(self, order: Order, latest: Mapping[str, int], total: int | None = None) -> Alert:
        """The alert for `order`, given the latest time of its device's users inside the window:
        all of them, or (the SQL engine) the newest `list_max` and their number `total`."""
        total = len(latest) if total is None else total
        minutes = self.window_ms / 60_000
        return self.make_alert(
            order,
            f"Device {order.device_id} used by {total} users in {minutes:g} minutes",
            {
                "distinct_users": total,
                "threshold": self.threshold,
                "window_ms": self.window_ms,
                "users": newest(latest, self.list_max),
                "users_total": total,
            },
        )
