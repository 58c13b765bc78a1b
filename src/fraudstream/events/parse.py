"""Turn one raw line into an `Order` or a `DeadLetter`; never raises on input.

The rules are written down in docs/event-contract.md; `OrderParser.java` implements the same
spec in the JVM, and tests/flink/test_java_parser.py holds the two together.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from datetime import date
from typing import Any

import orjson

from fraudstream.events.model import DeadLetter, Order
from fraudstream.events.text import first_control

_ID_FIELDS = ("user_id", "device_id", "restaurant_id", "city", "payment_method")
_MAX_ID_CHARS = 256
# Epoch-millisecond bounds: 1970-01-01T00:00:00.000Z .. 9999-12-31T23:59:59.999Z.
MAX_EVENT_TIME = 253_402_300_799_999
_BOM = b"\xef\xbb\xbf"
# Unicode's White_Space property: what makes a record or an id blank (the spec's definition).
_WHITESPACE = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + "\u2028\u2029\u202f\u205f\u3000"
)
# RFC 3339 date-time ([0-9], not \d: no other scripts' digits). The zone is optional here
# only so that a missing one gets its own detail.
_RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?"
    r"(?:([Zz])|([+-])([0-9]{2}):([0-9]{2}))?"
)
_EPOCH_DAY = date(1970, 1, 1).toordinal()


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
        text = _decode(raw, limits)
        if text is None:
            return None
        return _to_order(_load(text))
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


def _decode(raw: str | bytes, limits: ParseLimits) -> str | None:
    """The record's text without its byte-order mark; None when blank."""
    if isinstance(raw, bytes):
        size = len(raw)
    else:
        # A str may carry undecodable input losslessly as lone surrogates.
        size = len(raw.encode("utf-8", errors="surrogatepass"))
    if size > limits.max_record_bytes:
        raise _Rejected("too_large", f"record is {size} bytes, limit is {limits.max_record_bytes}")
    if isinstance(raw, bytes):
        skip = len(_BOM) if raw.startswith(_BOM) else 0
        try:
            text = raw[skip:].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _Rejected("undecodable", f"not valid UTF-8 at byte {exc.start + skip}") from None
    else:
        text = raw[1:] if raw.startswith("\ufeff") else raw
    if not text.strip(_WHITESPACE):
        return None
    return text


def _load(text: str) -> dict[str, Any]:
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        # Checked only on failure (valid records never pay): orjson rejects any lone surrogate.
        if any(0xD800 <= ord(c) <= 0xDFFF for c in text):
            raise _Rejected("undecodable", "not valid UTF-8 (a lone surrogate)") from None
        raise _Rejected("invalid_json", str(exc)) from None
    if not isinstance(data, dict):
        raise _Rejected("not_an_object", f"expected a JSON object, got {_json_type(data)}")
    return data


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _present(data: dict[str, Any], name: str) -> Any:
    value = data.get(name)
    if value is None:
        raise _Rejected("missing_field", f"'{name}' is missing")
    return value


def _require_str(data: dict[str, Any], name: str) -> str:
    value = _present(data, name)
    if not isinstance(value, str):
        raise _Rejected("wrong_type", f"'{name}' must be a string, got {_json_type(value)}")
    if not value.strip(_WHITESPACE):
        raise _Rejected("invalid_value", f"'{name}' must be a non-blank string")
    if len(value) > _MAX_ID_CHARS:
        raise _Rejected("invalid_value", f"'{name}' is longer than {_MAX_ID_CHARS} characters")
    # isprintable() first: a plain id is decided without a call or a regex scan.
    at = None if value.isprintable() else first_control(value)
    if at is not None:
        # An id is shown on analysts' terminals and in app.log: no escape sequences, no line breaks.
        raise _Rejected(
            "invalid_value", f"'{name}' holds a control character (U+{ord(value[at]):04X} at character {at})"
        )
    return value


def _amount(data: dict[str, Any]) -> float:
    value = _present(data, "amount")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Rejected("wrong_type", f"'amount' must be a number, got {_json_type(value)}")
    amount = float(value)  # integers: the nearest double
    if not math.isfinite(amount):
        raise _Rejected("invalid_value", "'amount' must be finite")
    if amount < 0:
        raise _Rejected("invalid_value", f"'amount' must be >= 0, got {amount}")
    return amount + 0.0  # -0.0 becomes 0.0


def _event_time(data: dict[str, Any]) -> int:
    value = _present(data, "event_time")
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise _Rejected("wrong_type", f"'event_time' must be a number or a string, got {_json_type(value)}")
    if isinstance(value, str):
        millis = _rfc3339_millis(value)
    elif isinstance(value, float):
        # orjson reads integers beyond 64 bits as floats too: all are out of the contract.
        raise _Rejected("invalid_value", "'event_time' must be whole epoch milliseconds (no fraction or exponent)")
    else:
        millis = value
    if not 0 <= millis <= MAX_EVENT_TIME:
        raise _Rejected("invalid_value", f"'event_time' {millis} is out of range")
    return millis


def event_time_ms(value: Any) -> int | None:
    """An `event_time` value as the contract reads it (epoch ms or RFC 3339), or None where
    the job would reject it: for tools reading raw events outside the job (evaluate)."""
    try:
        return _event_time({"event_time": value})
    except _Rejected:
        return None


def _rfc3339_millis(value: str) -> int:
    m = _RFC3339.fullmatch(value)
    if m is None:
        raise _Rejected("invalid_value", f"'event_time' is not an RFC 3339 timestamp: {value[:64]!r}")
    year, month, day, hour, minute, second, fraction, z, sign, off_h, off_m = m.groups()
    if z is None and sign is None:
        raise _Rejected("invalid_value", "'event_time' timestamp must carry a time zone ('Z' or ±HH:MM)")
    try:
        days = date(int(year), int(month), int(day)).toordinal() - _EPOCH_DAY
    except ValueError:
        raise _Rejected("invalid_value", f"'event_time' has no such date: {value[:10]!r}") from None
    if int(hour) > 23 or int(minute) > 59 or int(second) > 59:
        raise _Rejected("invalid_value", f"'event_time' has no such time of day: {value[11:19]!r}")
    offset = 0
    if sign is not None:
        if int(off_h) > 23 or int(off_m) > 59:
            raise _Rejected("invalid_value", "'event_time' offset must be within ±23:59")
        offset = (int(off_h) * 60 + int(off_m)) * 60 * (-1 if sign == "-" else 1)
    seconds = days * 86_400 + int(hour) * 3_600 + int(minute) * 60 + int(second) - offset
    # Digits past the millisecond are dropped, not rounded.
    return seconds * 1000 + int((fraction or "")[:3].ljust(3, "0"))


# The fields an Order holds itself; any other field is kept in `extra`, as received.
_KNOWN = frozenset({"transaction_id", "amount", "event_time", "behavior", *_ID_FIELDS})


def _to_order(data: dict[str, Any]) -> Order:
    # Producers of the system we replace call the id `order_id`; accept either name.
    id_name = "transaction_id" if data.get("transaction_id") is not None else "order_id"
    if data.get(id_name) is None:
        raise _Rejected("missing_field", "'transaction_id' (or 'order_id') is missing")
    transaction_id = _require_str(data, id_name)
    fields = {name: _require_str(data, name) for name in _ID_FIELDS}
    behavior = data.get("behavior")
    if behavior is not None and not isinstance(behavior, str):
        raise _Rejected("wrong_type", f"'behavior' must be a string, got {_json_type(behavior)}")
    if behavior is not None and len(behavior) > _MAX_ID_CHARS:
        raise _Rejected("invalid_value", f"'behavior' is longer than {_MAX_ID_CHARS} characters")
    amount = _amount(data)
    event_time = _event_time(data)
    extra = {k: v for k, v in data.items() if k not in _KNOWN}
    return Order(
        transaction_id=transaction_id,
        amount=amount,
        event_time=event_time,
        behavior=behavior,
        extra=extra,
        **fields,
    )
