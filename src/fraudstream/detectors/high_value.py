"""HIGH_VALUE_FRAUD: a single unusually large order."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from fraudstream.detectors.base import Alert, Detector
from fraudstream.events.model import Order


@dataclass
class HighValueState:
    """Stateless rule: nothing to keep."""


class HighValueDetector(Detector[HighValueState]):
    alert_type = "HIGH_VALUE_FRAUD"
    severity = "MEDIUM"
    key_field = "user_id"

    def __init__(self, threshold: float = 1500.0) -> None:
        self.threshold = threshold

    def new_state(self) -> HighValueState:
        return HighValueState()

    def horizon_ms(self) -> int:
        return 0

    def evaluate(self, state: HighValueState, orders: Sequence[Order]) -> list[Alert]:
        return [self.alert(o) for o in orders if o.amount > self.threshold]

    def alert(self, order: Order) -> Alert:
        return self.make_alert(
            order,
            f"User {order.user_id} placed an order of ₹{order.amount:,.2f} (limit ₹{self.threshold:,.2f})",
            {"amount": order.amount, "threshold": self.threshold},
        )
