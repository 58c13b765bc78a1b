"""This process's own metrics (the store copier, notifications), beside the job's, which
Flink's Prometheus reporter exposes from the JVM. One registry per process; `serve` exposes
it on `metrics.host:metrics.process_port`."""

from __future__ import annotations

import logging
from collections import Counter as Tally
from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from fraudstream.config import MetricsSettings

logger = logging.getLogger(__name__)

REGISTRY = CollectorRegistry(auto_describe=True)

STORED = Counter(
    "fraudstream_store_records",
    "Records written to the alert store, by kind (alert, dead_letter)",
    ["kind"],
    registry=REGISTRY,
)
COPIER_LAG = Gauge(
    "fraudstream_copier_lag_records",
    "Records committed to a topic partition that the store has not copied yet",
    ["topic", "partition"],
    registry=REGISTRY,
)
NOTIFICATIONS = Counter(
    "fraudstream_notifications",
    "Notifications per receiver and result: messages sent or failed, alerts suppressed or dropped",
    ["receiver", "result"],
    registry=REGISTRY,
)


# The store's record kinds, by the class of what is written (Alert, DeadLetter).
_KINDS = {"Alert": "alert", "DeadLetter": "dead_letter"}


def count_stored(records: Iterable[object]) -> None:
    """Count records just committed to the store, by kind (`fraudstream_store_records_total`)."""
    for kind, n in Tally(_KINDS.get(type(r).__name__, "other") for r in records).items():
        STORED.labels(kind=kind).inc(n)


def set_copier_lag(topic: str, partition: int, records: int) -> None:
    COPIER_LAG.labels(topic=topic, partition=str(partition)).set(max(0, records))


def serve(settings: MetricsSettings) -> Any | None:
    """Start the HTTP endpoint (a daemon thread); None when metrics are off or the port is
    taken (one warning line: the run goes on without them). Returns the server, whose
    `server_port` is the port chosen when `process_port` is 0; `shutdown()` stops it."""
    if not settings.enabled:
        return None
    try:
        server, _thread = start_http_server(settings.process_port, addr=settings.host, registry=REGISTRY)
    except OSError as exc:
        logger.warning(
            "this process's metrics are not exposed: %s:%d is not free (%s); set metrics.process_port",
            settings.host,
            settings.process_port,
            exc.strerror,
        )
        return None
    logger.info("metrics on http://%s:%d/metrics", settings.host, server.server_port)
    return server
