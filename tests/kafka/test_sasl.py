"""The same commands against a broker that requires a login (SASL/PLAIN), as a managed Kafka does:
every client, the Python tools and the Java one inside Flink, takes its security settings from
configuration."""

from __future__ import annotations

import subprocess
import sys
import uuid

import orjson
import pytest

from fraudstream.config import BrokerSettings
from fraudstream.kafka.broker import LocalBroker
from fraudstream.kafka.clients import connect_admin, ensure_topics
from fraudstream.kafka.tail import alert_from_json
from tests.flink.test_job import BASE, MIN, order
from tests.kafka.conftest import consume, free_port, kafka_flags

pytestmark = pytest.mark.flink
EXE = [sys.executable, "-m", "fraudstream"]


@pytest.fixture(scope="module")
def secured_broker(tmp_path_factory):
    cfg = BrokerSettings(port=free_port(), controller_port=free_port(), sasl_users={"fraud": "s3cret", "ops": "0ps"})
    broker = LocalBroker(cfg, tmp_path_factory.mktemp("sasl-broker"))
    broker.start()
    tag = uuid.uuid4().hex[:8]
    k = broker.kafka_settings().model_copy(
        update={"raw_topic": f"raw-{tag}", "alerts_topic": f"alerts-{tag}", "dead_letter_topic": f"dlq-{tag}"}
    )
    ensure_topics(connect_admin(k), {k.raw_topic: 2, k.alerts_topic: 2, k.dead_letter_topic: 1})
    yield broker, k
    assert broker.stop()


@pytest.fixture
def secured(secured_broker):
    return secured_broker[1]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*EXE, *args], capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)


def test_producer_job_and_tail_log_in_with_configured_credentials(secured, tmp_path):
    k = secured
    lines = [orjson.dumps(order(f"v{i}", BASE + i * MIN, "u_v", "d_v")) for i in range(4)]
    lines.append(orjson.dumps(order("h1", BASE + 5 * MIN, "u_h", "d_h", amount=5000.0)))
    path = tmp_path / "orders.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    produced = _cli(*kafka_flags(k), "produce", "--kafka", "--topic", k.raw_topic, "--from-file", str(path))
    assert produced.returncode == 0, produced.stderr
    run = _cli("--data-dir", str(tmp_path / "d"), *kafka_flags(k), "run", "--source", "kafka", "--bounded")
    assert run.returncode == 0, run.stderr[-2000:]
    alerts = [alert_from_json(v) for _, _, v in consume(k, k.alerts_topic, expect=2)]
    assert sorted((a.alert_type, a.transaction_id) for a in alerts) == [
        ("HIGH_VALUE_FRAUD", "h1"),
        ("VELOCITY_FRAUD", "v3"),
    ]
    tail = _cli(*kafka_flags(k), "alerts", "tail", "--from-beginning", "--max", "2", "--idle-timeout", "30")
    assert tail.returncode == 0 and len(tail.stdout.splitlines()) == 2


def test_a_wrong_password_is_one_readable_line(secured):
    k = secured.model_copy(update={"sasl_password": "wrong"})
    proc = _cli(*kafka_flags(k), "produce", "--kafka", "--count", "1")
    assert proc.returncode == 1
    assert (
        proc.stderr.strip()
        .splitlines()[-1]
        .startswith(
            f"fraudstream: error: the Kafka broker at {k.bootstrap_servers} refused our login (Authentication failed"
        )
    )
    assert "Traceback" not in proc.stderr


def test_the_demo_gives_its_producer_the_login(secured_broker, tmp_path):
    """The demo finds the running secured broker and its producer must log in like the job."""
    import os
    import signal

    from tests.lines import in_own_session

    broker, secured = secured_broker
    users = orjson.dumps(broker.cfg.sasl_users).decode()
    args = [*EXE, "--data-dir", str(broker.root.parent), "--set", f"broker.port={broker.cfg.port}",
            "--set", f"broker.controller_port={broker.cfg.controller_port}", "--set", f"broker.sasl_users={users}",
            "--set", f"kafka.raw_topic={secured.raw_topic}", "--set", f"kafka.alerts_topic={secured.alerts_topic}",
            "--set", f"kafka.dead_letter_topic={secured.dead_letter_topic}", "--set", "kafka.group_id=demo-sasl",
            "--set", "kafka.start_from=latest", "demo", "--rate", "200"]  # fmt: skip
    with in_own_session(args, stderr=subprocess.DEVNULL) as (proc, out):
        got_alerts = out.wait_for("ALERT", 3, 150, proc)
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(90)
    text = out.finish()
    assert got_alerts, text[-2000:]
    assert "already running" in text and "Producer stopped (exit 0)" in text
    assert broker.pid() is not None  # not the demo's broker: left running
