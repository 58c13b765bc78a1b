"""`fraudstream run`: submit the job, then route what it emits to console, app.log and SQLite.

The job's alerts and dead letters stream back to this process, which owns the outputs,
so a Ctrl-C or SIGTERM here can stop the job and still flush every alert received.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import orjson

from fraudstream.cli.format import alert_line, dead_letter_line, order_line
from fraudstream.cli.logs import ALERT_LOGGER, FILE_ONLY
from fraudstream.config import Settings
from fraudstream.detectors.base import Alert
from fraudstream.errors import UserFacingError
from fraudstream.flink import checkpoints, remote, reporter
from fraudstream.flink.gateway import stop_gateway
from fraudstream.flink.job import build_job
from fraudstream.flink.jobinfo import JobInfo, process_start
from fraudstream.flink.sources import SourceSpec
from fraudstream.metrics import process as process_metrics
from fraudstream.notify import Notifier
from fraudstream.store import AlertStore, BatchWriter
from fraudstream.store.db import Location
from fraudstream.store.writer import UnwrittenItems

logger = logging.getLogger(__name__)
alert_log = logging.getLogger(ALERT_LOGGER)
dead_log = logging.getLogger("fraudstream.dead_letters")


class JobFailed(RuntimeError):
    """The job failed. Carries the error's text, read while Flink's JVM was still there: a
    py4j error asked for its message after the gateway has stopped fails in turn."""


def _error_text(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:
        return type(exc).__name__


def _java_name(exc: BaseException) -> str:
    """The Java exception's class behind a py4j error (`TimeoutException`), else the Python one's."""
    try:
        return str(exc.java_exception.getClass().getSimpleName())  # type: ignore[attr-defined]
    except Exception:
        return type(exc).__name__


class OffsetsNotCommitted(UserFacingError):
    """A bounded run finished, but its end position could not be recorded."""


class CopierFailed(UserFacingError):
    """The store's copier stopped; a run without it would go on filling Kafka but not SQLite."""


class StoreNotFlushed(UserFacingError):
    """The last writes to SQLite failed; what they held was saved to a file instead."""


class ClusterGone(UserFacingError):
    """The cluster's REST endpoint stopped answering: nothing tells whether the job still runs."""


# A cluster that does not answer `GET /jobs/<id>` this many times in a row (one try every
# 2 s, each of at most CANCEL_TIMEOUT_S / 5) is given up on: about 20 s.
UNANSWERED_LIMIT = 10
CANCEL_TIMEOUT_S = 10.0


class ClusterWatch:
    """Whether the cluster still answers for the job. The job's own result future keeps
    retrying a vanished cluster for ever, so the driver would wait with it."""

    def __init__(self, host: str, port: int, job_id: str, limit: int = UNANSWERED_LIMIT, timeout_s: float = 2.0):
        self.address = f"{host}:{port}"
        self.job_id = job_id
        self.limit = limit
        self.timeout_s = timeout_s
        self.unanswered = 0

    def check(self) -> str | None:
        """None while the cluster answers (or has not yet failed `limit` times in a row), else the line to stop with."""
        try:
            with urllib.request.urlopen(f"http://{self.address}/jobs/{self.job_id}", timeout=self.timeout_s):
                pass
        except urllib.error.HTTPError:
            pass  # it answered (a job it no longer knows is the job's result's to report)
        except OSError as exc:
            self.unanswered += 1
            if self.unanswered >= self.limit:
                return (
                    f"the cluster at {self.address} stopped answering; job {self.job_id}'s state is unknown: "
                    f"{getattr(exc, 'reason', exc)} ({self.unanswered} tries in a row)"
                )
            return None
        self.unanswered = 0
        return None


def cancel_job(client: Any, timeout_s: float = CANCEL_TIMEOUT_S) -> None:
    """Cancel the job, waiting at most `timeout_s` (the future never ends when the cluster is gone)."""
    from pyflink.java_gateway import get_gateway

    seconds = get_gateway().jvm.java.util.concurrent.TimeUnit.SECONDS
    client.cancel()._j_completable_future.get(int(timeout_s), seconds)


@dataclass
class RunSummary:
    alerts: Counter[str] = field(default_factory=Counter)
    dead_letters: Counter[str] = field(default_factory=Counter)
    orders_echoed: int = 0
    stored: int = 0
    interrupted: bool = False
    seconds: float = 0.0


def run_job(
    settings: Settings, spec: SourceSpec, echo: Callable[[str], None], restore_from: str | None = None
) -> RunSummary:
    """Run the job until its source ends or SIGINT/SIGTERM arrives; always flush the store."""
    info_file = JobInfo.path(settings)
    other = JobInfo.read(info_file)
    if other is not None and other.pid != os.getpid() and other.is_running():
        raise UserFacingError(
            f"another run (PID {other.pid}) is using {settings.data_dir}: stop it first, or use another --data-dir"
        )
    summary = RunSummary()
    started = time.monotonic()
    metrics_server = None
    store = AlertStore.open(settings)  # SQLite at store.db_path, or PostgreSQL at store.url
    writer: BatchWriter = BatchWriter(
        store.write_batch,
        batch_size=settings.store.batch_size,
        flush_interval_s=settings.store.flush_interval_ms / 1000,
        name="sqlite-writer",
        # While SQLite fails, a hundred batches wait at most; then the result stream waits.
        max_pending=100 * settings.store.batch_size,
        max_backoff_s=settings.store.retry_max_backoff_ms / 1000,
    )
    mirror = None
    mirror_stop = threading.Event()
    copier: threading.Thread | None = None
    copier_failed: BaseException | None = None
    flush_error: str | None = None
    stop = threading.Event()
    finished = threading.Event()
    failure: list[BaseException] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():  # a second Ctrl-C: give up on a graceful stop
            raise KeyboardInterrupt
        logger.info("signal %d: stopping the job and flushing outputs", signum)
        stop.set()

    handlers = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    notifier: Notifier | None = None
    try:
        # Inside the try, so that the finally stops it whatever fails after.
        metrics_server = process_metrics.serve(settings.metrics)  # the copier's and notifications' metrics
        if settings.notify.enabled:
            # Beside the store, never in the job: it reads the rows the writer or the copier committed.
            notifier = Notifier(settings).start()
        if spec.kind == "kafka":
            from fraudstream.store.mirror import TopicMirror

            mirror = TopicMirror(
                settings,
                store,
                on_alert=lambda a: _route("alert", a, settings, summary, None, echo),
                on_dead=lambda d: _route("dead", d, settings, summary, None, echo),
            )
        graph = build_job(settings, spec, restore_from=restore_from)
        client, results = graph.start("fraudstream")
        job_id = str(client.get_job_id())
        if settings.cluster.jobmanager is not None:  # the cluster's REST endpoint, not one of ours
            rest_host, port = remote.split(settings.cluster.jobmanager)
        else:
            rest_host, port = None, checkpoints.rest_port(client, settings.pipeline.rest_port)
        JobInfo(os.getpid(), job_id, port, settings.savepoint_uri, process_start(os.getpid()), rest_host).write(
            info_file
        )
        logger.info(
            "job %s submitted%s: source=%s%s (%.1f s)",
            job_id,
            f" to the cluster at {settings.cluster.jobmanager}" if rest_host is not None else "",
            spec.kind,
            f", restored from {restore_from}" if restore_from else "",
            time.monotonic() - started,
        )

        def wait_for_job() -> None:
            # py4j must not be interrupted mid-call, so the job is followed here, off the
            # main thread, which only waits for the end or a stop signal.
            try:
                if results is not None:
                    for kind, record in results:
                        _route(kind, record, settings, summary, writer, echo)
                client.get_job_execution_result().result()
            except Exception as exc:
                if not stop.is_set():
                    failure.append(JobFailed(_error_text(exc)))
            finally:
                finished.set()

        threading.Thread(target=wait_for_job, name="job-results", daemon=True).start()
        # None: off, on a cluster (its own reporters, if any), or one warning logged
        metrics_url = reporter.endpoint(settings, job_id, timeout_s=10.0) if rest_host is None else None
        if metrics_url is not None:
            echo(f"job metrics: {metrics_url}")
        if mirror is not None:
            copier = threading.Thread(target=mirror.follow, args=(mirror_stop,), name="store-mirror", daemon=True)
            copier.start()
        failures: set[int] = set()
        watch = ClusterWatch(rest_host, port, job_id) if rest_host is not None else None
        next_check = time.monotonic() + 2
        while not finished.wait(0.2):
            if notifier is not None:
                notifier.check()  # a dead receiver is said loudly, once; the run goes on
            if mirror is not None and mirror.failure is not None and not stop.is_set():
                copier_failed = mirror.failure  # no run without its copier: stop the job too
                stop.set()
            if time.monotonic() >= next_check:
                next_check = time.monotonic() + 2
                for line in checkpoints.new_failures(port, job_id, failures, rest_host or settings.pipeline.reach_host):
                    logger.warning("the job failed and restarts from its last checkpoint: %s", line)
                gone = watch.check() if watch is not None else None
                if gone is not None:
                    failure.append(ClusterGone(gone))  # no cancel: nothing would answer it
                    summary.interrupted = True
                    break
            if stop.is_set():
                summary.interrupted = True
                try:
                    cancel_job(client)
                    cancelled = True
                except Exception as exc:
                    cancelled = False
                    logger.debug("cancelling the job failed", exc_info=True)
                    if rest_host is not None:
                        logger.warning(
                            "the job %s was not cancelled on the cluster at %s (no answer in %g s: %s); "
                            "it may still run there",
                            job_id, settings.cluster.jobmanager, CANCEL_TIMEOUT_S, _java_name(exc),
                        )  # fmt: skip
                # Closing the result stream asks the cluster for the job's state with no time
                # limit (Flink's CollectResultFetcher), so not when the cancel went unanswered.
                if results is not None and cancelled:
                    try:
                        results.close()
                    except Exception:
                        logger.debug("closing the result stream failed", exc_info=True)
                finished.wait(15 if cancelled else 1)
                break
        # A finished bounded run records its end at once, not after the copier has drained
        # (seconds): a kill in between would make the next run read the tail again. It is
        # called again below (a no-op once it succeeded), where a failure is reported.
        ended = not summary.interrupted and not failure and not JobInfo.stop_marker(info_file).exists()
        run = checkpoints.current_run()
        if ended and run is not None:  # before the commit: a kill now is repaired by the next run
            run.update(job_finished=True)
        if ended and graph.on_finished is not None:
            try:
                graph.on_finished()
            except Exception:
                logger.debug("committing the end offsets failed; retried after the copier", exc_info=True)
        if mirror is not None and copier is not None:
            mirror_stop.set()
            copier.join()
            copier_failed = copier_failed or mirror.failure
            if copier_failed is not None:
                raise CopierFailed(
                    f"the store's copier stopped, and the job with it: {_error_text(copier_failed)} "
                    f"(what the job committed to Kafka is copied into {Location.of(settings)} by the next run)"
                )
            # Whatever the job committed before it ended (all of it, after a bounded run).
            mirror.drain(idle_s=2.0 if summary.interrupted or failure else 5.0)
        if failure:
            raise failure[0]
        if JobInfo.stop_marker(info_file).exists():  # `fraudstream savepoint --stop` ended it
            summary.interrupted = True
        if not summary.interrupted and graph.on_finished is not None:
            try:
                graph.on_finished()
            except Exception as exc:
                raise OffsetsNotCommitted(
                    f"the job finished, but committing the consumer group's offsets failed ({_error_text(exc)}): "
                    "the next --start-from committed run will read this input again"
                ) from None
            logger.info("bounded run complete; consumer group position committed")
    except JobFailed as exc:
        logger.error("the job failed: %s", exc, extra=FILE_ONLY)
        raise
    except Exception as exc:
        if isinstance(exc, UserFacingError):
            raise
        text = _error_text(exc)
        logger.error("the job failed: %s", text, extra=FILE_ONLY)
        raise JobFailed(text) from None
    finally:
        for sig, previous in handlers.items():
            signal.signal(sig, previous)
        info_file.unlink(missing_ok=True)
        JobInfo.stop_marker(info_file).unlink(missing_ok=True)
        if copier is not None:  # never close the store under a copier mid-batch (a second Ctrl-C, an error)
            mirror_stop.set()
            copier.join(30)
        flush_error = _close_outputs(writer, mirror, store, settings.db_path, stop_gateway, str(Location.of(settings)))
        if flush_error is not None and sys.exc_info()[1] is not None:  # another error is on its way out
            logger.error("%s", flush_error)
        try:
            if notifier is not None:  # after the last rows are in the store: what is due goes out now
                try:
                    notifier.stop(settings.notify.timeout_s + 5, announce=echo)
                except KeyboardInterrupt:  # the announced way to skip it
                    logger.warning("notifications not sent: interrupted; the next run sends them")
        finally:
            summary.stored = writer.written + (mirror.stats.stored if mirror is not None else 0)
            summary.seconds = time.monotonic() - started
            if metrics_server is not None:
                metrics_server.shutdown()
                metrics_server.server_close()
    if flush_error is not None:  # only when nothing else failed first (that one is raised instead)
        raise StoreNotFlushed(flush_error)
    return summary


def _close_outputs(
    writer: BatchWriter,
    mirror: Any,
    store: AlertStore,
    db_path: Path,
    stop_flink: Callable[[], None],
    store_name: str | None = None,
) -> str | None:
    """Close the writer, the copier, the store and Flink, each whatever the others did: a
    final flush that fails must neither leave Flink running nor lose what it held. Items the
    writer could not write are saved next to the database, one JSON object per line (`kind`:
    alert or dead); returns the line saying so, or None."""
    unwritten: UnwrittenItems | None = None
    steps: list[tuple[str, Callable[[], None]]] = [("the SQLite writer", writer.close)]
    if mirror is not None:
        steps.append(("the store's copier", mirror.close))
    steps += [("the store", store.close), ("Flink", stop_flink)]
    for name, close in steps:
        try:
            close()
        except UnwrittenItems as exc:
            unwritten = exc
        except Exception as exc:
            logger.error("closing %s failed: %s", name, _error_text(exc))
            logger.debug("closing %s failed", name, exc_info=True)
    if unwritten is None:
        return None
    spill = db_path.with_name(f"{db_path.name}.unwritten-{time.strftime('%Y%m%dT%H%M%S')}.jsonl")
    try:
        with spill.open("ab") as fh:
            for item in unwritten.items:
                kind = "alert" if isinstance(item, Alert) else "dead"
                fh.write(orjson.dumps({"kind": kind, **item.to_dict()}) + b"\n")
    except OSError as exc:
        where = f"saving them to {spill} failed too ({exc.strerror}): they are only in app.log"
    else:
        where = f"they are saved in {spill}"
    line = f"{len(unwritten.items)} alerts and dead letters could not be written to {store_name or db_path} ({unwritten.error}); {where}"
    logger.error("%s", line, extra=FILE_ONLY)  # the caller shows it
    return line


def _route(
    kind: str,
    record: Any,
    settings: Settings,
    summary: RunSummary,
    writer: BatchWriter | None,
    echo: Callable[[str], None],
) -> None:
    """Count, print and log a record; store it too unless it came from the store's copier."""
    if kind == "alert":
        summary.alerts[record.alert_type] += 1
        line = alert_line(record)
        echo(line)
        alert_log.info(line)
        if writer is not None:
            writer.submit(record)
    elif kind == "dead":
        summary.dead_letters[record.reason] += 1
        line = dead_letter_line(record)
        dead_log.info(line)
        if settings.pipeline.verbose:
            echo(line)
        if writer is not None:
            writer.submit(record)
    else:
        summary.orders_echoed += 1
        echo(order_line(record))
