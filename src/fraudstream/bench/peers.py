"""The benchmark's peers: other stream processors running the same rules on the same records.

One peer today, Quix Streams (`quix_peer.py`), in a virtual environment of its own
(`.venv-peers` beside the repository's `.venv`): quixstreams pins confluent-kafka and
pydantic below the versions fraudstream's constraints pin. `make setup` creates it
(`python -m fraudstream.bench.peers`), and the bench does on demand when it is missing.
The peer runs as a subprocess and is measured from outside, as `jobs.run_job` measures a
job: start-up from the command to its first record, throughput over the records, peak RSS,
exit code; its alerts are counted on its alerts topic, read committed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson
import psutil
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from fraudstream.config import DetectorSettings, KafkaSettings
from fraudstream.detectors.base import RULE_ALERT_TYPES
from fraudstream.kafka.clients import client_config

logger = logging.getLogger(__name__)

# What the peer's environment holds: quixstreams and the direct dependencies that set its
# speed, pinned (the rest as quixstreams asks); no extras.
PEER_REQUIREMENTS = ("quixstreams==3.28.1", "orjson==3.13.0", "confluent-kafka==2.12.2", "rocksdict==0.3.29")
PEER_SCRIPT = Path(__file__).with_name("quix_peer.py")
GUARANTEES = ("at-least-once", "exactly-once")
_VENV = ".venv-peers"


@dataclass
class PeerRun:
    peer: str  # "quix" + its processing guarantee
    processing_guarantee: str
    records: int = 0  # raw records read (all of them when finished)
    seconds: float = 0.0  # from its first record read to every order through both key kinds
    events_per_s: float = 0.0
    source_events_per_s: float = 0.0  # the raw topic's read rate alone (ends before the re-keyed tail)
    startup_s: float | None = None  # from starting the command to its first record read
    ready_s: float | None = None  # from starting the command to the app defined, its topics created
    finished: bool = False
    peak_rss_mb: float = 0.0
    exit_code: int | None = None
    alerts_by_type: dict[str, int] = field(default_factory=dict)  # on its alerts topic, committed
    alerts: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def peers_venv() -> Path:
    """Where the peers' environment lives: FRAUDSTREAM_PEERS_VENV, else `.venv-peers` at the
    root of the checkout this module runs from (else in the current directory)."""
    given = os.environ.get("FRAUDSTREAM_PEERS_VENV")
    if given:
        return Path(given)
    root = Path(__file__).resolve().parents[3]
    return (root if (root / "pyproject.toml").exists() else Path.cwd()) / _VENV


def peer_python(echo=logger.info) -> Path:
    """The peers' interpreter, the environment created (or brought up to the pins) first."""
    venv = peers_venv()
    stamp = venv / ".installed"
    wanted = "\n".join(PEER_REQUIREMENTS) + "\n"
    python = venv / "bin" / "python"
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    echo(f"creating the peers' environment {venv} ({', '.join(PEER_REQUIREMENTS)}; about 30 s)")
    shutil.rmtree(venv, ignore_errors=True)
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(venv)], check=True)
    (venv / ".gitignore").write_text("*\n")  # a build artefact, as .venv is
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *PEER_REQUIREMENTS], check=True
    )
    stamp.write_text(wanted)
    return python


def rules_config(d: DetectorSettings) -> dict[str, Any]:
    """The run's detector settings as the peer reads them: each switched-on rule with its
    alert type, severity, threshold, window and cooldown; the details lists' cap."""
    out: dict[str, Any] = {"list_max": d.detail_list_max}
    params = {
        "velocity": {"threshold": d.velocity_threshold, "window_ms": d.velocity_window_ms},
        "device_sharing": {"threshold": d.device_sharing_threshold, "window_ms": d.device_sharing_window_ms},
        "high_value": {"threshold": d.high_value_threshold},
        "geo": {"window_ms": d.geo_window_ms},
    }
    for rule, alert_type in RULE_ALERT_TYPES.items():
        if getattr(d, f"{rule}_enabled"):
            out[rule] = {
                "alert_type": alert_type,
                "severity": getattr(d, f"{rule}_severity"),
                "cooldown_ms": d.cooldown_of(rule),
                **params[rule],
            }
    return out


def _lines(stream: IO[bytes], into: queue.Queue) -> None:
    """Each stdout line of the peer, stamped with when it arrived (the measurement's clock)."""
    for line in stream:
        into.put((time.monotonic(), line))
    into.put((time.monotonic(), None))


def run_quix(
    k: KafkaSettings,
    work: Path,
    expected: int,
    detectors: DetectorSettings,
    guarantee: str,
    commit_interval_s: float,
    max_seconds: float,
    python: Path | None = None,
) -> PeerRun:
    """Run the Quix Streams peer over the raw topic's `expected` records into a fresh alerts
    topic, watched from outside; stop it after `max_seconds` if still going."""
    if guarantee not in GUARANTEES:
        raise ValueError(f"processing guarantee must be one of {GUARANTEES}, got {guarantee!r}")
    python = python or peer_python()
    result = PeerRun(f"quix {guarantee}", guarantee)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    tag = uuid.uuid4().hex[:8]
    alerts_topic = f"bench-peer-alerts-{tag}"
    config = {
        "bootstrap_servers": k.bootstrap_servers,
        "raw_topic": k.raw_topic,
        "alerts_topic": alerts_topic,
        "consumer_group": f"bench-quix-{tag}",
        "processing_guarantee": guarantee,
        "commit_interval_s": commit_interval_s,
        "state_dir": str(work / "state"),
        "expected": expected,
        "rules": rules_config(detectors),
        "loglevel": os.environ.get("FRAUDSTREAM_PEER_LOGLEVEL", "WARNING"),
    }
    (work / "config.json").write_bytes(orjson.dumps(config, option=orjson.OPT_INDENT_2))
    log = (work / "peer.log").open("wb")
    started = time.monotonic()
    proc = subprocess.Popen(
        [str(python), str(PEER_SCRIPT), str(work / "config.json")],
        stdout=subprocess.PIPE,
        stderr=log,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    lines: queue.Queue = queue.Queue()
    reader = threading.Thread(target=_lines, args=(proc.stdout, lines), daemon=True)
    reader.start()
    root = psutil.Process(proc.pid)
    first: tuple[float, int] | None = None
    source_end: tuple[float, int] | None = None
    done_at: float | None = None
    stopping = False
    try:
        while proc.poll() is None or reader.is_alive():
            with contextlib.suppress(psutil.Error):
                rss = sum(p.memory_info().rss for p in [root, *root.children(recursive=True)]) / 1e6
                result.peak_rss_mb = max(result.peak_rss_mb, round(rss, 1))
            with contextlib.suppress(queue.Empty):
                deadline = time.monotonic() + 0.1
                while (left := deadline - time.monotonic()) > 0:
                    at, line = lines.get(timeout=left)
                    if line is None:
                        break
                    report = orjson.loads(line)
                    if report.get("exited"):
                        continue
                    if report.get("ready"):
                        result.ready_s = round(at - started, 2)
                        continue
                    count = report["records"]
                    if first is None and count > 0:
                        first = (at, count)
                        result.startup_s = round(at - started, 2)
                    if source_end is None or count > source_end[1]:
                        source_end = (at, count)
                    result.records = count
                    if report.get("done"):
                        done_at = at
                        result.finished = True
            elapsed = time.monotonic() - started
            if not stopping and elapsed > max_seconds:
                logger.info("quix peer (%s): time limit reached at %d records; stopping it", guarantee, result.records)
                proc.send_signal(signal.SIGTERM)
                stopping = True
            elif stopping and elapsed > max_seconds + 60 and proc.poll() is None:
                logger.warning("quix peer (%s): still running a minute after SIGTERM; killing it", guarantee)
                os.killpg(proc.pid, signal.SIGKILL)
        result.exit_code = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
    end = done_at if done_at is not None else (source_end[0] if source_end else None)
    if first is not None and end is not None and end > first[0]:
        result.seconds = round(end - first[0], 2)
        result.events_per_s = round((result.records - first[1]) / result.seconds, 1)
    if first is not None and source_end is not None and source_end[0] > first[0]:
        result.source_events_per_s = round((source_end[1] - first[1]) / (source_end[0] - first[0]), 1)
    result.alerts_by_type = count_alerts(k, alerts_topic)
    result.alerts = sum(result.alerts_by_type.values())
    logger.info(
        "quix peer (%s): %.0f events/s over %d records, start-up %s s, %d alerts %s, exit %s",
        guarantee,
        result.events_per_s,
        result.records,
        result.startup_s,
        result.alerts,
        result.alerts_by_type,
        result.exit_code,
    )
    return result


def count_alerts(k: KafkaSettings, topic: str, timeout_s: float = 30.0) -> dict[str, int]:
    """Alerts per type on `topic`, committed ones only, up to the end the topic has now."""
    consumer = Consumer(
        client_config(
            k,
            **{
                "group.id": f"bench-peer-count-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "isolation.level": "read_committed",
                "enable.partition.eof": True,
            },
        )
    )
    counts: dict[str, int] = {}
    try:
        meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None:
            return counts
        left = set()
        for p in meta.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if high > low:
                left.add(p)
        consumer.assign([TopicPartition(topic, p, 0) for p in left])
        deadline = time.monotonic() + timeout_s
        # A partition is read when it reports its end (past any transaction markers).
        while left and time.monotonic() < deadline:
            for m in consumer.consume(10_000, timeout=0.5):
                err = m.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        left.discard(m.partition())
                        continue
                    raise KafkaException(err)
                alert_type = orjson.loads(m.value())["alert_type"]
                counts[alert_type] = counts.get(alert_type, 0) + 1
        if left:
            logger.warning("counting alerts on %s: partitions %s not read to their end", topic, sorted(left))
    finally:
        consumer.close()
    return dict(sorted(counts.items()))


def main() -> None:
    """`python -m fraudstream.bench.peers`: create the peers' environment (make setup); the
    stamp is touched even when it was up to date, so that make sees it newer than this file."""
    python = peer_python(echo=print)
    (peers_venv() / ".installed").touch()
    print(f"peers' environment: {python}")


if __name__ == "__main__":
    main()
