"""Pipeline health with a healthy job (a fake of Flink's REST API), without a job, with a job
that has ended or does not answer, and with a broker that does not answer: each said plainly,
quickly, never a 500 or a hang."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
import pytest

from fraudstream.flink.jobinfo import JobInfo
from fraudstream.store import AlertStore
from fraudstream.web.health import HealthCollector, copier_position
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


JOB_ID = "f" * 32
SOURCE_RATE = ["0.Source__orders.numRecordsOutPerSecond", "1.Source__orders.numRecordsOutPerSecond"]


@contextlib.contextmanager
def fake_flink(slow_first_s: float = 0.0) -> Iterator[int]:
    """A tiny HTTP server answering as Flink's REST API does for a healthy job: a source vertex
    with two subtasks' rates, a keyed step's watermark 5 s behind the wall clock and a checkpoint
    completed 7 s ago (both as of when it answers). `slow_first_s`: the rate answer is that late."""
    base = f"/jobs/{JOB_ID}"

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802 (the server's name for it)
            now_ms = int(time.time() * 1000)
            path = self.path
            if path == base:
                body: object = {"state": "RUNNING", "vertices": [{"id": "src"}, {"id": "keyed"}]}
            elif path == f"{base}/vertices/src/metrics":
                body = [{"id": n} for n in [*SOURCE_RATE, "0.numRecordsOutPerSecond"]]
            elif path.startswith(f"{base}/vertices/src/metrics?get="):
                time.sleep(slow_first_s)
                body = [{"id": SOURCE_RATE[0], "value": "12.5"}, {"id": SOURCE_RATE[1], "value": "7.5"}]
            elif path == f"{base}/vertices/keyed/watermarks":
                body = [{"id": "0.currentInputWatermark", "value": str(now_ms - 5_000)}]
            elif path == f"{base}/checkpoints":
                latest = {"id": 9, "latest_ack_timestamp": now_ms - 7_000, "end_to_end_duration": 120,
                          "checkpointed_size": 4096}  # fmt: skip
                body = {"counts": {"completed": 9, "failed": 1}, "latest": {"completed": latest}}
            else:
                self.send_error(404)
                return
            data = orjson.dumps(body)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_a_healthy_job(tmp_path):
    with fake_flink(slow_first_s=0.6) as port:
        job_file(tmp_path, os.getpid(), port)
        job = HealthCollector(settings_for(tmp_path)).collect()["job"]
    assert job["running"] is True and job["state"] == "RUNNING" and "problems" not in job
    assert job["orders_per_s"] == 20.0  # both subtasks of the source
    # Ages count from each answer: a `now` taken before the slow rate answer would give about
    # 600 ms less (the lower bounds); the upper ones leave room for a loaded machine.
    assert 4_900 <= job["event_time_lag_ms"] <= 6_500
    cp = job["checkpoint"]
    assert cp["id"] == 9 and cp["completed"] == 9 and cp["failed"] == 1 and cp["size_bytes"] == 4096
    assert 6_900 <= cp["age_ms"] <= 8_500


def test_the_copier_counts_behind_net_of_transaction_markers():
    positions = [{"topic": "alerts", "partition": 0, "next_offset": 10}, {"topic": "alerts", "partition": 1,
                 "next_offset": 4}]  # fmt: skip
    done = copier_position(positions, [11, 4])  # a commit marker after the last copied record; an empty one
    assert done["caught_up"] is True and done["behind"] == 0 and [p["gap"] for p in done["partitions"]] == [1, 0]
    late = copier_position(positions, [15, 4])  # four records and their marker not copied yet
    assert late["caught_up"] is False and late["behind"] == 4 and late["partitions"][0]["behind"] == 4
