"""The job on a real standalone Flink cluster (tests/cluster/conftest.py) and the real broker:
`fraudstream run --jobmanager` at parallelism 1, 2 and 4 gives the oracle's alerts; a
savepoint at 2 restores at 4 and, through another savepoint, at 1, with a TaskManager killed
(and replaced) on the way, and the result is an uninterrupted run's."""

from __future__ import annotations

import json
import os
import random
import signal
import site
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

import orjson
import pytest

from fraudstream.config import GeneratorSettings, KafkaSettings
from fraudstream.flink.gateway import processes
from fraudstream.generator import generator_from_settings
from fraudstream.kafka.tail import alert_from_json
from tests.kafka.conftest import consume, fresh_topics, kafka_flags, report, send
from tests.kafka.runs import stored_alerts
from tests.lines import in_own_session
from tests.oracle import expected_alerts, redeliveries
from tests.redeliveries import with_redeliveries

pytestmark = pytest.mark.flink
EXE = [sys.executable, "-m", "fraudstream"]
# At 4, the stateless Python steps narrower (pipeline.step_parallelism; fewer Python workers too).
STEPS = {4: ('pipeline.step_parallelism={"alert-text": 2, "sinks": 1}',)}
# Restarts retried at once while a lost TaskManager's slots come back (else up to 30 s apart).
FAST_RESTARTS = ("checkpoint.restart_initial_backoff_ms=200", "checkpoint.restart_max_backoff_ms=1000")
PARTITIONS = 2  # so that two jobs at parallelism 1 and 2 share the cluster's 4 slots


def _topics(broker) -> KafkaSettings:
    return fresh_topics(broker, raw_partitions=PARTITIONS, alerts_partitions=2)


def _orders(n: int, seed: int, jitter_ms: int = 0) -> list[dict]:
    return list(generator_from_settings(GeneratorSettings(seed=seed, count=n, jitter_ms=jitter_ms)).orders(n))


# Malformed records another producer might send, with the reason each is rejected for (and, in
# the test, an order with a string for its amount: `wrong_type`).
MALFORMED = [
    (b"{this is not json", "invalid_json"),
    (b'["an", "array"]', "not_an_object"),
    (b'{"transaction_id": "m2"}', "missing_field"),
]


def _records(orders: list[dict]) -> list[tuple[int | None, bytes | None, bytes]]:
    return [(None, o["user_id"].encode(), orjson.dumps(o)) for o in orders]


def _run(cluster, k: KafkaSettings, data: Path, parallelism: int, *extra: str, sets: tuple[str, ...] = ()) -> list[str]:
    return [
        *EXE, "--data-dir", str(data), *kafka_flags(k), "--set", "checkpoint.interval_ms=1000",
        "--set", "checkpoint.backlog_interval_ms=1000",
        *(x for s in sets for x in ("--set", s)),
        "run", "--source", "kafka", "--jobmanager", cluster.rest_address, "--parallelism", str(parallelism), *extra,
    ]  # fmt: skip


def _alerts(k: KafkaSettings) -> list[tuple[str, str, str, int]]:
    found = [alert_from_json(v) for _, _, v in consume(k, k.alerts_topic)]
    return [(a.alert_type, a.key, a.transaction_id, a.event_time) for a in found]


def _same(keys: list[tuple], expected: set[tuple]) -> None:
    twice = [key for key, n in Counter(keys).items() if n > 1]
    assert not twice, f"{len(twice)} alerts committed twice"
    assert set(keys) == expected, f"missing {len(expected - set(keys))}, unexpected {len(set(keys) - expected)}"


def _left_behind(proc: subprocess.Popen) -> list[int]:
    """Processes of a run's session still alive (its Flink client JVM, say)."""
    return [p.pid for p in processes() if p.pgid == proc.pid and p.state != "Z"]


def _get(cluster, path: str):
    with urllib.request.urlopen(f"http://{cluster.rest_address}{path}", timeout=5) as response:
        return json.loads(response.read())


@pytest.fixture
def cluster(flink_cluster):
    """The session's cluster, with no job of a failed test left running on it afterwards."""
    yield flink_cluster
    for job in _get(flink_cluster, "/jobs/overview")["jobs"]:
        if job["state"] in ("RUNNING", "CREATED", "RESTARTING", "INITIALIZING"):
            request = urllib.request.Request(f"http://{flink_cluster.rest_address}/jobs/{job['jid']}", method="PATCH")
            urllib.request.urlopen(request, timeout=5).close()


def _widths(p: int) -> dict[str, int]:
    """Each step's operators (a name in its vertices' names) -> the step's width in the run at `p`."""
    steps = {"alert-text": 2, "sinks": 1} if p == 4 else {}
    return {
        "Source: orders-kafka": PARTITIONS, "user-rules": p, "device-rules": p,
        "stamp-rules": 1, "Source: rules-kafka": 1, "cooldown": p, "alert-text": steps.get("alert-text", p),
        "to-alerts_out": steps.get("sinks", p), "to-dead_letters_out": steps.get("sinks", p),
    }  # fmt: skip


def test_the_same_alerts_at_parallelism_1_2_and_4(cluster, broker, tmp_path):
    """Three runs of one stream side by side, on 2 more TaskManagers (8 slots: 2 + 2 + 4, one
    reader per partition), each compared with the oracle: event times jittered (4 s, bound 5 s),
    re-deliveries of four kinds planted and a few malformed records mixed in, so the alerts, the
    `duplicate` dead letters (which copy, by id and time) and the others by reason are checked;
    every step's width in every run read back from the cluster. The extra TaskManagers go after."""
    orders = with_redeliveries(_orders(1_500, seed=1616, jitter_ms=4_000), random.Random(1616), every=20)
    assert [o["event_time"] for o in orders] != sorted(o["event_time"] for o in orders)
    expected = expected_alerts(orders)
    assert len(expected) > 30
    copies = Counter((orders[i]["transaction_id"], orders[i]["event_time"]) for i in redeliveries(orders))
    assert sum(copies.values()) >= 30
    malformed = [*MALFORMED, (orjson.dumps({**orders[0], "transaction_id": "m1", "amount": "lots"}), "wrong_type")]
    expected_dead = Counter(reason for _, reason in malformed) + Counter(duplicate=sum(copies.values()))
    records = _records(orders)
    for i, (value, _) in enumerate(malformed):  # spread over the stream, on both partitions
        records.insert((i + 1) * len(records) // (len(malformed) + 1), (i % PARTITIONS, b"bad", value))
    extra = [cluster.add_taskmanager(), cluster.add_taskmanager()]
    runs = {}
    for p in (1, 2, 4):
        k = _topics(broker)
        send(k, records)
        runs[p] = (k, tmp_path / f"p{p}")
    try:
        cluster.wait_for_slots(8, timeout_s=60)
        started = time.monotonic()
        procs = {
            p: subprocess.Popen(
                _run(cluster, k, data, p, "--bounded", "--start-from", "earliest", sets=STEPS.get(p, ())),
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
            for p, (k, data) in runs.items()
        }  # fmt: skip
        try:
            for proc in procs.values():
                out, err = proc.communicate(timeout=240)
                assert proc.returncode == 0, err[-3000:]
                assert f"cluster at {cluster.rest_address} (web UI {cluster.web_url}" in out
                assert "Job finished" in out
                assert not _left_behind(proc)
        finally:
            for proc in procs.values():
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        took = time.monotonic() - started
    finally:
        for pid in extra:
            cluster.kill_taskmanager(pid)
    try:
        for p, (k, data) in runs.items():
            # the steps ran at their widths (the cluster keeps finished jobs' graphs)
            job_id = (data / "app.log").read_text().split(" submitted to the cluster")[0].rsplit("job ", 1)[1]
            vertices = [(v["name"], v["parallelism"]) for v in _get(cluster, f"/jobs/{job_id}")["vertices"]]
            for step, width in _widths(p).items():
                found = {n for name, n in vertices if step in name}
                assert found == {width}, (p, step, found, vertices)
            _same(_alerts(k), expected)
            assert stored_alerts(data / "fraud_alerts.db") == len(expected), p
            letters = [orjson.loads(v) for _, _, v in consume(k, k.dead_letter_topic)]
            assert Counter(d["reason"] for d in letters) == expected_dead, p
            duplicates = Counter(
                (orjson.loads(d["raw"])["transaction_id"], d["event_time"])
                for d in letters
                if d["reason"] == "duplicate"
            )
            assert duplicates == copies, p  # the copies the oracle rejects, not their originals
            with sqlite3.connect(data / "fraud_alerts.db") as conn:
                stored = Counter(r for (r,) in conn.execute("SELECT reason FROM dead_letters"))
            assert stored == expected_dead, p
        # the workers imported fraudstream and pydantic from the directory the job shipped, not
        # from this checkout or this interpreter's site-packages (python.pythonpath goes first)
        logs = "".join(f.read_text(errors="replace") for f in cluster.log_dir.glob("*taskexecutor*.log"))
        origins = Counter()
        for line in logs.splitlines():
            if "fraudstream worker:" in line:
                what, _, where = line.split("fraudstream worker: ")[1].partition(" imported from ")
                origins[(what.split()[-1], where.strip())] += 1
        packages = {what for what, _ in origins}
        assert {"package", "pydantic"} <= packages, origins
        for what, where in origins:
            assert "/python-files/" in where, (what, where)
            assert where.endswith("/fraudstream/__init__.py" if what == "package" else "/pydantic/__init__.py"), where
            assert not where.startswith(str(Path(__file__).resolve().parents[2])), where
            assert not where.startswith(tuple(site.getsitepackages())), where
    finally:  # their slots go once their heartbeats time out (10 s): meanwhile the checks ran
        cluster.wait_for_slots(4, timeout_s=60)
    report(
        f"the job on a standalone cluster (4 TaskManagers x 2 slots) at parallelism 1, 2 and 4 | {len(orders)} "
        f"orders (jittered 4 s, {sum(copies.values())} re-deliveries) + {len(malformed)} malformed, "
        f"{len(expected)} alerts each | lost 0, duplicated 0 at every parallelism, the dead letters by reason "
        f"and every step's width as set ({took:.0f} s for the three runs side by side)"
    )


def _savepoint(data: Path, timeout_s: float = 90) -> str:
    """`fraudstream savepoint --stop`, again while the job is restarting (Flink refuses then)."""
    deadline = time.monotonic() + timeout_s
    while True:
        done = subprocess.run(
            [*EXE, "--data-dir", str(data), "savepoint", "--stop"],
            capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        if done.returncode == 0:
            return done.stdout.strip().splitlines()[-1]
        assert "Traceback" not in done.stderr, done.stderr
        assert time.monotonic() < deadline, done.stderr
        time.sleep(1)


def _until(what: str, check, proc: subprocess.Popen, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if proc.poll() is not None:
            raise AssertionError(f"the run ended (exit {proc.returncode}) before {what}: {proc.stderr.read()[-3000:]}")
        assert time.monotonic() < deadline, f"no {what} after {timeout_s}s"
        time.sleep(0.2)


def test_rescaled_through_savepoints_and_a_taskmanager_killed_gives_the_uninterrupted_result(cluster, broker, tmp_path):
    """Parallelism 2 -> savepoint -> 4 (a TaskManager SIGKILLed mid-run, another started, as an
    operator would) -> savepoint -> 1, over a stream sent in three parts: the alerts equal the
    oracle's for the whole stream, none twice, in Kafka and in SQLite."""
    orders = _orders(1_500, seed=1617)
    expected = expected_alerts(orders)
    parts = [orders[:500], orders[500:1000], orders[1000:]]
    k = _topics(broker)
    data = tmp_path / "data"
    db = data / "fraud_alerts.db"
    timings = {}

    send(k, _records(parts[0]))
    with in_own_session(_run(cluster, k, data, 2, "--start-from", "earliest"), stderr=subprocess.PIPE) as (proc, _):
        _until("alerts stored (a checkpoint completed)", lambda: stored_alerts(db) > 0, proc)
        t = time.monotonic()
        first = _savepoint(data)
        timings["savepoint at 2"] = time.monotonic() - t
        assert proc.wait(60) == 0, proc.stderr.read()[-3000:]
    assert not _left_behind(proc)

    send(k, _records(parts[1]))
    before = stored_alerts(db)
    with in_own_session(
        _run(cluster, k, data, 4, "--from-savepoint", first, sets=FAST_RESTARTS), stderr=subprocess.PIPE
    ) as (proc, lines):
        t = time.monotonic()
        _until("the job at parallelism 4", lambda: (data / "job.json").is_file(), proc)
        job = json.loads((data / "job.json").read_text())
        timings["restore at 4 (to submitted)"] = time.monotonic() - t
        assert job["rest_host"] == cluster.rest_address.rpartition(":")[0]
        vertices = {v["name"]: v["parallelism"] for v in _get(cluster, f"/jobs/{job['job_id']}")["vertices"]}
        assert any(n == 4 for name, n in vertices.items() if "cooldown" in name), vertices
        _until("alerts of the second part stored", lambda: stored_alerts(db) > before, proc)
        victim = cluster.taskmanager_pids()[0]
        cluster.kill_taskmanager(victim)
        replacement = cluster.add_taskmanager()
        assert replacement != victim
        t = time.monotonic()
        second = _savepoint(data, timeout_s=120)  # once the job runs again on the new TaskManager
        timings["recovered from the kill and saved at 4"] = time.monotonic() - t
        assert proc.wait(60) == 0, proc.stderr.read()[-3000:]
        out = lines.finish()
    assert "Job stopped" in out
    # the kill was a failure the job recovered from (seen by the run's failure watch, on the cluster's REST)
    assert "the job failed and restarts from its last checkpoint" in (data / "app.log").read_text()
    assert not _left_behind(proc)
    cluster.wait_for_slots(4, timeout_s=60)

    send(k, _records(parts[2]))
    t = time.monotonic()
    done = subprocess.run(
        _run(cluster, k, data, 1, "--from-savepoint", second, "--bounded"),
        capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    timings["restore at 1, bounded to the end"] = time.monotonic() - t
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Job finished" in done.stdout
    _same(_alerts(k), expected)
    assert stored_alerts(db) == len(expected)
    report(
        f"savepoint at parallelism 2, restored at 4, a TaskManager SIGKILLed and replaced, savepoint, restored at 1 "
        f"(standalone cluster) | {len(orders)} orders in three parts, {len(expected)} alerts | lost 0, duplicated 0 "
        f"(Kafka, SQLite); " + ", ".join(f"{k_}: {v:.1f} s" for k_, v in timings.items())
    )


def test_too_few_free_slots_is_one_line_before_anything_is_submitted(cluster, broker, tmp_path):
    k = _topics(broker)
    done = subprocess.run(
        _run(cluster, k, tmp_path / "data", 8), capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL
    )
    assert done.returncode != 0
    assert "has 4 free task slots (4 in all); this job needs 8" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert not _get(cluster, "/jobs/overview")["jobs"] or all(
        j["state"] != "RUNNING" for j in _get(cluster, "/jobs/overview")["jobs"]
    )
