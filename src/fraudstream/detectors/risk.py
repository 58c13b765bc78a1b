"""ACCOUNT_TAKEOVER, and the risk every rule alert carries, from the learned model's score.

The score and the reasons are computed upstream (the job: the JVM's scoring step; offline:
`fraudstream.model.score`); this module only turns them into alerts, the same way for every
engine, so the text and details cannot differ between them.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any, TypedDict

from fraudstream.config import AlertSettings, ModelSettings
from fraudstream.detectors.base import Alert, alert_id_for
from fraudstream.events.model import Order

ALERT_TYPE = "ACCOUNT_TAKEOVER"


class Reason(TypedDict):
    """One feature that raised an order's risk: its value, the value usual for honest orders
    (the model file's baseline) and how much the risk falls when it is set to that."""

    feature: str
    value: float
    usual: float
    raised_by: float


def describe(reason: Reason) -> str:
    """A reason in an analyst's words."""
    f, v = reason["feature"], reason["value"]
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        return f"{f} {v!r}"  # not a number (null in the JSON): said as it is, never a failed format
    if f == "device_orders" and v == 0:
        return "a device new to them"
    if f == "city_orders" and v == 0:
        return "a city new to them"
    if f == "prior_orders" and v == 0:
        return "their first order"
    if f == "account_age_h" and v == 0:
        return "a new account"
    if f in ("account_age_h", "since_prev_h") and v < 1:
        minutes = f"{v * 60:.0f} min"
        return (
            f"an account first seen {minutes} before"
            if f == "account_age_h"
            else f"{minutes} after their previous order"
        )
    words = {
        "amount": "an order of ₹{:,.2f}",
        "prior_orders": "{:.0f} earlier orders",
        "amount_to_usual": "{:.1f}x their usual amount",
        "amount_z": "an amount {:.1f} spreads from their usual",
        "account_age_h": "an account first seen {:.1f} h before",
        "since_prev_h": "{:.1f} h since their previous order",
        "orders_last_hour": "{:.0f} orders in the hour before",
        "device_orders": "{:.0f} earlier orders from this device",
        "city_orders": "{:.0f} earlier orders from this city",
        "km_from_usual": "{:,.0f} km from their usual city",
        "device_users_24h": "{:.0f} other users on this device in 24 h",
    }
    return words[f].format(v) if f in words else f"{f} {v:g}"  # a name is never a format string


class RiskAlerts:
    """Alerts from risk: ACCOUNT_TAKEOVER for a risky order, and risk marks on rule alerts."""

    alert_type = ALERT_TYPE
    key_field = "user_id"

    def __init__(self, model: ModelSettings, alerts: AlertSettings, model_version: str | None = None) -> None:
        self.model = model
        self.min_risk = alerts.min_risk
        self.model_version = model_version

    def severity(self, risk: float) -> str:
        if risk >= self.model.critical_risk:
            return "CRITICAL"
        if risk >= self.model.high_risk:
            return "HIGH"
        return "MEDIUM"

    def raises(self, risk: float | None) -> bool:
        return risk is not None and risk >= self.model.takeover_risk

    def takeover(self, order: Order, risk: float, reasons: Sequence[Reason], threshold: float | None = None) -> Alert:
        """`threshold`: the takeover risk of the rules version in force (default: the settings')."""
        said = ", ".join(describe(r) for r in reasons) or "an order unlike their history"
        limit = self.model.takeover_risk if threshold is None else threshold
        details: dict[str, Any] = {"risk": risk, "reasons": list(reasons), "threshold": limit}
        if self.model_version is not None:
            details["model"] = self.model_version
        return Alert(
            alert_id=alert_id_for(ALERT_TYPE, order.user_id, order),
            alert_type=ALERT_TYPE,
            severity=self.severity(risk),
            key=order.user_id,
            user_id=order.user_id,
            device_id=order.device_id,
            transaction_id=order.transaction_id,
            amount=order.amount,
            event_time=order.event_time,
            message=f"Risk {risk:.3f} for user {order.user_id}'s order, unlike their history: {said}",
            details=details,
            risk=risk,
        )

    def mark(self, alert: Alert, risk: float | None, min_risk: float | None = None) -> Alert:
        """A rule alert with its order's risk; held back when that is below alerts.min_risk (or
        `min_risk`, the rules version's)."""
        if risk is None:
            return alert
        floor = self.min_risk if min_risk is None else min_risk
        return dataclasses.replace(alert, risk=risk, held_back=risk < floor)
