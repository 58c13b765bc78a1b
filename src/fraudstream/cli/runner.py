"""`fraudstream run`: submit the job, then route what it emits to console, app.log and SQLite.

The job's alerts and dead letters stream back to this process, which owns the outputs,
so a Ctrl-C or SIGTERM here can stop the job and still flush every alert received.
"""

from __future__ import annotations

import logging
import signal
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType

from fraudstream.cli.format import alert_line, dead_letter_line, order_line
from fraudstream.cli.logs import ALERT_LOGGER
from fraudstream.config import Settings
from fraudstream.flink.job import build_job
from fraudstream.flink.sources import SourceSpec
from fraudstream.store import AlertStore, BatchWriter

logger = logging.getLogger(__name__)
alert_log = logging.getLogger(ALERT_LOGGER)


class Stopped(Exception):
    """Raised in the main thread when SIGTERM arrives."""


@dataclass
class RunSummary:
    alerts: Counter[str] = field(default_factory=Counter)
    dead_letters: Counter[str] = field(default_factory=Counter)
    orders_echoed: int = 0
    stored: int = 0
    interrupted: bool = False
    seconds: float = 0.0


def run_job(settings: Settings, spec: SourceSpec, echo: Callable[[str], None]) -> RunSummary:
    summary = RunSummary()
    started = time.monotonic()
    store = AlertStore(settings.db_path)
    writer: BatchWriter = BatchWriter(
        store.write_batch,
        batch_size=settings.store.batch_size,
        flush_interval_s=settings.store.flush_interval_ms / 1000,
        name="sqlite-writer",
    )

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise Stopped()

    previous = signal.signal(signal.SIGTERM, on_term)
    results = None
    try:
        graph = build_job(settings, spec)
        results = graph.output.execute_and_collect("fraudstream")
        logger.info("job submitted: source=%s", spec.kind)
        for kind, record in results:
            if kind == "alert":
                summary.alerts[record.alert_type] += 1
                line = alert_line(record)
                echo(line)
                alert_log.info(line)
                writer.submit(record)
            elif kind == "dead":
                summary.dead_letters[record.reason] += 1
                line = dead_letter_line(record)
                logger.warning(line)
                if settings.pipeline.verbose:
                    echo(line)
                writer.submit(record)
            else:
                summary.orders_echoed += 1
                echo(order_line(record))
    except (KeyboardInterrupt, Stopped):
        summary.interrupted = True
        logger.info("stop requested; flushing outputs")
    finally:
        signal.signal(signal.SIGTERM, previous)
        if results is not None:
            try:
                results.close()  # cancels the job if it is still running
            except Exception:  # the job may already be gone; nothing left to close
                logger.debug("closing the result stream failed", exc_info=True)
        writer.close()
        store.close()
        summary.stored = writer.written
        summary.seconds = time.monotonic() - started
    return summary
