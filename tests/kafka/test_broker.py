"""The local broker and the Kafka commands, against the real broker of the session."""

from __future__ import annotations

import subprocess
import sys

import orjson
import pytest

from fraudstream.config import BrokerSettings
from fraudstream.kafka.broker import BrokerError, LocalBroker
from fraudstream.kafka.clients import connect_admin, partition_count
from tests.kafka.conftest import consume, free_port, kafka_flags

# Too slow for `make check` (under a minute, no Flink): the broker's own tests (a broker start, the producer's pacing): `make test` runs them.
pytestmark = pytest.mark.slow

EXE = [sys.executable, "-m", "fraudstream"]


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*EXE, *args], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def test_status_names_the_running_broker(broker, tmp_path):
    flags = ["--data-dir", str(broker.root.parent), "--set", f"broker.port={broker.cfg.port}"]
    proc = _cli(*flags, "--set", f"broker.controller_port={broker.cfg.controller_port}", "kafka", "status")
    assert proc.returncode == 0, proc.stderr
    assert f"pid {broker.pid()}" in proc.stdout and broker.bootstrap in proc.stdout


def test_status_of_a_broker_that_is_not_running(tmp_path):
    proc = _cli("--data-dir", str(tmp_path), "--set", f"broker.port={free_port()}", "kafka", "status")
    assert proc.returncode == 1
    assert "not running" in proc.stdout


def test_start_refuses_a_port_taken_by_someone_else(broker, tmp_path):
    other = LocalBroker(BrokerSettings(port=broker.cfg.port, controller_port=free_port()), tmp_path)
    with pytest.raises(BrokerError, match=f"port {broker.cfg.port} .* already in use"):
        other.start()
    assert other.pid() is None


def test_topics_are_created_with_the_configured_partitions(kafka):
    admin = connect_admin(kafka)
    assert partition_count(admin, kafka.raw_topic) == 4
    assert partition_count(admin, kafka.dead_letter_topic) == 1


def test_producer_keys_by_user_and_keeps_each_user_in_one_partition(kafka, tmp_path):
    from fraudstream.generator import OrderGenerator

    events = list(OrderGenerator(seed=3, users=50).orders(600))
    lines = [orjson.dumps(e) for e in events] + [b"{not json at all"]
    path = tmp_path / "orders.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    proc = _cli(
        "--set", f"kafka.bootstrap_servers={kafka.bootstrap_servers}",
        "produce", "--kafka", "--topic", kafka.raw_topic, "--from-file", str(path),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert f"601 of 601 orders delivered to {kafka.raw_topic}" in proc.stderr
    records = consume(kafka, kafka.raw_topic, expect=len(lines))
    assert sorted(value for _, _, value in records) == sorted(lines)  # published as they were
    partitions_of_user: dict[bytes, set[int]] = {}
    for partition, key, value in records:
        if value.startswith(b"{not json"):
            assert key is None
            continue
        assert key == orjson.loads(value)["user_id"].encode()
        partitions_of_user.setdefault(key, set()).add(partition)
    assert all(len(p) == 1 for p in partitions_of_user.values())
    assert len({p for ps in partitions_of_user.values() for p in ps}) > 1  # spread over partitions
    # and within a partition, each user's orders keep their published order
    for user, _ in partitions_of_user.items():
        sent = [e["transaction_id"] for e in events if e["user_id"].encode() == user]
        got = [orjson.loads(v)["transaction_id"] for _, k, v in records if k == user]
        assert got == sent


def test_producer_without_a_broker_says_so_in_one_line(tmp_path):
    proc = _cli(
        "--set", f"kafka.bootstrap_servers=127.0.0.1:{free_port()}", "--set", "kafka.connect_timeout_s=2",
        "produce", "--kafka", "--count", "5",
    )  # fmt: skip
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("fraudstream: error: no Kafka broker answers at 127.0.0.1:")
    assert "Traceback" not in proc.stderr


def test_producer_to_a_missing_topic_says_so(kafka):
    proc = _cli(
        "--set", f"kafka.bootstrap_servers={kafka.bootstrap_servers}", "produce", "--topic", "nope", "--count", "1"
    )
    assert proc.returncode == 1
    assert "fraudstream: error: topic 'nope' does not exist" in proc.stderr


def test_run_on_kafka_without_a_broker_or_topic_says_so_before_flink_starts(kafka):
    no_broker = _cli(
        "--set", f"kafka.bootstrap_servers=127.0.0.1:{free_port()}", "--set", "kafka.connect_timeout_s=2",
        "run", "--source", "kafka",
    )  # fmt: skip
    assert no_broker.returncode == 1
    assert no_broker.stderr.strip().splitlines()[-1].startswith("fraudstream: error: no Kafka broker answers")
    no_topic = _cli(
        *kafka_flags(kafka), "--set", f"kafka.raw_topic=missing-{kafka.group_id}", "run", "--source", "kafka",
    )  # fmt: skip
    assert no_topic.returncode == 1
    assert f"topic 'missing-{kafka.group_id}' does not exist" in no_topic.stderr
    for proc in (no_broker, no_topic):
        assert "Configuration:" not in proc.stdout  # refused before the job was built
        assert "Traceback" not in proc.stderr


def test_storage_formats_with_a_cluster_id_that_looks_like_an_option(tmp_path, monkeypatch):
    """A random cluster id may begin with "-" (base64url); it once failed one start in 64."""
    import uuid

    import fraudstream.kafka.broker as broker_module
    from fraudstream.jars import kafka_classpath

    monkeypatch.setattr(broker_module.uuid, "uuid4", lambda: uuid.UUID(bytes=b"\xf8" + bytes(15)))
    local = LocalBroker(BrokerSettings(port=free_port(), controller_port=free_port()), tmp_path)
    local.root.mkdir(parents=True)
    local._write_config()
    local._format(kafka_classpath(None))
    assert "cluster.id=-AAAAAAAAAAAAAAAAAAAAA" in (local.storage / "meta.properties").read_text()


def test_publishing_holds_the_rate(kafka):
    import time

    started = time.monotonic()
    proc = _cli("--set", f"kafka.bootstrap_servers={kafka.bootstrap_servers}", "produce", "--topic", kafka.raw_topic,
                "--count", "60", "--rate", "40", "--seed", "1")  # fmt: skip
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    assert "60 of 60 orders delivered" in proc.stderr
    assert elapsed >= 59 / 40  # 60 orders at 40/s cannot take less than 1.475 s
    assert len(consume(kafka, kafka.raw_topic, expect=60)) == 60
