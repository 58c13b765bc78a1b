"""Turn one raw line into an `Order` or a `DeadLetter`; never raises on input."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from fraudstream.events.model import DeadLetter, Order

_ID_FIELDS = ("user_id", "device_id", "restaurant_id", "city", "payment_method")
_MAX_ID_CHARS = 256
# Epoch-millisecond bounds: 1970-01-01 .. 9999-12-31.
_MAX_EVENT_TIME = 253_402_300_799_999


@dataclass(frozen=True, slots=True)
class ParseLimits:
    max_record_bytes: int = 65_536
    dead_letter_max_chars: int = 4_096


class _Rejected(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def parse_record(
    raw: str | bytes, limits: ParseLimits = ParseLimits(), now_ms: int | None = None
) -> Order | DeadLetter | None:
    """Validate one JSON line. Returns None for a blank line (skipped, not an error)."""
    try:
        data = _decode(raw, limits)
        if data is None:
            return None
        return _to_order(data)
    except _Rejected as rej:
        # Decoded only on rejection: valid records never pay for it.
        text = raw if isinstance(raw, str) else raw.decode("utf-8", errors="replace")
        return dead_letter(rej.reason, rej.detail, text, limits, now_ms)


def dead_letter(
    reason: str,
    detail: str,
    raw: str,
    limits: ParseLimits = ParseLimits(),
    now_ms: int | None = None,
    event_time: int | None = None,
) -> DeadLetter:
    cap = limits.dead_letter_max_chars
    if len(raw) > cap:
        raw = raw[:cap] + f"...[truncated {len(raw) - cap} chars]"
    seen = now_ms if now_ms is not None else int(time.time() * 1000)
    return DeadLetter(reason=reason, detail=detail, raw=raw, seen_at=seen, event_time=event_time)


def _decode(raw: str | bytes, limits: ParseLimits) -> Any:
    if isinstance(raw, bytes):
        size = len(raw)
    else:
        # A str may carry undecodable input losslessly as lone surrogates or, from the
        # Flink file source, as ISO-8859-1 characters standing for raw bytes.
        size = len(raw.encode("utf-8", errors="surrogatepass"))
    if size > limits.max_record_bytes:
        raise _Rejected("too_large", f"record is {size} bytes, limit is {limits.max_record_bytes}")
    if isinstance(raw, bytes):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _Rejected("undecodable", f"not valid UTF-8: {exc.reason} at byte {exc.start}") from None
    else:
        text = raw
    if not text.strip():
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        if any(0xD800 <= ord(c) <= 0xDFFF for c in text):
            raise _Rejected("undecodable", "not valid UTF-8") from None
        raise _Rejected("invalid_json", str(exc)) from None


def _require_str(data: dict[str, Any], name: str) -> str:
    if name not in data or data[name] is None:
        raise _Rejected("missing_field", f"'{name}' is missing")
    value = data[name]
    if not isinstance(value, str):
        raise _Rejected("wrong_type", f"'{name}' must be a string, got {type(value).__name__}")
    if not value.strip():
        raise _Rejected("invalid_value", f"'{name}' must be a non-empty string")
    if len(value) > _MAX_ID_CHARS:
        raise _Rejected("invalid_value", f"'{name}' is longer than {_MAX_ID_CHARS} characters")
    return value


def _event_time(data: dict[str, Any]) -> int:
    if "event_time" not in data or data["event_time"] is None:
        raise _Rejected("missing_field", "'event_time' is missing")
    value = data["event_time"]
    if isinstance(value, bool):
        raise _Rejected("wrong_type", "'event_time' must be epoch milliseconds or ISO-8601, got bool")
    if isinstance(value, int):
        millis = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise _Rejected("invalid_value", f"'event_time' is not ISO-8601: {value[:64]!r}") from None
        if parsed.tzinfo is None:
            raise _Rejected("invalid_value", "'event_time' ISO-8601 string must carry a time zone")
        millis = int(parsed.timestamp() * 1000)
    else:
        raise _Rejected(
            "wrong_type", f"'event_time' must be epoch milliseconds or ISO-8601, got {type(value).__name__}"
        )
    if not 0 <= millis <= _MAX_EVENT_TIME:
        raise _Rejected("invalid_value", f"'event_time' {millis} is out of range")
    return millis


def _amount(data: dict[str, Any]) -> float:
    if "amount" not in data or data["amount"] is None:
        raise _Rejected("missing_field", "'amount' is missing")
    value = data["amount"]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Rejected("wrong_type", f"'amount' must be a number, got {type(value).__name__}")
    amount = float(value)
    if not math.isfinite(amount):
        raise _Rejected("invalid_value", "'amount' must be finite")
    if amount < 0:
        raise _Rejected("invalid_value", f"'amount' must be >= 0, got {amount}")
    return amount


def _to_order(data: Any) -> Order:
    if not isinstance(data, dict):
        raise _Rejected("not_an_object", f"expected a JSON object, got {type(data).__name__}")
    # Producers of the system we replace call the id `order_id`; accept either name.
    id_name = "transaction_id" if data.get("transaction_id") is not None else "order_id"
    if data.get(id_name) is None:
        raise _Rejected("missing_field", "'transaction_id' (or 'order_id') is missing")
    transaction_id = _require_str(data, id_name)
    fields = {name: _require_str(data, name) for name in _ID_FIELDS}
    behavior = data.get("behavior")
    if behavior is not None and not isinstance(behavior, str):
        raise _Rejected("wrong_type", f"'behavior' must be a string, got {type(behavior).__name__}")
    known = {"transaction_id", "amount", "event_time", "behavior", *_ID_FIELDS}
    extra = {k: v for k, v in data.items() if k not in known}
    return Order(
        transaction_id=transaction_id,
        amount=_amount(data),
        event_time=_event_time(data),
        behavior=behavior,
        extra=extra,
        **fields,
    )
