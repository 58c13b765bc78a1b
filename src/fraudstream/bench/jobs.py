"""One measured job run: `fraudstream run` in a process of its own, watched from outside.

The run is the real command (its Kafka source, exactly-once sinks, checkpoints and store
copier), so what is measured is what a user runs. Throughput comes from Flink's own
counter of records read by the source, sampled over REST; memory from every process of the
run's tree (the driver, Flink's JVM, any Python workers); checkpoint times and state size
from Flink's checkpoint statistics; the Flink JVM's CPU time by kind of thread (the JIT compilers,
the garbage collector, the checkpoints' snapshots and the rest) from /proc.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson
import psutil

from fraudstream.backtest.replay import private_store_environ
from fraudstream.config import KafkaSettings
from fraudstream.flink.jobinfo import JobInfo
from fraudstream.kafka.clients import connect_admin, partition_count

logger = logging.getLogger(__name__)


@dataclass
class JobRun:
    engine: str
    records: int = 0  # read by the source between the first and the last sample counted
    seconds: float = 0.0
    events_per_s: float = 0.0
    startup_s: float | None = None  # from starting the command to the first record read
    finished: bool = False  # read everything (else: stopped at the time limit)
    peak_rss_mb: dict[str, float] = field(default_factory=dict)
    checkpoint_ms: dict[str, float] = field(default_factory=dict)  # end-to-end duration: avg, max
    state_bytes: int | None = None  # the newest completed checkpoint's size
    exit_code: int | None = None
    # CPU seconds of the Flink JVM over the whole run, start-up included, by THREAD_KINDS and in total
    jvm_cpu_s: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# What a JVM thread does, from its name as Linux keeps it (the first 15 characters).
THREAD_KINDS = (
    ("C1 CompilerThre", "JIT compiler"),
    ("C2 CompilerThre", "JIT compiler"),
    ("GC Thread", "garbage collector"),
    ("G1 ", "garbage collector"),
    ("AsyncOperations", "checkpoint snapshots"),
)
OTHER_THREADS = "steps and the rest"  # the job's tasks, its Kafka clients, Flink's own services


def thread_kind(name: str) -> str:
    return next((kind for prefix, kind in THREAD_KINDS if name.startswith(prefix)), OTHER_THREADS)


def thread_cpu(pid: int) -> dict[int, tuple[str, float]]:
    """CPU seconds (user + system) of each live thread of process `pid`, with its name: {} where
    there is no /proc (Linux only) or the process has gone."""
    tick = os.sysconf("SC_CLK_TCK")
    found: dict[int, tuple[str, float]] = {}
    for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # the thread ended
        name = text[text.index("(") + 1 : text.rindex(")")]
        fields = text[text.rindex(")") + 2 :].split()  # utime and stime are fields 14 and 15 of stat
        found[int(stat.parent.name)] = (name, (int(fields[11]) + int(fields[12])) / tick)
    return found


def cpu_by_kind(threads: dict[int, tuple[str, float]]) -> dict[str, float]:
    """Seconds per kind of thread (thread_kind) and in total, from the latest sample of each."""
    kinds: dict[str, float] = {}
    for name, seconds in threads.values():
        kind = thread_kind(name)
        kinds[kind] = kinds.get(kind, 0.0) + seconds
    kinds["total"] = sum(kinds.values())
    return {kind: round(seconds, 1) for kind, seconds in kinds.items()}


def kafka_flags(k: KafkaSettings) -> list[str]:
    pairs = {
        "kafka.bootstrap_servers": k.bootstrap_servers,
        "kafka.raw_topic": k.raw_topic,
        "kafka.alerts_topic": k.alerts_topic,
        "kafka.dead_letter_topic": k.dead_letter_topic,
        "kafka.group_id": k.group_id,
    }
    return [arg for key, value in pairs.items() for arg in ("--set", f"{key}={value}")]


def rest_get(url: str) -> Any:
    """One GET of Flink's REST API, parsed."""
    with urllib.request.urlopen(url, timeout=2) as response:
        return orjson.loads(response.read())


def _classify(proc: psutil.Process, root: int) -> str:
    if proc.pid == root:
        return "driver (Python)"
    name = proc.name()
    if name == "java":
        return "Flink JVM"
    return "Python workers" if "python" in name else name


def _memory(root: psutil.Process) -> dict[str, float]:
    """RSS per kind of process in the run's tree, MB (several Python workers are summed)."""
    found: dict[str, float] = {}
    with contextlib.suppress(psutil.Error):
        for proc in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                kind = _classify(proc, root.pid)
                found[kind] = found.get(kind, 0.0) + proc.memory_info().rss / 1e6
    return found


def _sample_threads(root: psutil.Process, threads: dict[int, tuple[str, float]]) -> None:
    """Add the latest CPU times of the Flink JVM's threads (a thread that ends keeps its last)."""
    with contextlib.suppress(psutil.Error):
        for proc in root.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if proc.name() == "java":
                    threads.update(thread_cpu(proc.pid))


def run_job(
    engine: str,
    k: KafkaSettings,
    data_dir: Path,
    expected: int,
    max_seconds: float,
    extra: list[str] | None = None,
) -> JobRun:
    """Run the job bounded over the raw topic; stop it after `max_seconds` if still going.

    Throughput is the slope of the source's record count from its first record to the last
    sample (all `expected` records, or the time limit), so start-up is not counted in it.
    """
    result = JobRun(engine)
    data_dir.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-m", "fraudstream", "--data-dir", str(data_dir), *kafka_flags(k), *(extra or []),
        "run", "--source", "kafka", "--bounded", "--start-from", "earliest", "--engine", engine,
    ]  # fmt: skip
    log = (data_dir / "bench-run.log").open("wb")
    started = time.monotonic()
    # A SQLite store in data_dir, whatever store the user's environment names.
    proc = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True, env=private_store_environ()
    )
    root = psutil.Process(proc.pid)
    info_path = data_dir / "job.json"
    queries: dict[str, str] = {}
    partitions = partition_count(connect_admin(k), k.raw_topic)
    first: tuple[float, int] | None = None
    last: tuple[float, int] | None = None
    stopping = False
    threads: dict[int, tuple[str, float]] = {}
    try:
        while proc.poll() is None:
            time.sleep(0.25)
            for kind, mb in _memory(root).items():
                result.peak_rss_mb[kind] = max(result.peak_rss_mb.get(kind, 0.0), round(mb, 1))
            _sample_threads(root, threads)
            info = JobInfo.read(info_path)
            if info is None:
                continue
            base = f"http://127.0.0.1:{info.rest_port}/jobs/{info.job_id}"
            try:
                count = records_read(base, k.raw_topic, partitions, queries)
                _checkpoints(result, rest_get(f"{base}/checkpoints"))
            except (OSError, urllib.error.URLError, KeyError, IndexError, ValueError):
                continue
            now = time.monotonic()
            if count > 0 and first is None:
                first = (now, count)
                result.startup_s = round(now - started, 2)
            if first is not None and (last is None or count > last[1]):
                last = (now, count)
            if count >= expected:
                result.finished = True
            if not stopping and now - started > max_seconds:
                logger.info("%s: time limit reached after %d records; stopping it", engine, count)
                proc.send_signal(signal.SIGTERM)
                stopping = True
        result.exit_code = proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
    result.jvm_cpu_s = cpu_by_kind(threads) if threads else {}
    if first is not None and last is not None and last[0] > first[0]:
        result.records = last[1] - first[1]
        result.seconds = round(last[0] - first[0], 2)
        result.events_per_s = round(result.records / result.seconds, 1)
    return result


def records_read(base: str, topic: str, partitions: int, queries: dict[str, str]) -> int:
    """Records the Kafka source has consumed: the sum over partitions of its current offset
    (+1), from the reader's own metrics. Counting the source vertex's output instead would
    also count whatever else that chain emits (in the SQL engine, the high-value candidates).
    `queries` remembers, per job, the metrics URL, found once every partition's reader is up."""
    url = queries.get(base)
    if url is None:
        source = rest_get(base)["vertices"][0]["id"]
        names = [m["id"] for m in rest_get(f"{base}/vertices/{source}/metrics")]
        wanted = [
            n for n in names if f"KafkaSourceReader.topic.{topic}.partition." in n and n.endswith("currentOffset")
        ]
        if len(wanted) < partitions:
            raise KeyError("not every partition's reader has started")
        url = queries[base] = f"{base}/vertices/{source}/metrics?get={','.join(wanted)}"
    return sum(max(int(float(v["value"])) + 1, 0) for v in rest_get(url))


def _checkpoints(result: JobRun, stats: dict[str, Any]) -> None:
    summary = stats.get("summary", {}).get("end_to_end_duration", {})
    if summary.get("max") is not None and stats.get("counts", {}).get("completed", 0) > 0:
        result.checkpoint_ms = {"avg": float(summary.get("avg", 0)), "max": float(summary["max"])}
    latest = (stats.get("latest") or {}).get("completed") or {}
    if latest.get("state_size") is not None:
        result.state_bytes = int(latest.get("checkpointed_size") or latest["state_size"])
