"""`fraudstream alerts tail` against a real broker: foreign records on the alerts topic."""

from __future__ import annotations

import re

import orjson
import pytest

from fraudstream.events.text import CONTROL_CLASS
from fraudstream.kafka.tail import tail_alerts
from tests.cli.test_hostile_text import hostile_alert
from tests.kafka.conftest import send

# Too slow for `make check` (under a minute, no Flink): the session broker's start and the tail against it; `make test` runs it.
pytestmark = pytest.mark.slow


def test_tail_survives_malformed_alerts_and_shows_hostile_text_escaped(kafka):
    hostile = orjson.dumps(hostile_alert().to_dict())
    good = orjson.dumps(hostile_alert().to_dict() | {"user_id": "u_1", "key": "u_1", "alert_id": "a_last"})
    records = [
        hostile,
        b'{"user_id": [1]}',
        b'{"amount": "oops"}',
        hostile.replace(b'"amount":2000.0', b'"amount":"oops"'),
    ]
    records += [b"\x1b]0;pwned\x07 not json", None, good]
    send(kafka, [(0, b"k", value) for value in records], topic=kafka.alerts_topic)
    lines: list[str] = []
    shown = tail_alerts(kafka, lines.append, from_beginning=True, max_alerts=len(records), idle_timeout_s=30)
    assert shown == len(records), lines
    assert not [line for line in lines if re.search(f"[{CONTROL_CLASS}]", line)], lines
    assert lines[0].startswith("ALERT MEDIUM") and "user=u_9\\x1b]0;pwned\\x07\\n" in lines[0]
    unreadable = [f"UNREADABLE alert at partition 0 offset {n}" for n in range(1, 6)]
    assert [line.split(":")[0] for line in lines[1:-1]] == unreadable
    assert lines[1].endswith('| {"user_id": [1]}') and "'amount' is not a number" in lines[3]
    assert lines[-1].startswith("ALERT MEDIUM") and "id=a_last" in lines[-1]
