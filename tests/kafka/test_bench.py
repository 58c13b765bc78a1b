"""`fraudstream bench --quick` end to end: a private broker, the ceilings, the SQL engine and
a latency run, with every report written. Proves the benchmark works; its figures are not
judged here (no wall-clock assertions in the suite)."""

from __future__ import annotations

import subprocess
import sys

import orjson
import pytest

from fraudstream.flink.gateway import processes

pytestmark = pytest.mark.flink


def test_quick_bench_writes_every_report_and_leaves_no_process(tmp_path):
    out = tmp_path / "results"
    before = {p.pid for p in processes()}
    proc = subprocess.run(
        [sys.executable, "-m", "fraudstream", "--data-dir", str(tmp_path / "data"), "bench", "--quick",
         "--orders", "20000", "--users", "5000", "--engine", "sql", "--latency-rate", "100", "--latency-seconds", "15",
         "--out", str(out)],
        capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = orjson.loads((out / "bench.json").read_bytes())
    assert data["kafka_ceiling"]["records"] == 20_000
    assert data["python_ceiling"]["alerts"] > 0
    runs = {r["engine"]: r for r in data["runs"]}
    assert set(runs) == {"sql"}  # the other engines' runs are the same code with another --engine
    assert runs["sql"]["finished"] and runs["sql"]["exit_code"] == 0
    assert all(r["events_per_s"] > 0 and r["peak_rss_mb"].get("Flink JVM", 0) > 0 for r in runs.values())
    assert "checkpoint_ms" in runs["sql"]  # empty when the run ends before its first checkpoint
    (latency,) = data["latency"]
    assert latency["engine"] == "sql" and latency["alerts"] > 0 and latency["p99_ms"] >= latency["p50_ms"] > 0
    table = (out / "bench.md").read_text()
    assert "| Kafka ceiling" in table and "| Python ceiling" in table and "SQL engine" in table
    assert (out / "latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the private broker and every job process are gone
    left = [p for p in processes() if p.pid not in before and p.comm == "java" and p.state != "Z"]
    assert not left, f"processes left behind: {left}"
