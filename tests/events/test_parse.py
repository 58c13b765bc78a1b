from __future__ import annotations

import orjson
import pytest

from fraudstream.events import DeadLetter, Order, ParseLimits, parse_record

GOOD = {
    "transaction_id": "t_1",
    "user_id": "u_15",
    "device_id": "d_8",
    "restaurant_id": "r_3",
    "amount": 287.5,
    "city": "Mumbai",
    "payment_method": "UPI",
    "event_time": 1767225600000,
    "behavior": "normal",
}


def with_(**changes):
    d = dict(GOOD)
    for k, v in changes.items():
        if v is ...:
            d.pop(k)
        else:
            d[k] = v
    return orjson.dumps(d)


def test_valid_order():
    o = parse_record(orjson.dumps(GOOD))
    assert isinstance(o, Order)
    assert (o.transaction_id, o.user_id, o.amount, o.event_time, o.behavior) == (
        "t_1",
        "u_15",
        287.5,
        GOOD["event_time"],
        "normal",
    )
    assert o.to_dict() == GOOD


def test_behavior_is_optional_and_ints_are_amounts():
    o = parse_record(with_(behavior=..., amount=300))
    assert isinstance(o, Order) and o.behavior is None and o.amount == 300.0


def test_iso_event_time_with_zone():
    o = parse_record(with_(event_time="2026-01-01T00:00:00Z"))
    assert o.event_time == 1767225600000
    o = parse_record(with_(event_time="2026-01-01T05:30:00+05:30"))
    assert o.event_time == 1767225600000


def test_legacy_producer_events_flow_through():
    legacy = dict(GOOD, order_id="o_77", event_id="e_1", device_type="android", is_cod=True)
    del legacy["transaction_id"]
    o = parse_record(orjson.dumps(legacy))
    assert isinstance(o, Order)
    assert o.transaction_id == "o_77"
    assert o.extra == {"order_id": "o_77", "event_id": "e_1", "device_type": "android", "is_cod": True}
    assert o.to_dict()["device_type"] == "android"


def test_blank_lines_are_skipped():
    assert parse_record(b"") is None
    assert parse_record("   \t") is None


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "invalid_json"),
        (b'{"a": NaN}', "invalid_json"),
        (b"[1, 2]", "not_an_object"),
        (b'"just a string"', "not_an_object"),
        (b"42", "not_an_object"),
        (with_(user_id=...), "missing_field"),
        (with_(transaction_id=...), "missing_field"),
        (with_(event_time=None), "missing_field"),
        (with_(amount="12.5"), "wrong_type"),
        (with_(amount=True), "wrong_type"),
        (with_(user_id=15), "wrong_type"),
        (with_(event_time=1.5e12), "wrong_type"),
        (with_(event_time=True), "wrong_type"),
        (with_(behavior=3), "wrong_type"),
        (with_(amount=-1), "invalid_value"),
        (with_(user_id=""), "invalid_value"),
        (with_(device_id="   "), "invalid_value"),
        (with_(event_time="yesterday"), "invalid_value"),
        (with_(event_time="2026-01-01T00:00:00"), "invalid_value"),
        (with_(event_time=-5), "invalid_value"),
        (b'{"user_id": "\xff\xfe"}', "undecodable"),
        (b"\xc3\x28 broken", "undecodable"),
        (b'{"x": "' + b"a" * 70_000 + b'"}', "too_large"),
    ],
)
def test_bad_records_become_dead_letters(raw, reason):
    d = parse_record(raw)
    assert isinstance(d, DeadLetter)
    assert d.reason == reason, d.detail
    assert d.detail


def test_nan_amount_from_a_lenient_producer():
    raw = orjson.dumps(GOOD).replace(b"287.5", b"NaN")
    d = parse_record(raw)
    assert isinstance(d, DeadLetter) and d.reason == "invalid_json"


def test_infinite_amount_is_rejected():
    raw = orjson.dumps(GOOD).replace(b"287.5", b"1e400")
    d = parse_record(raw)
    assert isinstance(d, DeadLetter) and d.reason in {"invalid_json", "invalid_value"}


def test_huge_dead_letters_are_truncated():
    limits = ParseLimits(max_record_bytes=1_000_000, dead_letter_max_chars=100)
    d = parse_record("x" * 5000, limits)
    assert isinstance(d, DeadLetter)
    assert len(d.raw) < 200 and "truncated 4900 chars" in d.raw
