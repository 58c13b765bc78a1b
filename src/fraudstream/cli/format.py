"""Human-readable lines for alerts, dead letters and orders.

Every piece of text in them comes from data (ids, cities, messages built from them, a dead
letter's raw record) and is shown with its control characters escaped (`escape_controls`): a
line on the console or in app.log is one line and cannot move the cursor or retitle a terminal.
"""

from __future__ import annotations

from datetime import UTC, datetime

from fraudstream.detectors.base import Alert
from fraudstream.events.model import DeadLetter, Order
from fraudstream.events.text import escape_controls as esc


def iso(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def risk_text(risk: float | None, held_back: bool) -> str:
    """The learned model's marks as a line shows them ("" without a model): `risk=0.912`,
    and `held-back` for a rule alert whose order looked normal for its customer."""
    if risk is None and not held_back:
        return ""
    return ("" if risk is None else f" risk={risk:.3f}") + (" held-back" if held_back else "")


def alert_line(a: Alert) -> str:
    return (
        f"ALERT {esc(a.severity):<8} {esc(a.alert_type):<20} {esc(a.message)} "
        f"[user={esc(a.user_id)} device={esc(a.device_id)} txn={esc(a.transaction_id)} amount=₹{a.amount:,.2f} "
        f"at={iso(a.event_time)}Z{risk_text(a.risk, a.held_back)} id={esc(a.alert_id)}]"
    )


def dead_letter_line(d: DeadLetter) -> str:
    raw = d.raw if len(d.raw) <= 80 else d.raw[:77] + "..."
    # repr() escapes the raw record's control characters too; esc() catches what it leaves.
    return f"DEAD  {esc(d.reason):<14} {esc(d.detail)} | {esc(repr(raw))}"


def order_line(o: Order) -> str:
    return (
        f"ORDER {iso(o.event_time)}Z user={esc(o.user_id)} amount=₹{o.amount:,.2f} device={esc(o.device_id)} "
        f"city={esc(o.city)} behavior={esc(o.behavior or '-')}"
    )
