"""Human-readable lines for alerts, dead letters and orders."""

from __future__ import annotations

from datetime import UTC, datetime

from fraudstream.detectors.base import Alert
from fraudstream.events.model import DeadLetter, Order


def iso(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def alert_line(a: Alert) -> str:
    return (
        f"ALERT {a.severity:<8} {a.alert_type:<20} {a.message} "
        f"[user={a.user_id} device={a.device_id} txn={a.transaction_id} amount=₹{a.amount:,.2f} "
        f"at={iso(a.event_time)}Z id={a.alert_id}]"
    )


def dead_letter_line(d: DeadLetter) -> str:
    raw = d.raw if len(d.raw) <= 80 else d.raw[:77] + "..."
    return f"DEAD  {d.reason:<14} {d.detail} | {raw!r}"


def order_line(o: Order) -> str:
    return (
        f"ORDER {iso(o.event_time)}Z user={o.user_id} amount=₹{o.amount:,.2f} device={o.device_id} "
        f"city={o.city} behavior={o.behavior or '-'}"
    )
