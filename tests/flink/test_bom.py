"""A file exported on Windows (a UTF-8 byte-order mark, CRLF line ends) loses no order.

The file source hands lines over as ISO-8859-1 text, so the mark reaches admission as the three
characters 'ï»¿'; both engines turn them back into bytes and skip the mark (docs/event-contract.md).
"""

from __future__ import annotations

import orjson
import pytest

from fraudstream.events import DeadLetter, Order, ParseLimits
from fraudstream.flink.functions import AdmitFunction
from tests.flink.conftest import ValueStateStub, run_file

pytestmark = pytest.mark.flink

BASE = 1_767_225_600_000
MIN = 60_000
BOM = b"\xef\xbb\xbf"


def order(tx: str, t: int, user: str, amount: float = 300.0) -> bytes:
    return orjson.dumps(
        {
            "transaction_id": tx, "user_id": user, "device_id": f"d_{user}", "restaurant_id": "r_1",
            "amount": amount, "city": "Mumbai", "payment_method": "UPI", "event_time": t,
        }
    )  # fmt: skip


# The first order, right after the mark, is the only one large enough for an alert.
LINES = [
    BOM + order("w1", BASE, "u_w", amount=2000.0),
    order("w2", BASE + MIN, "u_w"),
    b"",
    order("w3", BASE + 2 * MIN, "u_x"),
]
WINDOWS_FILE = b"".join(line + b"\r\n" for line in LINES)


def test_the_datastream_admission_skips_the_mark_of_a_file_line():
    """AdmitFunction as the file source feeds it (no Flink needed): ISO-8859-1 lines."""
    fn = AdmitFunction(ParseLimits(), 5_000, raw_latin1=True)
    fn.max_seen = ValueStateStub()
    lines = WINDOWS_FILE.decode("latin-1").split("\n")[:-1]
    assert lines[0].startswith("ï»¿{")
    out = [item for line in lines for item in fn.process_element(("reader-0", line), None)]
    assert not [item for item in out if isinstance(item, tuple) and isinstance(item[1], DeadLetter)]
    assert [o.transaction_id for o in out if isinstance(o, Order)] == ["w1", "w2", "w3"]


def test_a_windows_export_loses_no_order(tmp_path):
    """One run of the real job (the default, SQL engine: admission in the JVM) over the file."""
    path = tmp_path / "windows.jsonl"
    path.write_bytes(WINDOWS_FILE)
    result = run_file(path, tmp_path, **{"detectors.high_value_threshold": 1500.0})
    assert result.dead == []
    assert {(a.alert_type, a.transaction_id) for a in result.alerts} == {("HIGH_VALUE_FRAUD", "w1")}
