"""What every detector looks like: a pure rule over a plain state object.

A detector knows nothing about Flink. It is given the orders of one key that share one
event time (in `Order.sort_key` order) after every earlier order of that key, mutates its
state object and returns alerts. Orders with the same event time are evaluated together
so that they "see" each other, exactly as a window (t - w, t] over the whole stream does.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import compress
from typing import Any, ClassVar, Generic, Literal, TypeVar

from fraudstream.events.model import Order

KeyField = Literal["user_id", "device_id"]
# Each rule's name in the settings (detectors.<rule>_*, rules.*) and the type of its alerts.
RULE_ALERT_TYPES = {
    "velocity": "VELOCITY_FRAUD",
    "device_sharing": "DEVICE_SHARING_FRAUD",
    "high_value": "HIGH_VALUE_FRAUD",
    "geo": "GEO_ANOMALY_FRAUD",
}
S = TypeVar("S")


@dataclass(frozen=True, slots=True)
class Alert:
    """One fraud signal. `key` is the value of the detector's key field (user or device)."""

    alert_id: str
    alert_type: str
    severity: str
    key: str
    user_id: str
    device_id: str
    transaction_id: str
    amount: float
    event_time: int
    message: str
    details: dict[str, Any] = field(default_factory=dict)
    detected_at: int | None = None  # wall-clock ms when the pipeline emitted it
    # The learned model's risk for the alert's order (None: no model ran); a rule alert whose
    # order looked normal for its customer (risk below alerts.min_risk) is held back: stored
    # and marked, not notified.
    risk: float | None = None
    held_back: bool = False
    # The version of the rules that raised it (docs/rules.md): 0 = the settings' own rules,
    # None = a run without versioned rules (the datastream engine, offline replays).
    rule_version: int | None = None

    @property
    def dedup_key(self) -> str:
        """The cooldown's chain. A held-back alert has its own, so that it never silences a
        delivered one (without a model nothing is held back and the key is the rule's)."""
        key = f"{self.alert_type}|{self.key}"
        return f"held|{key}" if self.held_back else key

    def to_dict(self) -> dict[str, Any]:
        return {
            "alert_id": self.alert_id,
            "alert_type": self.alert_type,
            "severity": self.severity,
            "key": self.key,
            "user_id": self.user_id,
            "device_id": self.device_id,
            "transaction_id": self.transaction_id,
            "amount": self.amount,
            "event_time": self.event_time,
            "message": self.message,
            "details": self.details,
            "detected_at": self.detected_at,
            "risk": self.risk,
            "held_back": self.held_back,
            "rule_version": self.rule_version,
        }


def alert_id_for(alert_type: str, key: str, order: Order) -> str:
    """Deterministic id: the same order tripping the same rule always gives the same id."""
    raw = f"{alert_type}|{key}|{order.transaction_id}|{order.event_time}".encode()
    return hashlib.sha256(raw).hexdigest()[:24]


class Detector(ABC, Generic[S]):
    """A stateful rule for one key. State fields that are lists or dicts map to Flink
    ListState and MapState; any other field maps to ValueState."""

    alert_type: ClassVar[str]
    severity: str  # the class gives the rule's default; build_detectors sets the configured one
    key_field: ClassVar[KeyField]
    rule_version: int | None = None  # stamped on its alerts

    @abstractmethod
    def new_state(self) -> S: ...

    @abstractmethod
    def evaluate(self, state: S, orders: Sequence[Order]) -> list[Alert]:
        """Fold `orders` (same key, same event time) into `state`; return alerts."""

    @abstractmethod
    def horizon_ms(self) -> int:
        """How long after its newest order a key's state can still matter."""

    def make_alert(self, order: Order, message: str, details: dict[str, Any]) -> Alert:
        key = getattr(order, self.key_field)
        return Alert(
            alert_id=alert_id_for(self.alert_type, key, order),
            alert_type=self.alert_type,
            severity=self.severity,
            key=key,
            user_id=order.user_id,
            device_id=order.device_id,
            transaction_id=order.transaction_id,
            amount=order.amount,
            event_time=order.event_time,
            message=message,
            details=details,
            rule_version=self.rule_version,
        )


def newest(latest: Mapping[str, int], limit: int) -> list[str]:
    """The `limit` names with the newest times in `latest` (name -> event time), newest first,
    equal times in name order (code points). Every engine and the oracle list a rule's users or
    cities this way, so a capped list is the same everywhere. A sort of the times alone (in C;
    nearly sorted already, as state fills in time order), then of the names as new as the
    `limit`-th newest only: no sort of names and times together per order."""
    if len(latest) > limit:
        cut = sorted(latest.values())[-limit]
        names = list(compress(latest.keys(), map(cut.__le__, latest.values())))
    else:
        names = list(latest)
    names.sort(key=lambda name: (-latest[name], name))
    return names[:limit]


def same_time(orders: Sequence[Order]) -> int:
    t = orders[0].event_time
    if any(o.event_time != t for o in orders):
        raise ValueError("a batch must hold orders of one event time")
    return t
