"""Input idempotence: an order delivered twice counts once.

Upstream producers retry without idempotence and topics get replayed, so the same order
(same id, same user) can arrive more than once. The first copy in event-time order is
admitted; a later copy within `horizon_ms` of it is a `duplicate` dead letter that no rule
sees. Outside the horizon no rule can count both copies in one window, so the id is
forgotten there and the state stays bounded.

Pure Python over a plain state object, like the detectors: the Flink glue feeds it the
orders of one user that share an event time, in arrival order, after every earlier time.
The SQL engine's `Redelivery.java` implements the same rule (see docs/event-contract.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from fraudstream.config import RulesSettings
from fraudstream.events.model import Order

# The fields two copies are compared on (the user is the key, the id the same by definition).
COMPARED = ("device_id", "restaurant_id", "amount", "city", "payment_method", "event_time")


@dataclass
class RedeliveryState:
    # transaction id -> the admitted copy's compared fields, event time last (MapState in Flink).
    admitted: dict[str, tuple[Any, ...]] = field(default_factory=dict)


def fingerprint(order: Order) -> tuple[Any, ...]:
    return tuple(getattr(order, name) for name in COMPARED)


def duplicate_detail(transaction_id: str, kept: tuple[Any, ...], copy: tuple[Any, ...]) -> str:
    """What a duplicate dead letter says: which copy was kept and which fields differ."""
    differ = [name for name, a, b in zip(COMPARED, kept, copy, strict=True) if a != b]
    what = f"differs in {', '.join(differ)}" if differ else "is identical"
    return f"order {transaction_id} was already admitted with event_time {kept[-1]}; this copy {what}"


class Redelivery:
    """Admits the first copy of each order id per user; later copies within the horizon are duplicates."""

    def __init__(self, horizon_ms: int) -> None:
        # At least 1 ms: two copies at the same instant are always the same order.
        self.horizon_ms = max(horizon_ms, 1)

    def new_state(self) -> RedeliveryState:
        return RedeliveryState()

    def admit(self, state: RedeliveryState, orders: Sequence[Order]) -> tuple[list[Order], list[tuple[Order, str]]]:
        """Split `orders` (one user, one event time, in arrival order) into the admitted
        ones and the duplicates, each with its dead letter's detail."""
        t = orders[0].event_time
        # Half-open, like the rules' windows: a copy exactly `horizon_ms` later is a new order.
        seen = {tx: kept for tx, kept in state.admitted.items() if kept[-1] > t - self.horizon_ms}
        admitted: list[Order] = []
        duplicates: list[tuple[Order, str]] = []
        for o in orders:
            kept = seen.get(o.transaction_id)
            if kept is None:
                seen[o.transaction_id] = fingerprint(o)
                admitted.append(o)
            else:
                duplicates.append((o, duplicate_detail(o.transaction_id, kept, fingerprint(o))))
        state.admitted = seen
        return admitted, duplicates


def horizon_of(detectors: Sequence[Any]) -> int:
    """The rules' longest horizon: beyond it no rule can see two copies of one order."""
    return max((d.horizon_ms() for d in detectors), default=0)


def redelivery_horizon(rules: RulesSettings) -> int:
    """How long the job remembers an admitted order's id: the longest window any rules version
    may give a rule (rules.*_max_window_ms, which a configured window never exceeds), so that no
    version, live or configured, sees two copies of one order in one window."""
    return max(rules.velocity_max_window_ms, rules.device_sharing_max_window_ms, rules.geo_max_window_ms)
