"""The JVM admission (jvm/src: OrderParser, OrderAdmission) decides as the Python one does.

Both implement the event contract (docs/event-contract.md). Every record of a corpus (the spec's
examples, generated orders, legacy producers' records, timestamps in and out of the spec, byte-order
marks, every hostile record of the other tests, edge cases of JSON numbers, strings and UTF-8, and
seeded fuzz) goes through both; verdicts, reason codes, every field of a valid order and the
dead-letter raw text must agree. Details are for people and may be worded differently; only the
admission rules' own details (late, future: the same watermark) are compared.
"""

from __future__ import annotations

import contextlib
import random
import re
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from fraudstream.config import GeneratorSettings
from fraudstream.events import DeadLetter, Order, ParseLimits, parse_record
from fraudstream.events.parse import dead_letter
from fraudstream.flink.functions import AdmitFunction
from fraudstream.generator import generator_from_settings
from fraudstream.jars import jars_dir
from tests.events import test_parse
from tests.flink.conftest import ValueStateStub

pytestmark = pytest.mark.flink

HELPER_JAR = jars_dir(None) / "flink" / "fraudstream-flink.jar"
LIMIT = 65_536
CAP = 300  # dead_letter_max_chars: small, so that truncation is exercised
GOOD = test_parse.GOOD
YEAR = 365 * 86_400_000
FIELDS = ("transaction_id", "user_id", "device_id", "restaurant_id", "amount", "city", "payment_method")


@pytest.fixture(scope="module")
def jvm() -> Any:
    """The gateway JVM (shared with the other Flink tests) with our classes loaded."""
    if not HELPER_JAR.is_file():
        pytest.skip(f"{HELPER_JAR} is missing: run 'make jars'")
    from pyflink.java_gateway import get_gateway
    from pyflink.util.java_utils import add_jars_to_context_class_loader

    from fraudstream.flink.gateway import start_gateway

    start_gateway()
    add_jars_to_context_class_loader([HELPER_JAR.as_uri()])
    return get_gateway().jvm


with_ = test_parse.with_  # GOOD with fields changed (...: removed)


def with_raw(field: str, literal: str) -> bytes:
    """GOOD with one field's value replaced by a JSON literal written out by hand."""
    head = orjson.dumps({k: v for k, v in GOOD.items() if k != field})[:-1]
    return head + f',"{field}":{literal}}}'.encode()


def generated(count: int = 500) -> list[dict[str, Any]]:
    return list(generator_from_settings(GeneratorSettings(seed=1, count=count)).orders(count))


def _parametrized(fn: Any) -> list[Any]:
    """The argument list of a test's @pytest.mark.parametrize, so new cases there are checked here too."""
    return next(m.args[1] for m in fn.pytestmark if m.name == "parametrize")


def legacy_records(orders: list[dict[str, Any]]) -> Iterator[bytes]:
    for i, o in enumerate(orders[:25]):
        d = dict(o)
        d["order_id"] = d.pop("transaction_id")
        d.update(event_id=f"e_{i}", device_type=("android", "ios")[i % 2], is_cod=i % 3 == 0)
        yield orjson.dumps(d)
    yield with_(transaction_id=None, order_id="o_1")
    yield with_(transaction_id=..., order_id=None)
    yield with_(transaction_id=..., order_id=77)
    yield with_(transaction_id=..., order_id=" ")
    yield with_(transaction_id="", order_id="o_1")
    yield with_(transaction_id=5, order_id="o_1")
    yield with_(order_id="o_1")


ISO_TIMES = [
    "2026-01-01T00:00:00Z",
    "2026-01-01T05:30:00+05:30",
    "2026-01-01 00:00:00+00:00",
    "2026-01-01t00:00:00+00:00",
    "20260101T000000Z",
    "20260101T0000Z",
    "2026-01-01T00Z",
    "2026-01-01T00:00:00.123456Z",
    "2026-01-01T00:00:00.1234567Z",
    "2026-01-01T00:00:00.12Z",
    "2026-01-01T00:00:00,5Z",
    "2026-01-01T00:00:00.001Z",
    "2026-01-01T00:00:00.000999Z",
    "2026-01-01T00:00:00-00:00",
    "2026-01-01T00:00:00+23:59",
    "2026-01-01T00:00:00-23:59:59.999999",
    "2026-01-01T00:00:00+24:00",
    "2026-01-01T00:00:00-24:00",
    "2026-01-01T00:00:00+05:99",
    "2026-01-01T00:00:00+99",
    "2026-01-01T00:00:00+05",
    "2026-01-01T00:00:00+0530",
    "2026-01-01T00:00:00+053015",
    "2026-01-01T00:00:00+05:30:15.123456",
    "2026-01-01T00:00:00+00:00:00.5",
    "2026-01-01T00:00:00-00:00:00.5",
    "2026-01-01T00:00:00+00:00:01.5",
    "2026-01-01T00:00:00+05:3",
    "2026-01-01T00:00:00+",
    "2026-01-01T00:00:00-",
    "2026-01-01T00:00:00.Z",
    "2026-01-01T00:00:00.+00:00",
    "2026-01-01T00:00:00ZZ",
    "2026-01-01T00:00:00z",
    "2026-01-01T00:00:00 Z",
    "2026-01-01T24:00:00Z",
    "2026-01-01T23:60:00Z",
    "2026-01-01T23:59:60Z",
    "2026-02-29T00:00Z",
    "2024-02-29T00:00Z",
    "2026-13-01T00:00Z",
    "2026-00-01T00:00Z",
    "2026-01-00T00:00Z",
    "2026-01-01T12:30:45:123Z",
    "2026-01-01T12.5Z",
    "2026-01-01T12:30.5Z",
    "2026-01-01T1230Z",
    "2026-01-01T12:3045Z",
    "2026-01-01T123045.5+0530",
    "2026-01-01T12304512+00:00",
    "2026-01-01T00:00:00.1234567x+05:00",
    "2026-01-01T00:00:00.123abc+05:00",
    "2026-W01-1T00:00Z",
    "2026W011T00Z",
    "2026W01T00Z",
    "2026-W01T00Z",
    "2026-W01",
    "2026W01",
    "2026-W53-1T00:00Z",
    "2020-W53-7T00:00Z",
    "2021-W53-1T00:00Z",
    "2026-W00-1T00:00Z",
    "2026-W01-0T00:00Z",
    "2026-W01-8T00:00Z",
    "2026-W01-",
    "2026-W011T00:00Z",
    "2026W01-1T00:00Z",
    "9999-W52-7T00:00Z",
    "0000-W01-1T00:00Z",
    "1970-01-01T00:00:00Z",
    "1969-12-31T23:59:59.9995Z",
    "1969-12-31T23:59:59.999Z",
    "1970-01-01T00:00:00.0005Z",
    "9999-12-31T23:59:59.999999Z",
    "9999-12-31T23:59:59.999999-00:01",
    "9999-12-31T23:59:59.999999+00:01",
    "0001-01-01T00:00:00Z",
    "0001-01-01T00:00:00+01:00",
    "0000-01-01T00:00Z",
    " 2026-01-01T00:00:00Z\u3000",
    "\u00a02026-01-01T00:00:00Z\n",
    "2026-01-01\u00e900:00Z",
    "2026-01-01\u20ac00:00Z",
    "2026-01-01\U0001f60000:00Z",
    "2026-01-01\u00e9",
    "2026-01-01T\u00e9",
    "\u0662\u0660\u0662\u0666-01-01T00:00Z",
    "2026-01-01T00:00:00Z\u0000",
    "2026-01-01T00:00:00+00:00\u0000junk",
    "2026-01-01T00\u0000",
    "2026-01-01T00:00:00.5\u0000+01:00",
    "2026-01-01",
    "20260101",
    "2026-01-01T00:00",
    "2026-01-01T",
    "2026-01",
    "2026-1-1T00:00Z",
    "2026/01/01T00:00Z",
    "+2026-01-01T00:00Z",
    "yesterday",
    "",
    "   ",
    "Z",
    "ZZZZZZZ",
    "'quoted'",
    '"double"',
    'it\'s "both"\\',
    "tab\there\x7f\x85\u200b\ue000\U0001f600" + "x" * 80,
]


def iso_fuzz(n: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    alphabet = "0123456789-:T+Z.,W \x00\u00e9\u3000\U0001f600"
    templates = [t for t in ISO_TIMES if len(t) >= 7]
    out = []
    for _ in range(n):
        s = list(rng.choice(templates))
        for _ in range(rng.randint(1, 3)):
            op = rng.random()
            i = rng.randrange(len(s) + 1)
            if op < 0.4 and i < len(s):
                s[i] = rng.choice(alphabet)
            elif op < 0.7 and i < len(s):
                del s[i]
            else:
                s.insert(i, rng.choice(alphabet))
        out.append("".join(s))
    return out


def iso_generated(n: int, seed: int = 13) -> list[str]:
    """Times in many ISO 8601 layouts (most outside the spec's RFC 3339 subset), with odd values mixed in."""
    rng = random.Random(seed)

    def num(width: int, top: int) -> str:
        return str(rng.randint(0, top)).zfill(width)

    out = []
    for _ in range(n):
        year = num(4, 9999) if rng.random() < 0.2 else str(rng.randint(1960, 2100))
        week, wday = num(2, 54), num(1, 8)
        month, day = num(2, 13), num(2, 32)
        date = rng.choice(
            [
                f"{year}-{month}-{day}",
                f"{year}{month}{day}",
                f"{year}-W{week}",
                f"{year}-W{week}-{wday}",
                f"{year}W{week}",
                f"{year}W{week}{wday}",
            ]
        )
        if rng.random() < 0.6:
            month, day = f"{rng.randint(1, 12):02d}", f"{rng.randint(1, 28):02d}"
            date = f"{year}-{month}-{day}"
        hh, mm, ss = num(2, 24), num(2, 60), num(2, 60)
        clock = rng.choice([hh, f"{hh}:{mm}", f"{hh}{mm}", f"{hh}:{mm}:{ss}", f"{hh}{mm}{ss}"])
        if rng.random() < 0.5:
            clock = f"{hh}:{mm}:{ss}"
        if rng.random() < 0.5:
            clock += rng.choice(".,") + "".join(rng.choice("0123456789") for _ in range(rng.randint(0, 9)))
        th, tm = num(2, 25), num(2, 61)
        zone = rng.choice(
            [
                "",
                "Z",
                f"+{th}",
                f"-{th}:{tm}",
                f"+{th}{tm}",
                f"-{th}:{tm}:{num(2, 59)}",
                f"+{th}:{tm}:{num(2, 59)}.{num(6, 999999)}",
                "+00:00",
                "-00:00",
            ]
        )
        sep = rng.choice(["T", "T", "T", " ", "t", "\u00e9", "-", "0", ""])
        out.append(date + (sep + clock + zone if rng.random() < 0.95 else ""))
    return out


def rfc3339_generated(n: int, seed: int = 17) -> list[str]:
    """Timestamps in the spec's own layout, over the whole range, some with impossible fields."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        year = rng.choice([rng.randint(1969, 2100), rng.randint(0, 9999), 1970, 9999])
        month, day = rng.randint(0 if rng.random() < 0.03 else 1, 12), rng.randint(1, 31)
        clock = f"{rng.randint(0, 24 if rng.random() < 0.03 else 23):02d}:{rng.randint(0, 59):02d}"
        clock += f":{rng.randint(0, 60 if rng.random() < 0.03 else 59):02d}"
        if rng.random() < 0.6:
            clock += "." + "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 12)))
        zone = rng.choice(
            ["Z", "z", "+00:00", "-00:00", f"{rng.choice('+-')}{rng.randint(0, 24):02d}:{rng.randint(0, 60):02d}"]
        )
        out.append(f"{year:04d}-{month:02d}-{day:02d}{rng.choice('TTTt ')}{clock}{zone}")
    return out


def json_edge_cases() -> Iterator[bytes]:
    # duplicate keys: the last one wins
    yield b'{"amount": "x", ' + with_()[1:]
    yield with_()[:-1] + b', "amount": -5}'
    yield with_()[:-1] + b', "user_id": null}'
    yield with_()[:-1] + b', "transaction_id": 1}'
    # numbers written as integers, as fractions, beyond a double, or not JSON at all
    for literal in (
        "-0",
        "-0.0",
        "0",
        "1e-400",
        "1E2",
        "2.5e-324",
        "1e308",
        "1e309",
        "-1e400",
        "123456789012345678901234567890",
        "9223372036854775807",
        "9223372036854775808",
        "18446744073709551615",
        "18446744073709551616",
        "-9223372036854775808",
        "-9223372036854775809",
        "-18446744073709551616",
        "9007199254740993",
        "0.1",
        "287.49999999999999999999",
        "1" + "0" * 308,
        "1" + "0" * 309,
        str(2**1024 - 2**970),
        str(2**1024 - 2**970 - 1),
        "1" * 500,
        "0." + "0" * 2000 + "1",
        "1." + "1" * 3000,
        "0e999999999999",
        "1e-99999999999999999999",
        "NaN",
        "Infinity",
        "-Infinity",
        "nan",
        "1.",
        ".5",
        "01",
        "+1",
        "0x10",
        "1e",
        "-",
        "true",
        "false",
        "null",
        "[]",
        "{}",
        '"12.5"',
        '""',
    ):
        for field in ("amount", "event_time"):
            yield with_raw(field, literal)
    for value in (0, -1, 253_402_300_799_999, 253_402_300_799_999 + 1, 1.0, 1767225600000.0, -0.0, True, False):
        yield with_(event_time=value)
    for value in (0, 0.0, -0.0, 1e-300, 1e300, -1e-300, -0.5, -1e16, -1e15, -1.5e-5, -123.456, 10**19, True):
        yield with_(amount=value)
    # strings
    for name in ("user_id", "behavior", "transaction_id", "city"):
        for value in (
            "x" * 256,
            "x" * 257,
            "\U0001f600" * 256,
            "\U0001f600" * 257,
            "\u00e9" * 257,
            "\u3000\u00a0\u2028\u0085",
            "\u200b",
            "\x00",
            " a ",
            3,
            1.5,
            True,
            [],
            {},
            None,
        ):
            yield with_(**{name: value})
    yield with_raw("user_id", '"\\ud800"')
    yield with_raw("user_id", '"\\udc00"')
    yield with_raw("user_id", '"\\ud83d\\ude00"')
    yield with_raw("user_id", '"\\ud83d\\ud83d\\ude00"')
    yield with_raw("user_id", '"\\u0075\\u005f"')
    yield with_raw("other", '{"\\ud800": 1}')
    yield with_raw("other", '["\\udfff"]')
    yield with_raw("other", "[1e400]")
    yield with_raw("other", '{"a": [1, {"b": 1' + "0" * 400 + "}]}")
    yield with_raw("user_id", '"a\x1fb"')
    yield with_raw("user_id", '"a\x7fb"')
    yield with_raw("user_id", '"\\x41"')
    yield with_raw("user_id", '"\\/"')
    # control characters, refused in ids (not in behavior), and their neighbours, accepted
    controls = (*range(0x20), *range(0x7F, 0xA0), 0x061C, 0x200E, 0x200F, 0x2028, 0x2029, *range(0x202A, 0x202F))
    near = (0x20, 0x7E, 0xA0, 0x061B, 0x061D, 0x200D, 0x2010, 0x2027, 0x202F, 0x2065, 0x206A, 0xFEFF, 0x1F600)
    for code in (*controls, *range(0x2066, 0x206A), *near):
        for name in ("transaction_id", "city", "behavior"):
            yield with_(**{name: f"x{chr(code)}y"})
    yield b'{"user\\u005fid": "u"}'
    # documents
    yield from (
        b"{}",
        b"[]",
        b"null",
        b"true",
        b"1.5",
        b"-0",
        b'""',
        b'"x"',
        b"{}{}",
        b"{} {}",
        b"1 2",
        b"{}x",
        b"[1]]",
        b"{,}",
        b'{"a":1,}',
        b"[1,]",
        b"/* c */{}",
        b"#\n{}",
        b"{'a': 1}",
        b"{a: 1}",
        b"\xef\xbb\xbf" + with_(),
        b"\x0b" + with_(),
        with_() + b"\x0c",
        with_() + b"\x00",
        b"\x00",
        b" \t\r\n" + with_() + b" \t\r\n",
        "\u00a0".encode() + with_(),
        with_() + "\u2028".encode(),
        b"[" * 1024 + b"]" * 1024,
        b"[" * 1025 + b"]" * 1025,
        b'{"a":' * 1023 + b"1" + b"}" * 1023,
        b'{"a":' * 1024 + b"1" + b"}" * 1024,
        b'{"a":' * 1025 + b"1" + b"}" * 1025,
        with_()[:-1] + b', "deep": ' + b"[" * 1023 + b"]" * 1023 + b"}",
        with_()[:-1] + b', "deep": ' + b"[" * 1024 + b"]" * 1024 + b"}",
        b"[" * 3000,
        with_()[:40],
    )
    # blanks (Unicode White_Space, not only JSON's) and near-blanks
    for blank in ("", " ", "\t\n\r", "\x0b\x0c\x1c\x1d\x1e\x1f", "\u00a0\u3000\u2028\u2029\u0085\u1680\u202f"):
        yield blank.encode()
    yield "\u200b".encode()
    yield b" " * 70_000


def utf8_cases(n: int, seed: int = 11) -> Iterator[bytes]:
    """Invalid (and valid) UTF-8, alone and inside a string value (and U+FFFD in the dead letter)."""
    fixed = [
        b"\x80",
        b"\xbf",
        b"\xc0\x80",
        b"\xc1\xbf",
        b"\xc2",
        b"\xc2\x41",
        b"\xe0\x80\x80",
        b"\xe0\xa0",
        b"\xe0\xa0\x41",
        b"\xed\xa0\x80",
        b"\xed\xbf\xbf",
        b"\xed\x9f\xbf",
        b"\xef\xbf\xbf",
        b"\xef\xbf\xbd",  # U+FFFD itself: valid
        b"\xf0\x80\x80\x80",
        b"\xf0\x90",
        b"\xf0\x90\x80",
        b"\xf0\x90\x41",
        b"\xf0\x90\x80\x41",
        b"\xf4\x8f\xbf\xbf",
        b"\xf4\x90\x80\x80",
        b"\xf5\x80\x80\x80",
        b"\xff",
        b"\xfe\xff",
    ]
    rng = random.Random(seed)
    pool = [0x41, 0x80, 0x9F, 0xA0, 0xBF, 0xC2, 0xDF, 0xE0, 0xED, 0xEF, 0xF0, 0xF4, 0xF5, 0xFF]
    fuzz = [bytes(rng.choice(pool) for _ in range(rng.randint(1, 6))) for _ in range(n)]
    for junk in fixed + fuzz:
        yield junk
        yield b'{"user_id": "' + junk + b'"}'
        yield with_()[:-1] + b', "x": "' + junk + b'"}'


def poison_records(template: dict[str, Any]) -> list[bytes]:
    """The hostile records of tests/kafka/test_recovery.py's poison test (the size one shrunk)."""
    now = int(time.time() * 1000)
    return [
        b'{"transaction_id": "p1", "amount": ',
        orjson.dumps({**template, "transaction_id": "p2", "amount": "12.50"}),
        orjson.dumps({**template, "transaction_id": "p3", "user_id": 42}),
        orjson.dumps({**template, "transaction_id": "p4"}).replace(b'"amount":', b'"amount":NaN,"x":'),
        orjson.dumps({**template, "transaction_id": "p5", "amount": -99.0}),
        b'{"transaction_id": "p6", "user_id": "\xc3\x28"}',
        b'{"pad": "' + b"x" * (LIMIT - 10) + b'"}',
        orjson.dumps({**template, "transaction_id": "p8", "event_time": now + YEAR}),
        b"[1, 2, 3]",
    ]


def json_mutations(valid: list[bytes], n: int, seed: int = 3) -> Iterator[bytes]:
    rng = random.Random(seed)
    alphabet = b'{}[]",:.-+eE0123456789 \\nultrfa\x00\x1f\x7f\xc3\xa9'
    for _ in range(n):
        s = bytearray(rng.choice(valid))
        for _ in range(rng.randint(1, 2)):
            i = rng.randrange(len(s))
            op = rng.random()
            if op < 0.4:
                s[i] = rng.choice(alphabet)
            elif op < 0.7:
                del s[i]
            else:
                s.insert(i, rng.choice(alphabet))
        yield bytes(s)


BOM = test_parse.BOM


def bom_records() -> list[bytes]:
    return [
        BOM + with_(),
        BOM,
        BOM + b" \r",
        BOM + BOM + with_(),
        b" " + BOM + with_(),
        with_() + BOM,
        BOM + b"{oops",
        BOM + b"\xff",
        BOM + b"[1]",
        BOM[:2] + with_(),
        "\ufeff".encode() + with_(transaction_id="t_bom"),
    ]


def corpus() -> list[bytes]:
    orders = generated()
    valid = [orjson.dumps(o) for o in orders]
    records = [raw for _, raw, _, _ in test_parse.EXAMPLES]
    records += bom_records()
    records += valid
    records += legacy_records(orders)
    records += [with_(event_time=t) for t in ISO_TIMES + iso_fuzz(300) + iso_generated(500) + rfc3339_generated(500)]
    # (a str there stands for text the JVM never gets: lone surrogates)
    records += [
        raw for raw, _ in _parametrized(test_parse.test_bad_records_become_dead_letters) if isinstance(raw, bytes)
    ]
    records += [orjson.dumps(GOOD).replace(b"287.5", b"NaN"), orjson.dumps(GOOD).replace(b"287.5", b"1e400")]
    records += [b"", b"   \t"]
    records += poison_records(orders[0])
    records += json_edge_cases()
    records += utf8_cases(150)
    records += json_mutations(valid[:50], 300)
    return records


def java_view(parsed: Any) -> Any:
    """The Java result in Python's terms: None, an Order or a (reason, detail) pair."""
    if parsed is None:
        return None
    if not parsed.isValid():
        return (parsed.getReason(), parsed.getDetail())
    return Order(
        transaction_id=parsed.getTransactionId(),
        user_id=parsed.getUserId(),
        device_id=parsed.getDeviceId(),
        restaurant_id=parsed.getRestaurantId(),
        amount=parsed.getAmount(),
        city=parsed.getCity(),
        payment_method=parsed.getPaymentMethod(),
        event_time=parsed.getEventTime(),
        behavior=parsed.getBehavior(),
    )


def same_order(a: Order, b: Order) -> bool:
    return (
        all(getattr(a, f) == getattr(b, f) for f in FIELDS)
        and type(a.event_time) is int
        and a.event_time == b.event_time
        and a.behavior == b.behavior
        and float(a.amount) == float(b.amount)
    )


def collapsed(text: str) -> str:
    """Dead-letter raw text with each run of U+FFFD as one: the spec leaves their count open."""
    return re.sub("\ufffd+", "\ufffd", text)


def mismatch(raw: bytes, limit: int, parser: Any) -> str | None:
    """Why Java disagrees with Python on one record (None when they agree)."""
    expected = parse_record(raw, ParseLimits(max_record_bytes=limit, dead_letter_max_chars=CAP), now_ms=0)
    got = java_view(parser.parse(raw, limit))
    shown = repr(raw[:120])
    if expected is None or got is None:
        return None if expected is got else f"{shown}: python {expected!r}, java {got!r}"
    if isinstance(expected, Order):
        if isinstance(got, Order) and same_order(got, expected):
            return None
        return f"{shown}: python {expected!r}, java {got!r}"
    reason = got[0] if isinstance(got, tuple) else None
    if reason != expected.reason:
        return f"{shown}: python {expected.reason} ({expected.detail}), java {got!r}"
    raw_text = parser.deadLetterRaw(raw, CAP)
    if collapsed(raw_text) != collapsed(expected.raw):
        return f"{shown}: dead-letter raw differs: python {expected.raw!r}, java {raw_text!r}"
    return None


def test_java_parser_decides_every_record_as_python_does(jvm):
    parser = jvm.io.fraudstream.flink.OrderParser
    records = corpus()
    checked = [(raw, LIMIT) for raw in records]
    # the size limit applies to the bytes, before anything is decoded
    checked += [(raw, limit) for raw in (with_(), b"\xff" * 11, b" " * 11, b"") for limit in (10, 11, len(with_()))]
    problems = [m for raw, limit in checked if (m := mismatch(raw, limit, parser)) is not None]
    assert not problems, f"{len(problems)} of {len(checked)} records differ:\n" + "\n".join(problems[:30])
    outcomes = {type(parse_record(raw)).__name__ for raw in records}
    assert outcomes == {"Order", "DeadLetter", "NoneType"}


def test_java_parser_decides_the_spec_examples(jvm):
    """The spec's table itself, not only agreement with Python."""
    parser = jvm.io.fraudstream.flink.OrderParser
    for number, raw, verdict, fields in test_parse.EXAMPLES:
        got = java_view(parser.parse(raw, LIMIT))
        kind = "skipped" if got is None else "order" if isinstance(got, Order) else got[0]
        assert kind == verdict, (number, got)
        if isinstance(got, Order):
            parsed = {name: getattr(got, name) for name in (*test_parse.PARSED, "behavior")}
            assert parsed == test_parse.expected_order(fields), number


def test_dead_letter_raw_text_is_truncated_by_code_points(jvm):
    parser = jvm.io.fraudstream.flink.OrderParser
    for raw in (b"x" * 5000, "\U0001f600".encode() * 500, b"\xff" * 400, "é".encode() * 300, b"a" * CAP, b""):
        for cap in (64, CAP, 4096):
            expected = dead_letter(
                "invalid_json", "", raw.decode("utf-8", "replace"), ParseLimits(dead_letter_max_chars=cap)
            )
            assert parser.deadLetterRaw(raw, cap) == expected.raw


def python_admission(records: list[bytes], bound: int, max_future: int) -> list[tuple[str, Any]]:
    fn = AdmitFunction(ParseLimits(dead_letter_max_chars=CAP), bound, raw_latin1=False, max_future_ms=max_future)
    fn.max_seen = ValueStateStub()
    out: list[tuple[str, Any]] = []
    for raw in records:
        for item in fn.process_element(("reader-0", raw), None):
            if isinstance(item, tuple):
                d: DeadLetter = item[1]
                out.append(("dead", (d.reason, d.detail, d.raw, d.event_time)))
            else:
                out.append(("order", item))
    return out


def admission_stream(n: int = 400, seed: int = 5) -> list[bytes]:
    """Orders with jittered, sometimes far out-of-order, sometimes future event times, plus junk."""
    rng = random.Random(seed)
    now = int(time.time() * 1000)
    t = now - YEAR
    records = []
    for i in range(n):
        t += rng.randint(0, 2_000)
        roll = rng.random()
        if roll < 0.15:
            et = t - rng.randint(0, 12_000)  # around the bound: late or not
        elif roll < 0.2:
            et = now + 2 * YEAR  # future
        elif roll < 0.22:
            et = t + 5_000  # ahead, moves the watermark
        else:
            et = t
        records.append(with_(transaction_id=f"t_{i}", event_time=et))
        if roll > 0.97:
            records.append(b"{junk")
        if roll > 0.99:
            records.append(b"  ")
    return records


@pytest.mark.parametrize(("bound", "max_future"), [(5_000, YEAR), (0, 0), (10_000, 0)])
def test_java_lateness_matches_python_admit_function(jvm, bound, max_future):
    flink = jvm.io.fraudstream.flink
    parser = flink.OrderParser
    rule = flink.OrderAdmission.Lateness(bound, max_future)
    records = admission_stream()
    expected = python_admission(records, bound, max_future)
    got: list[tuple[str, Any]] = []
    for raw in records:
        view = java_view(parser.parse(raw, LIMIT))
        if view is None:
            continue
        if isinstance(view, tuple):
            got.append(("dead", (*view, parser.deadLetterRaw(raw, CAP), None)))
            continue
        rejection = rule.admit(view.event_time, int(time.time() * 1000))
        if rejection is None:
            got.append(("order", view))
        else:
            got.append(
                (
                    "dead",
                    (rejection.getReason(), rejection.getDetail(), parser.deadLetterRaw(raw, CAP), view.event_time),
                )
            )
    reasons = {x[1][0] for x in expected if x[0] == "dead"}
    assert ("late" in reasons) and (("future" in reasons) == (max_future > 0))
    assert len(got) == len(expected)
    for (kind, value), (want_kind, want) in zip(got, expected, strict=True):
        assert kind == want_kind, (value, want)
        if kind == "order":
            assert same_order(value, want)
        elif want[0] in ("late", "future"):
            assert value == want
        else:
            assert value[0] == want[0] and value[2:] == want[2:]


@pytest.mark.parametrize("max_future", [1_000, 300_000, 0])
def test_a_restored_newest_time_far_ahead_is_dropped_alike_in_java_and_python(jvm, max_future):
    """A checkpoint made under a laxer limit restores a newest time six days ahead, beyond the
    clock + skew this limit allows: both sides drop it and start afresh (0: no limit, still
    blind), then judge the same orders alike."""
    bound, day = 5_000, 86_400_000
    now = int(time.time() * 1000)
    restored = now + 6 * day
    rule = jvm.io.fraudstream.flink.OrderAdmission.Lateness(bound, max_future)
    rule.restore(restored)
    fn = AdmitFunction(ParseLimits(dead_letter_max_chars=CAP), bound, raw_latin1=False, max_future_ms=max_future)
    fn.max_seen = ValueStateStub()
    fn.max_seen.update(restored)
    # Honest orders 10 to 6 minutes old (published while the job was down), one just inside the
    # skew, one an hour behind, one a week ahead.
    times = [now - 600_000 + i * 12_000 for i in range(20)]
    times += [now + max_future - 2_000, now - 3_600_000, now + 7 * day]
    python, java = [], []
    for t in times:
        rejection = rule.admit(t, int(time.time() * 1000))
        java.append("order" if rejection is None else rejection.getReason())
        out = list(fn.process_element(("reader-0", with_(event_time=t)), None))
        python.append(out[0][1].reason if isinstance(out[0], tuple) else "order")
    assert java == python
    if max_future:
        assert java == ["order"] * 21 + ["late", "future"]
        assert rule.getMaxSeen() == fn.max_seen.value() == now + max_future - 2_000
    else:
        assert java == ["late"] * 22 + ["order"]
        assert rule.getMaxSeen() == fn.max_seen.value() == now + 7 * day


def test_order_admission_runs_on_flink(jvm):
    """The operator itself on the mini-cluster: rows and dead letters, typed as declared."""
    from pyflink.common import Configuration, Types
    from pyflink.datastream import DataStream, StreamExecutionEnvironment
    from pyflink.datastream.data_stream import CloseableIterator

    conf = Configuration()
    conf.set_string("pipeline.jars", HELPER_JAR.as_uri())
    env = StreamExecutionEnvironment.get_execution_environment(conf)
    env.set_parallelism(1)
    bound, max_future = 5_000, YEAR
    # A file exported on Windows starts with a byte-order mark: its first order is admitted.
    stream = admission_stream(120)
    records = [BOM + stream[0], *stream[1:], b"\xff{", '{"x": "\u00e9"}'.encode()]
    # As the file source hands them over: text whose ISO-8859-1 characters stand for the bytes.
    lines = env.from_collection([r.decode("latin-1") for r in records], type_info=Types.STRING())
    flink = jvm.io.fraudstream.flink
    admitted = lines._j_data_stream.map(flink.StringToBytes("ISO-8859-1")).process(
        flink.OrderAdmission(LIMIT, CAP, bound, max_future, True), flink.OrderAdmission.orderType()
    )
    dead = DataStream(admitted.getSideOutput(flink.OrderAdmission.DEAD_LETTERS))
    orders = DataStream(admitted)
    order_it = CloseableIterator(admitted.collectAsync(), orders.get_type())
    dead_it = CloseableIterator(dead._j_data_stream.collectAsync(), dead.get_type())
    before = int(time.time() * 1000)
    env.execute("order-admission")
    with order_it, dead_it:
        got_orders = list(order_it)
        got_dead = list(dead_it)
    after = int(time.time() * 1000)

    expected = python_admission(records, bound, max_future)
    want_orders = [v for k, v in expected if k == "order"]
    want_dead = [v for k, v in expected if k == "dead"]
    assert [tuple(r)[:9] for r in got_orders] == [
        (
            o.transaction_id,
            o.user_id,
            o.device_id,
            o.restaurant_id,
            o.amount,
            o.city,
            o.payment_method,
            o.event_time,
            o.behavior,
        )
        for o in want_orders
    ]
    # each order carries the record it came from, as received
    by_id = {}
    for r in records:
        with contextlib.suppress(orjson.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
            by_id[orjson.loads(r.removeprefix(BOM))["transaction_id"]] = r.decode()
    assert [r[9] for r in got_orders] == [by_id[r[0]] for r in got_orders]
    assert [(r[0], r[2], r[4]) for r in got_dead] == [(d[0], d[2], d[3]) for d in want_dead]
    timing = ("late", "future")
    assert [r[1] for r in got_dead if r[0] in timing] == [d[1] for d in want_dead if d[0] in timing]
    assert all(before - 60_000 <= r[3] <= after for r in got_dead)
    assert {d[0] for d in want_dead} >= {"late", "future", "invalid_json", "undecodable"}
    assert want_orders[0].transaction_id == "t_0"  # the first record, after its byte-order mark


def test_max_seen_survives_a_checkpoint_and_restore(jvm):
    """Operator state through a real snapshot and restore: the restored subtask judges from the
    newest time admitted before the checkpoint, as an uninterrupted one would."""
    rt = jvm.org.apache.flink.runtime
    flink = jvm.io.fraudstream.flink
    bound = 5_000
    max_seen = jvm.org.apache.flink.api.common.state.ListStateDescriptor(
        "max_seen", jvm.org.apache.flink.api.common.typeinfo.Types.LONG
    )

    def start(handles: Any) -> tuple[Any, Any]:
        store = rt.state.DefaultOperatorStateBackendBuilder(
            jvm.Thread.currentThread().getContextClassLoader(),
            jvm.org.apache.flink.api.common.ExecutionConfig(),
            False,
            handles,
            jvm.org.apache.flink.core.fs.CloseableRegistry(),
        ).build()
        empty = jvm.java.util.ArrayList()
        admission = flink.OrderAdmission(LIMIT, CAP, bound, 0)
        restored = 1 if handles.size() else None
        admission.initializeState(rt.state.StateInitializationContextImpl(restored, store, None, empty, empty))
        return admission, store

    def admit(admission: Any, t: int) -> list[int]:
        out = jvm.java.util.ArrayList()
        collector = jvm.org.apache.flink.api.common.functions.util.ListCollector(out)
        # No context: only admitted orders (which never touch it) are sent here.
        admission.processElement(with_(event_time=t), None, collector)
        return [out.get(i).getField(7) for i in range(out.size())]

    def checkpoint(admission: Any, store: Any) -> tuple[Any, list[int]]:
        admission.snapshotState(None)
        state = store.getListState(max_seen).get().iterator()
        values = []
        while state.hasNext():
            values.append(state.next())
        future = store.snapshot(
            1,
            0,
            rt.state.memory.MemCheckpointStreamFactory(1 << 20),
            rt.checkpoint.CheckpointOptions.forCheckpointWithDefaultLocation(),
        )
        future.run()
        handles = jvm.java.util.ArrayList()
        handles.add(future.get().getJobManagerOwnedSnapshot())
        return handles, values

    first, store = start(jvm.java.util.ArrayList())
    assert checkpoint(first, store)[1] == []
    assert admit(first, 100_000) == [100_000]
    assert admit(first, 100_000 - bound) == [100_000 - bound]
    handles, values = checkpoint(first, store)
    assert values == [100_000]

    second, store = start(handles)
    # On time only against the restored newest time; a lost one would make it the newest.
    assert admit(second, 100_000 - bound) == [100_000 - bound]
    assert checkpoint(second, store)[1] == [100_000]
    assert admit(second, 100_001) == [100_001]
    assert checkpoint(second, store)[1] == [100_001]
