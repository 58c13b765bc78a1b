"""Pipeline health for the page: is the job running, orders and alerts per second, dead
letters, event-time lag, the latest checkpoint, and the store copier against the topics' ends.

Every outside call (the job's REST API, the broker) has a short timeout, and `collect` is
called from a worker thread, so a slow or absent job or broker never stalls the page: what
cannot be learnt is reported as unknown, with the reason.
"""

from __future__ import annotations

import logging
import re
import time
import urllib.request
from collections import deque
from typing import Any

import orjson

from fraudstream.config import Settings
from fraudstream.flink.jobinfo import JobInfo
from fraudstream.store import db, queries
from fraudstream.store.schema import SchemaTooNew

logger = logging.getLogger(__name__)

NO_WATERMARK = -(2**62)  # Flink reports Long.MIN_VALUE before the first watermark
_SOURCE_RATE = re.compile(r"^\d+\.Source__[^.]+\.numRecordsOutPerSecond$")
_VERTEX_RATE = re.compile(r"^\d+\.numRecordsOutPerSecond$")
KAFKA_RETRY_S = 10.0  # after the broker failed to answer, ask again only this much later
RATE_WINDOW_S = 10.0  # alerts per second: over this much of the past
REST_BUDGET_S = 2.5  # all of a snapshot's calls to the job's REST API, together
# Offsets per partition a copier that has copied everything may still trail the topic's end by:
# a transaction's commit marker takes an offset and is never a record to copy (see _copier).
MARKER_ALLOWANCE = 1


def copier_position(positions: list[dict[str, Any]], ends: list[int]) -> dict[str, Any]:
    """The copier's position against each partition's end, net of transaction markers.

    The job writes Kafka in transactions; each one ends in a marker that takes an offset but is
    no record, so a copier that has copied everything trails a partition by up to
    MARKER_ALLOWANCE (the marker of the last, or the still open, transaction): `behind` (per
    partition and in total) counts what lies beyond that, `gap` the raw difference, and
    `caught_up` says whether every partition is within the allowance. An aborted transaction's
    records (never visible to a read_committed reader) and its abort marker take offsets too:
    at a partition's end they show as behind until the job commits something past them."""
    rows = []
    for p, end in zip(positions, ends, strict=True):
        gap = max(end - p["next_offset"], 0)
        rows.append({**p, "end": end, "gap": gap, "behind": max(gap - MARKER_ALLOWANCE, 0)})
    return {
        "state": "ok",
        "partitions": rows,
        "behind": sum(r["behind"] for r in rows),
        "caught_up": all(r["behind"] == 0 for r in rows),
    }


class HealthCollector:
    """Gathers one health snapshot per `collect()` (blocking, bounded by its timeouts)."""

    def __init__(self, settings: Settings, rest_timeout_s: float = 1.0, kafka_timeout_s: float = 1.0) -> None:
        self.settings = settings
        self.rest_timeout_s = rest_timeout_s
        self.kafka_timeout_s = kafka_timeout_s
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # the job is local
        self._deadline = 0.0  # when this snapshot stops asking the job (a hanging REST API)
        self._counts: deque[tuple[float, int]] = deque()  # (time, rows) over the last RATE_WINDOW_S
        self._rate_metrics: dict[str, tuple[str, list[str]]] = {}  # job id -> (source vertex, metric names)
        self._consumer: Any = None
        self._kafka_failed_at: float | None = None
        self._kafka_error = ""
        self._unreachable = False  # the store's PostgreSQL server, at the last snapshot

    # -- the store --------------------------------------------------------------------------

    def _store(self, now: float) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        location = db.Location.of(self.settings)
        where = {"kind": location.dialect, "location": str(location)}  # a URL's password masked
        try:
            conn = queries.open_read_only(location, busy_timeout_ms=500)
        except db.StoreMissingError as exc:
            self._counts.clear()
            return {**where, "present": False, "message": f"no store yet: {exc}"}, []
        except db.StoreUnreachable as exc:
            logger.log(logging.DEBUG if self._unreachable else logging.WARNING, "pipeline health: %s", exc)
            self._unreachable = True  # said once per outage, not every snapshot
            return {**where, "present": False, "message": "the store's PostgreSQL server does not answer"}, []
        except SchemaTooNew as exc:
            return {**where, "present": False, "message": str(exc)}, []
        self._unreachable = False
        try:
            count = queries.alert_count(conn)
            # Over several seconds: the store receives alerts in batches (and, from Kafka, at checkpoints).
            while self._counts and now - self._counts[0][0] > RATE_WINDOW_S:
                self._counts.popleft()
            rate = None
            if self._counts and now > self._counts[0][0]:
                rate = round(max(count - self._counts[0][1], 0) / (now - self._counts[0][0]), 2)
            self._counts.append((now, count))
            store = {
                **where,
                "present": True,
                "alerts": count,
                "alerts_per_s": rate,
                "dead_letters": queries.dead_letter_counts(conn),
            }
            return store, queries.source_positions(conn)
        except db.ERRORS:  # the database's text is for the log, not the page
            logger.warning("pipeline health: the store could not be read", exc_info=True)
            return {**where, "present": True, "message": "the store cannot be read now"}, []
        finally:
            conn.close()

    # -- the job ----------------------------------------------------------------------------

    def _get(self, url: str) -> Any:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the job's REST API is slow: the rest of this snapshot is skipped")
        with self._opener.open(url, timeout=min(self.rest_timeout_s, left)) as response:
            return orjson.loads(response.read())

    def _job(self) -> dict[str, Any]:
        path = JobInfo.path(self.settings)
        ref = JobInfo.read(path)
        if ref is None:
            return {"running": False, "message": "no job is running (start one with 'fraudstream run')"}
        if not ref.is_running():
            return {"running": False, "message": f"the job recorded in {path} (PID {ref.pid}) has ended"}
        base = f"{ref.rest_url(self.settings)}/jobs/{ref.job_id}"  # the mini-cluster's or a cluster's
        try:
            job = self._get(base)
        except (OSError, ValueError) as exc:
            return {
                "running": True,
                "job_id": ref.job_id,
                "state": "unknown",
                "message": f"REST does not answer: {exc}",
            }
        out: dict[str, Any] = {
            "running": job.get("state") == "RUNNING",
            "job_id": ref.job_id,
            "state": job.get("state"),
        }
        vertices = job.get("vertices") or []
        answered: dict[str, float] = {}  # when each answer came: ages count from then, not from the first call
        for name, part in (
            ("orders_per_s", self._orders_rate),
            ("watermark", self._watermark),
            ("checkpoint", self._checkpoint),
        ):
            try:
                out[name] = part(base, ref.job_id, vertices)
                answered[name] = time.time()
            except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
                logger.debug("job health: %s unavailable", name, exc_info=True)
                out[name] = None
                out.setdefault("problems", []).append(f"{name}: {exc}")
        wm = out.get("watermark")
        out["event_time_lag_ms"] = None if wm is None else int(answered["watermark"] * 1000) - wm
        cp = out.get("checkpoint")
        if cp is not None and cp.get("completed_at") is not None:
            cp["age_ms"] = int(answered["checkpoint"] * 1000) - cp["completed_at"]
        return out

    def _orders_rate(self, base: str, job_id: str, vertices: list[dict[str, Any]]) -> float | None:
        """Records per second out of the source operator (what the job reads), over its subtasks."""
        if not vertices:
            return None
        if job_id not in self._rate_metrics:
            source = vertices[0]["id"]
            names = [m["id"] for m in self._get(f"{base}/vertices/{source}/metrics")]
            wanted = [n for n in names if _SOURCE_RATE.match(n)] or [n for n in names if _VERTEX_RATE.match(n)]
            if not wanted:
                return None
            self._rate_metrics[job_id] = (source, wanted)
        source, wanted = self._rate_metrics[job_id]
        values = self._get(f"{base}/vertices/{source}/metrics?get={','.join(wanted)}")
        return round(sum(float(v["value"]) for v in values), 2)

    def _watermark(self, base: str, job_id: str, vertices: list[dict[str, Any]]) -> int | None:
        """The job's event time: the lowest input watermark of its operators (the one that
        decides when windows close and alerts come out)."""
        found = []
        for vertex in vertices[1:]:
            for entry in self._get(f"{base}/vertices/{vertex['id']}/watermarks"):
                value = int(float(entry["value"]))
                if value > NO_WATERMARK:
                    found.append(value)
        return min(found) if found else None

    def _checkpoint(self, base: str, job_id: str, vertices: list[dict[str, Any]]) -> dict[str, Any] | None:
        stats = self._get(f"{base}/checkpoints")
        latest = (stats.get("latest") or {}).get("completed")
        counts = stats.get("counts") or {}
        if not latest:
            return {"completed": counts.get("completed", 0), "failed": counts.get("failed", 0)}
        return {
            "id": latest.get("id"),
            "completed_at": latest.get("latest_ack_timestamp"),
            "duration_ms": latest.get("end_to_end_duration"),
            "size_bytes": latest.get("checkpointed_size") or latest.get("state_size"),
            "completed": counts.get("completed", 0),
            "failed": counts.get("failed", 0),
        }

    # -- the copier -------------------------------------------------------------------------

    def _copier(self, positions: list[dict[str, Any]], now: float) -> dict[str, Any]:
        if not positions:
            return {"state": "none", "message": "no Kafka copy in this store (runs without Kafka write it directly)"}
        if self._kafka_failed_at is not None and now - self._kafka_failed_at < KAFKA_RETRY_S:
            return {"state": "unknown", "message": self._kafka_error, "partitions": positions}
        try:
            from confluent_kafka import KafkaException, TopicPartition

            if self._consumer is None:
                from confluent_kafka import Consumer

                from fraudstream.kafka.clients import client_config

                conf = client_config(
                    self.settings.kafka,
                    **{
                        "group.id": "fraudstream-dashboard",
                        "enable.auto.commit": False,
                        "isolation.level": "read_committed",
                    },
                )
                self._consumer = Consumer(conf)
            ends = []
            for p in positions:
                _low, high = self._consumer.get_watermark_offsets(
                    TopicPartition(p["topic"], p["partition"]), timeout=self.kafka_timeout_s, cached=False
                )
                ends.append(high)
        except (KafkaException, RuntimeError) as exc:
            self._kafka_failed_at = now
            self._kafka_error = f"the broker at {self.settings.kafka.bootstrap_servers} does not answer ({exc})"
            return {"state": "unknown", "message": self._kafka_error, "partitions": positions}
        self._kafka_failed_at = None
        return copier_position(positions, ends)

    # -- all of it --------------------------------------------------------------------------

    def collect(self) -> dict[str, Any]:
        started = time.monotonic()
        now = time.time()
        store, positions = self._store(now)
        self._deadline = time.monotonic() + REST_BUDGET_S
        health = {
            "time": int(now * 1000),
            "store": store,
            "job": self._job(),
            "copier": self._copier(positions, now),
        }
        health["collected_in_ms"] = round((time.monotonic() - started) * 1000, 1)
        return health

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
