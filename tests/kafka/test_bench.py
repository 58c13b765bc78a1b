"""`fraudstream bench --quick` end to end: a private broker, the ceilings, the SQL engine and
a latency run, with every report written. Proves the benchmark works; its figures are not
judged here (no wall-clock assertions in the suite)."""

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
         "--orders", "12000", "--users", "3000", "--engine", "sql", "--engine", "sql-model", "--latency-rate", "200", "--latency-seconds", "12",
         "--out", str(out)],
        capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL, env={**os.environ, name: value},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = orjson.loads((out / "bench.json").read_bytes())
    assert data["kafka_ceiling"]["records"] == 12_000
    assert data["python_ceiling"]["alerts"] > 0
    runs = {r["engine"]: r for r in data["runs"]}
    assert set(runs) == {"sql", "sql-model"}  # the other engines' runs are the same code with another --engine
    assert all(runs[e]["finished"] and runs[e]["exit_code"] == 0 for e in runs)
    assert all(r["events_per_s"] > 0 and r["peak_rss_mb"].get("Flink JVM", 0) > 0 for r in runs.values())
    assert "checkpoint_ms" in runs["sql"]  # empty when the run ends before its first checkpoint
    (latency,) = data["latency"]
    assert latency["engine"] == "sql" and latency["alerts"] > 0 and latency["p99_ms"] >= latency["p50_ms"] > 0
    table = (out / "bench.md").read_text()
    assert "| Kafka ceiling" in table and "| Python ceiling" in table and "SQL engine" in table
    assert "with the risk model" in table and "keeps" in table  # the model's cost, as a ratio
    assert (out / "latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the private broker and every job process are gone (found by the mark their environment
    # inherited, so processes of tests running beside this one do not count)
    left = _marked(mark.encode())
    assert not left, f"processes left behind: {left}"
