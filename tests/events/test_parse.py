"""The event contract (docs/event-contract.md), in Python: its examples table and its edge cases."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import orjson
import pytest

from fraudstream.events import DeadLetter, Order, ParseLimits, parse_record

SPEC = Path(__file__).resolve().parents[2] / "docs" / "event-contract.md"
BOM = b"\xef\xbb\xbf"
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
PARSED = ("transaction_id", "user_id", "device_id", "restaurant_id", "amount", "city", "payment_method", "event_time")


def with_(**changes):
    d = dict(GOOD)
    for k, v in changes.items():
        if v is ...:
            d.pop(k)
        else:
            d[k] = v
    return orjson.dumps(d)


# ---------------------------------------------------------------- the spec's examples table


def _b_form(m: re.Match[str]) -> bytes:
    """`{B − "a" − "b", "k": v, ...}`: the base order without a and b, then the fields as written."""
    removed = re.findall(r'−\s*"([^"]+)"', m.group(1))
    rest = (m.group(2) or "").strip()
    base = {k: v for k, v in GOOD.items() if k not in removed and k not in re.findall(r'"([^"]+)"\s*:', rest)}
    head = orjson.dumps(base)
    return head[:-1] + b"," + rest.encode() + b"}" if rest else head


def example_record(cell: str) -> bytes:
    """The record a cell of the examples table stands for (see the notation above the table)."""
    out = b""
    token = re.compile(r"<BOM>|<([0-9A-F ]*)>|\{B((?:\s*−\s*\"[^\"]+\")*)\s*(?:,([^{}]*))?\}")
    pos = 0
    for m in token.finditer(cell):
        out += cell[pos : m.start()].encode()
        if m.group(0) == "<BOM>":
            out += BOM
        elif m.group(0).startswith("<"):
            out += bytes.fromhex(m.group(1))
        else:
            out += _b_form(re.match(r"\{B((?:\s*−\s*\"[^\"]+\")*)\s*(?:,(.*))?\}", m.group(0), re.S))
        pos = m.end()
    return out + cell[pos:].encode()


def spec_examples() -> list[tuple[str, bytes, str, dict[str, Any]]]:
    """(number, record, verdict, expected fields) for every row of the spec's examples table."""
    text = SPEC.read_text(encoding="utf-8")
    table = text[text.index("\n## Examples") :]
    rows = []
    for line in table.splitlines():
        m = re.fullmatch(r"\| (\d+) \| `([^`]*)` \| ([a-z_]+) \|\s*(.*?)\s*\|", line)
        if m is None:
            continue
        number, cell, verdict, why = m.groups()
        fields = {}
        if verdict == "order":
            fields = {name: orjson.loads(value) for name, value in re.findall(r"`([a-z_]+)=([^`]+)`", why)}
        rows.append((number, example_record(cell), verdict, fields))
    return rows


EXAMPLES = spec_examples()


def test_the_examples_table_is_read():
    assert len(EXAMPLES) >= 60
    assert [int(n) for n, *_ in EXAMPLES] == list(range(1, len(EXAMPLES) + 1))
    verdicts = {v for _, _, v, _ in EXAMPLES}
    assert verdicts == {"order", "skipped", "invalid_json", "undecodable", "not_an_object"} | {
        "missing_field",
        "wrong_type",
        "invalid_value",
    }


def expected_order(fields: dict[str, Any]) -> dict[str, Any]:
    out = {name: GOOD[name] for name in PARSED} | {"behavior": GOOD["behavior"]}
    return out | fields


def verdict_of(result: Order | DeadLetter | None) -> str:
    if result is None:
        return "skipped"
    return "order" if isinstance(result, Order) else result.reason


@pytest.mark.parametrize(("number", "raw", "verdict", "fields"), EXAMPLES, ids=[e[0] for e in EXAMPLES])
def test_spec_examples(number, raw, verdict, fields):
    result = parse_record(raw)
    assert verdict_of(result) == verdict, getattr(result, "detail", result)
    if isinstance(result, DeadLetter):
        assert result.detail
    if verdict == "order":
        got = {name: getattr(result, name) for name in (*PARSED, "behavior")}
        assert got == expected_order(fields)
        assert type(result.event_time) is int and type(result.amount) is float
        assert math.copysign(1.0, result.amount) == 1.0  # -0 is read as 0


# ---------------------------------------------------------------- orders


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


@pytest.mark.parametrize(
    ("text", "millis"),
    [
        ("2026-01-01T00:00:00.001Z", 1767225600001),
        ("2026-01-01T00:00:00.0019Z", 1767225600001),
        ("2026-01-01T00:00:00.9999999999999Z", 1767225600999),
        ("2026-01-01T00:00:00.7+00:00", 1767225600700),
        ("2026-01-01T00:00:00-23:59", 1767225600000 + (23 * 60 + 59) * 60_000),
        ("1970-01-01T00:00:00.000Z", 0),
        ("1970-01-01T05:30:00+05:30", 0),
        ("9999-12-31T23:59:59.999999999Z", 253_402_300_799_999),
    ],
)
def test_timestamps_are_exact_to_the_millisecond(text, millis):
    o = parse_record(with_(event_time=text))
    assert isinstance(o, Order) and o.event_time == millis


def test_legacy_producer_events_flow_through():
    legacy = dict(GOOD, order_id="o_77", event_id="e_1", device_type="android", is_cod=True)
    del legacy["transaction_id"]
    o = parse_record(orjson.dumps(legacy))
    assert isinstance(o, Order)
    assert o.transaction_id == "o_77"
    assert o.extra == {"order_id": "o_77", "event_id": "e_1", "device_type": "android", "is_cod": True}
    assert o.to_dict()["device_type"] == "android"


def test_ids_may_have_256_characters_not_257():
    for name in ("transaction_id", "user_id", "payment_method", "behavior"):
        for char in ("x", "\u00e9", "\U0001f600"):  # characters are code points, not bytes
            assert isinstance(parse_record(with_(**{name: char * 256})), Order)
            d = parse_record(with_(**{name: char * 257}))
            assert isinstance(d, DeadLetter) and d.reason == "invalid_value"


def test_every_control_character_is_refused_in_every_id_and_other_text_is_not():
    from fraudstream.events.text import CONTROL_CLASS

    controls = [*range(0x20), *range(0x7F, 0xA0), 0x061C, 0x200E, 0x200F, 0x2028, 0x2029]
    controls += [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]
    assert re.fullmatch(f"[{CONTROL_CLASS}]+", "".join(map(chr, controls)))
    for name in ("transaction_id", "user_id", "device_id", "restaurant_id", "city", "payment_method"):
        for code in controls:
            d = parse_record(with_(**{name: f"x{chr(code)}y"}))
            assert isinstance(d, DeadLetter) and d.reason == "invalid_value", (name, hex(code))
            assert f"U+{code:04X}" in d.detail
    # Not controls: other scripts, emoji, non-ASCII spaces, zero-width characters, the BOM.
    for text in (
        "\u00e9",
        "\u092e\u0941\u0902\u092c\u0908",
        "\U0001f600",
        "a\u00a0b",
        "a\u200bb",
        "a\u200db",
        "\ufeffa",
    ):
        assert isinstance(parse_record(with_(user_id=text, city=text)), Order), text
    # `behavior` is a label, not shown as an id: only its length is limited.
    assert isinstance(parse_record(with_(behavior="a\x1b[2Jb")), Order)


# ---------------------------------------------------------------- blank records and the byte-order mark


def test_blank_lines_are_skipped():
    assert parse_record(b"") is None
    assert parse_record("   \t") is None
    assert parse_record(b"\r") is None  # the end of a CRLF line
    assert parse_record("\u00a0\u3000\u2028") is None  # Unicode White_Space


def test_only_unicode_white_space_is_blank():
    for text in ("\x1c", "\u200b", "\x00"):
        d = parse_record(text)
        assert isinstance(d, DeadLetter) and d.reason == "invalid_json"


def test_a_byte_order_mark_at_the_start_is_skipped():
    for raw in (BOM + with_(), "\ufeff" + with_().decode()):
        o = parse_record(raw)
        assert isinstance(o, Order) and o.to_dict() == GOOD
    assert parse_record(BOM) is None
    assert parse_record(BOM + b" \r") is None
    assert parse_record("\ufeff") is None


def test_a_byte_order_mark_elsewhere_is_part_of_the_record():
    for raw in (BOM + BOM + with_(), b" " + BOM + with_(), with_() + BOM, "\ufeff\ufeff" + with_().decode()):
        d = parse_record(raw)
        assert isinstance(d, DeadLetter) and d.reason == "invalid_json"


def test_a_byte_order_mark_counts_in_the_size_and_stays_in_the_dead_letter():
    limits = ParseLimits(max_record_bytes=len(with_()))
    assert isinstance(parse_record(with_(), limits), Order)
    d = parse_record(BOM + with_(), limits)
    assert isinstance(d, DeadLetter) and d.reason == "too_large"
    d = parse_record(BOM + b"{oops")
    assert isinstance(d, DeadLetter) and d.reason == "invalid_json" and d.raw == "\ufeff{oops"
    d = parse_record(BOM + b"\xff")
    assert isinstance(d, DeadLetter) and d.reason == "undecodable" and "byte 3" in d.detail


# ---------------------------------------------------------------- dead letters


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "invalid_json"),
        (b'{"a": NaN}', "invalid_json"),
        (b"[1, 2]", "not_an_object"),
        (b'"just a string"', "not_an_object"),
        (b"42", "not_an_object"),
        (b"null", "not_an_object"),
        (with_(user_id=...), "missing_field"),
        (with_(transaction_id=...), "missing_field"),
        (with_(event_time=None), "missing_field"),
        (with_(amount="12.5"), "wrong_type"),
        (with_(amount=True), "wrong_type"),
        (with_(user_id=15), "wrong_type"),
        (with_(event_time=True), "wrong_type"),
        (with_(event_time={}), "wrong_type"),
        (with_(behavior=3), "wrong_type"),
        (with_(amount=-1), "invalid_value"),
        (with_(amount=-1e-300), "invalid_value"),
        (with_(user_id=""), "invalid_value"),
        (with_(device_id="   "), "invalid_value"),
        (with_(city="\u3000\u00a0"), "invalid_value"),
        (with_(event_time=1.5e12), "invalid_value"),
        (with_(event_time=1767225600000.0), "invalid_value"),
        (with_(event_time=2**63), "invalid_value"),
        (with_(event_time="yesterday"), "invalid_value"),
        (with_(event_time="2026-01-01T00:00:00"), "invalid_value"),
        (with_(event_time="2026-01-01T00:00:00Z\n"), "invalid_value"),
        (with_(event_time="\u0662\u0660\u0662\u0666-01-01T00:00:00Z"), "invalid_value"),
        (with_(event_time="0000-01-01T00:00:00Z"), "invalid_value"),
        (with_(event_time="1969-12-31T23:59:59.9995Z"), "invalid_value"),
        (with_(event_time=-5), "invalid_value"),
        (b'{"user_id": "\xff\xfe"}', "undecodable"),
        (b"\xc3\x28 broken", "undecodable"),
        (b'{"x": "\xed\xa0\x80"}', "undecodable"),
        ('{"x": "\ud800"}', "undecodable"),
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
    assert isinstance(d, DeadLetter) and d.reason == "invalid_json"


def test_huge_dead_letters_are_truncated():
    limits = ParseLimits(max_record_bytes=1_000_000, dead_letter_max_chars=100)
    d = parse_record("x" * 5000, limits)
    assert isinstance(d, DeadLetter)
    assert len(d.raw) < 200 and "truncated 4900 chars" in d.raw
