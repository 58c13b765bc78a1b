"""`fraudstream bench --quick` end to end: a private broker, the ceilings, the Quix Streams
peer, the SQL engine and a latency run, with every report written. Proves the benchmark
works; its figures are not judged here (no wall-clock assertions in the suite). The run with
the risk model (`--engine sql-model`) is left out to keep the suite within its time: it is the
same job step with `--set model.path=...`, which tests/kafka/test_model_on_kafka.py runs."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import orjson
import pytest

from fraudstream.flink.gateway import processes

pytestmark = pytest.mark.flink


def _marked(mark: bytes) -> list[int]:
    """Live processes whose environment carries `mark` (inherited by everything the bench starts)."""
    found = []
    for p in processes():
        try:
            environ = Path(f"/proc/{p.pid}/environ").read_bytes()
        except OSError:
            continue
        if mark in environ and p.state != "Z":
            found.append(p.pid)
    return found


def test_quick_bench_writes_every_report_and_leaves_no_process(tmp_path):
    out = tmp_path / "results"
    mark = f"BENCH_TEST_MARK={uuid.uuid4().hex}"
    name, value = mark.split("=")
    proc = subprocess.run(
        [sys.executable, "-m", "fraudstream", "--data-dir", str(tmp_path / "data"), "bench", "--quick",
         "--orders", "12000", "--users", "3000", "--engine", "sql", "--latency-rate", "200", "--latency-seconds", "12",
         "--peer", "exactly-once", "--out", str(out)],
        capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL, env={**os.environ, name: value},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = orjson.loads((out / "bench.json").read_bytes())
    assert data["kafka_ceiling"]["records"] == 12_000
    exact = data["python_ceiling"]["alerts_by_type"]
    assert set(exact) == {"VELOCITY_FRAUD", "DEVICE_SHARING_FRAUD", "HIGH_VALUE_FRAUD", "GEO_ANOMALY_FRAUD"}
    assert sum(exact.values()) == data["python_ceiling"]["alerts"] > 0
    # the peer read every order, ran all four rules (alerts of each type on its topic, in the
    # exact counts' range: it differs only by arrival order) and exited on its own
    (peer,) = data["peers"]
    assert peer["peer"] == "quix exactly-once" and peer["finished"] and peer["exit_code"] == 0
    assert peer["records"] == 12_000 and peer["events_per_s"] > 0 and peer["peak_rss_mb"] > 0
    assert 0 < peer["ready_s"] <= peer["startup_s"]
    assert set(peer["alerts_by_type"]) == set(exact)
    assert all(0.5 * exact[t] <= n <= 1.5 * exact[t] for t, n in peer["alerts_by_type"].items()), peer
    runs = {r["engine"]: r for r in data["runs"]}
    assert set(runs) == {"sql"}  # the other engines' runs are the same code with another --engine
    assert all(runs[e]["finished"] and runs[e]["exit_code"] == 0 for e in runs)
    # every engine's throughput as a ratio to the peer's and to the ceilings'
    assert data["ratios"]["sql"]["quix exactly-once"] == pytest.approx(
        runs["sql"]["events_per_s"] / peer["events_per_s"], rel=1e-2
    )
    assert set(data["ratios"]["sql"]) == {"quix exactly-once", "python ceiling", "kafka ceiling"}
    assert all(r["events_per_s"] > 0 and r["peak_rss_mb"].get("Flink JVM", 0) > 0 for r in runs.values())
    assert "checkpoint_ms" in runs["sql"]  # empty when the run ends before its first checkpoint
    # the Flink JVM's CPU by kind of thread: its JIT compilers and collector always work
    cpu = runs["sql"]["jvm_cpu_s"]
    assert cpu["JIT compiler"] > 0 and cpu["garbage collector"] > 0 and cpu["steps and the rest"] > 0
    assert cpu["total"] == pytest.approx(sum(v for k, v in cpu.items() if k != "total"), abs=0.5)
    (latency,) = data["latency"]
    assert latency["engine"] == "sql" and latency["alerts"] > 0 and latency["p99_ms"] >= latency["p50_ms"] > 0
    table = (out / "bench.md").read_text()
    assert "| Kafka ceiling" in table and "| Python ceiling" in table and "SQL engine" in table
    assert "÷ Quix peer (exactly-once)" in table and "| Quix Streams peer, exactly-once" in table
    assert "| all | " in table  # the peer's alerts beside the exact ones
    assert (out / "latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the private broker and every job process are gone (found by the mark their environment
    # inherited, so processes of tests running beside this one do not count)
    left = _marked(mark.encode())
    assert not left, f"processes left behind: {left}"
