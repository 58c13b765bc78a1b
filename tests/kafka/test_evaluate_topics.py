"""`fraudstream evaluate` reading labelled events and alerts straight from topics."""

from __future__ import annotations

import subprocess
import sys
import time

import orjson
import pytest

from fraudstream.detectors import HighValueDetector
from fraudstream.events import parse_record
from fraudstream.kafka.clients import read_topic
from tests.conftest import BASE, make_order
from tests.kafka.conftest import kafka_flags, send

# Too slow for `make check` (under a minute, no Flink): evaluate over the topics of a real broker: `make test` runs it.
pytestmark = pytest.mark.slow


def test_evaluate_reads_the_raw_and_alerts_topics(kafka):
    # 4 honest orders and 3 takeover actors over 4 partitions; 2 actors caught, 1 false alert
    events = [
        make_order(BASE + i, f"u_h{i}", amount=1800.0 if i == 0 else 200.0, tx=f"h{i}").to_dict() for i in range(4)
    ]
    events += [
        make_order(BASE + 10 + i, f"u_f{i}", amount=5000.0, tx=f"f{i}").to_dict()
        | {"behavior": "high_value", "fraud_actor": f"high_value-{i}"}
        for i in range(3)
    ]
    send(kafka, [(i % 4, None, orjson.dumps(e)) for i, e in enumerate(events)] + [(1, None, b"{not json")])
    rule = HighValueDetector(1500.0)
    alerts = [rule.alert(parse_record(orjson.dumps(e))) for e in (events[0], events[4], events[5])]
    send(kafka, [(None, a.key.encode(), orjson.dumps(a.to_dict())) for a in alerts], topic=kafka.alerts_topic)

    started = time.monotonic()
    assert len(list(read_topic(kafka, kafka.raw_topic))) == len(events) + 1  # to the end, then stop
    assert time.monotonic() - started < 5  # without waiting out the idle limit

    proc = subprocess.run(
        [sys.executable, "-m", "fraudstream", *kafka_flags(kafka), "evaluate", "--events", "kafka", "--alerts",
         f"kafka:{kafka.alerts_topic}", "--json"],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = orjson.loads(proc.stdout)
    assert report["counts"]["honest_orders"] == 4 and report["counts"]["fraud_events"] == 3
    row = next(r for r in report["detectors"] if r["detector"] == "HIGH_VALUE_FRAUD")
    assert (row["alerts"], row["true_alerts"], row["actors_caught"], row["actors"]) == (3, 2, 2, 3)
    assert row["false_per_1k_honest"] == 1000 / 4
