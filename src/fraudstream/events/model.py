"""Plain, engine-agnostic records that flow through the pipeline."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Fields every order must carry (besides an id), in the order they are written out.
CONTRACT_FIELDS = (
    "transaction_id",
    "user_id",
    "device_id",
    "restaurant_id",
    "amount",
    "city",
    "payment_method",
    "event_time",
)


@dataclass(frozen=True, slots=True)
class Order:
    """One validated food-delivery order; `event_time` is epoch milliseconds (UTC).

    `behavior` is the generator's ground-truth label: detectors must never read it.
    `extra` keeps every field outside the contract (e.g. a legacy producer's `order_id`,
    `event_id`, `device_type`, `is_cod`) so such events flow through unchanged.
    """

    transaction_id: str
    user_id: str
    device_id: str
    restaurant_id: str
    amount: float
    city: str
    payment_method: str
    event_time: int
    behavior: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def sort_key(self) -> tuple[int, str, str, str]:
        """Total order used everywhere events are evaluated, so ties never depend on arrival."""
        return (self.event_time, self.transaction_id, self.user_id, self.device_id)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.extra)
        for name in CONTRACT_FIELDS:
            out[name] = getattr(self, name)
        if self.behavior is not None:
            out["behavior"] = self.behavior
        return out


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record the pipeline could not use, kept with the reason instead of being dropped.

    `reason` is a short machine-readable code (`invalid_json`, `late`, ...); `detail` says
    what exactly was wrong; `raw` is the record as received, truncated if huge.

    `letter_id` is its key in the store: for one copied from the dead-letter topic, its place
    there (`topic/partition@offset`), unique per record of a committed topic, so copying the
    topic again stores nothing twice. It is not part of the record itself (`to_dict`, the
    topic's format, shared with the SQL engine): a run's result stream has no such place and
    is read once, so those are stored without a key.
    """

    reason: str
    detail: str
    raw: str
    seen_at: int
    event_time: int | None = None
    letter_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "reason": self.reason,
            "detail": self.detail,
            "raw": self.raw,
            "seen_at": self.seen_at,
            "event_time": self.event_time,
        }
