"""Pipeline health without a job, with a job that has ended or does not answer, and with a
broker that does not answer: each said plainly, quickly, never a 500 or a hang."""

from __future__ import annotations

import os
import socket
import time

import orjson
import pytest

from fraudstream.flink.jobinfo import JobInfo
from fraudstream.store import AlertStore
from fraudstream.web.health import HealthCollector
from tests.conftest import BASE
from tests.web.conftest import LOCAL, TestClient, alert, settings_for, write

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def job_file(data_dir, pid: int, port: int) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "job.json").write_bytes(
        orjson.dumps({"pid": pid, "job_id": "f" * 32, "rest_port": port, "savepoint_uri": "file:///tmp/sp"})
    )


def test_no_job(tmp_path):
    h = HealthCollector(settings_for(tmp_path)).collect()
    assert h["job"] == {"running": False, "message": "no job is running (start one with 'fraudstream run')"}
    assert h["store"]["present"] is False and h["copier"]["state"] == "none"


def test_a_job_that_has_ended(tmp_path):
    child = os.fork()
    if child == 0:
        os._exit(0)
    os.waitpid(child, 0)
    job_file(tmp_path, child, closed_port())
    job = HealthCollector(settings_for(tmp_path)).collect()["job"]
    assert job["running"] is False and f"(PID {child}) has ended" in job["message"]


def test_a_job_whose_rest_endpoint_does_not_answer(tmp_path):
    job_file(tmp_path, os.getpid(), closed_port())  # a live process, nothing on its port
    job = HealthCollector(settings_for(tmp_path)).collect()["job"]
    assert job["state"] == "unknown" and "REST does not answer" in job["message"]
    (tmp_path / "job.json").write_text("{not json")
    assert JobInfo.read(tmp_path / "job.json") is None


def test_an_unreachable_broker_is_unknown_and_quick(tmp_path):
    s = settings_for(tmp_path, **{"kafka.bootstrap_servers": f"127.0.0.1:{closed_port()}"})
    store = AlertStore(s.db_path)
    store.write_batch([alert(BASE)], offsets={(s.kafka.alerts_topic, 0): (None, 7)})
    store.close()
    from fraudstream.web import create_app

    with TestClient(create_app(s), base_url=LOCAL) as c:
        started = time.monotonic()
        h = c.get("/api/health").json()
        assert time.monotonic() - started < 9  # 1 s timeouts; ~3x for a busy machine
        assert h["copier"]["state"] == "unknown" and "does not answer" in h["copier"]["message"]
        assert h["copier"]["partitions"] == [{"topic": s.kafka.alerts_topic, "partition": 0, "next_offset": 7}]
        assert h["store"]["alerts"] == 1
        started = time.monotonic()
        assert c.get("/api/alerts").json()["total"] == 1  # the page's other calls are not held up
        assert time.monotonic() - started < 3


def test_alerts_per_second_from_the_store(tmp_path):
    s = settings_for(tmp_path)
    write(s.db_path, [alert(BASE)])
    collector = HealthCollector(s)
    assert collector.collect()["store"]["alerts_per_s"] is None  # one look is no rate
    write(s.db_path, [alert(BASE + i) for i in range(1, 11)])
    rate = collector.collect()["store"]["alerts_per_s"]
    assert rate is not None and rate > 10  # 10 more alerts within well under a second


def test_a_hanging_job_api_costs_a_timeout_not_the_page(tmp_path):
    with socket.socket() as silent:  # accepts connections (the backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        job_file(tmp_path, os.getpid(), silent.getsockname()[1])
        started = time.monotonic()
        job = HealthCollector(settings_for(tmp_path), rest_timeout_s=0.5).collect()["job"]
        assert time.monotonic() - started < 6
        assert job["state"] == "unknown" and "timed out" in job["message"]
