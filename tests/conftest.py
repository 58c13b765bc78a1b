from __future__ import annotations

import os
from pathlib import Path

import pytest

from fraudstream.events.model import Order

BASE = 1_767_225_600_000  # 2026-01-01T00:00:00Z
MIN = 60_000

# The test suite's Flink JVMs (PyFlink reads JVM_ARGS; every `fraudstream` process a test
# starts inherits it) live for seconds: compiling with C1 only costs them about a third less
# CPU, which on two cores is wall time. Nothing here measures speed.
os.environ.setdefault("JVM_ARGS", "-XX:TieredStopAtLevel=1")
# Two test workers run jobs side by side: each run's own metrics endpoint takes any free port
# (the metrics tests choose theirs).
os.environ.setdefault("FRAUDSTREAM_METRICS__PROCESS_PORT", "0")

# What the fault-injection tests observed, one line per test, for the reliability table in
# docs/reliability.md: every `make test` writes it anew.
REPORT = Path(__file__).resolve().parents[1] / "build" / "reliability.txt"

# A real PostgreSQL server, for the tests of the shared store (tests/postgres.py), and the
# session's Kafka broker (tests/kafka/fixtures.py), for every folder's tests.
pytest_plugins = ["tests.postgres", "tests.kafka.fixtures"]


# The slowest files, started first: with parallel workers (`make test`), a file runs on one
# worker, and a long one starting last would leave the other worker idle at the end.
SLOW_FIRST = (
    "tests/cluster/test_on_cluster.py",
    "tests/kafka/test_recovery.py",
    "tests/kafka/test_job_on_kafka.py",
    "tests/kafka/test_resume.py",
    "tests/kafka/test_future_on_kafka.py",
    "tests/flink/test_cli_run.py",
    "tests/kafka/test_demo.py",
    "tests/kafka/test_sasl.py",
    "tests/cluster/test_standalone.py",
    "tests/kafka/test_bench.py",
    "tests/kafka/test_model_on_kafka.py",
    "tests/flink/test_model_job.py",
    "tests/flink/test_job.py",
    "tests/flink/test_security_run.py",
    "tests/kafka/test_big_alerts.py",
    "tests/kafka/test_copier_run.py",
    "tests/flink/test_future.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        path = item.nodeid.split("::")[0]
        return SLOW_FIRST.index(path) if path in SLOW_FIRST else len(SLOW_FIRST)

    items.sort(key=rank)  # stable: the rest keep their order


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):  # once per run: not again in each xdist worker
        REPORT.parent.mkdir(exist_ok=True)
        REPORT.write_text("")


def make_order(
    t: int,
    user: str = "u_1",
    device: str = "d_1",
    city: str = "Mumbai",
    amount: float = 300.0,
    tx: str | None = None,
) -> Order:
    return Order(
        transaction_id=tx or f"t_{user}_{device}_{t}_{city}",
        user_id=user,
        device_id=device,
        restaurant_id="r_1",
        amount=amount,
        city=city,
        payment_method="UPI",
        event_time=t,
    )


@pytest.fixture(autouse=True)
def _restore_environment():
    """In-process Flink jobs in process mode run their Python workers in this process
    (loopback) and leave worker variables such as PYFLINK_GATEWAY_DISABLED behind, which
    child processes would inherit. Each test starts from the environment it found."""
    saved = dict(os.environ)
    yield
    if os.environ != saved:
        os.environ.clear()
        os.environ.update(saved)
