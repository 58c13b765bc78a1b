"""The notifier: follows the alert store and tells each receiver about new committed alerts.

It reads rows of `fraud_alerts` (committed: the embedded run's writer commits them, the
copier copies only committed Kafka records), so nothing is ever sent from inside the job.
Each receiver has its own thread, connection and position: one that fails is retried with
exponential backoff, and one that hangs (bounded by `notify.timeout_s`) holds up no other
receiver, no store write and no detection. A message is logged as sent, and the position
moved, in one transaction after the receiver accepted it: a crash between the two repeats
at most that one message.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

from fraudstream.config import Settings
from fraudstream.metrics.process import NOTIFICATIONS
from fraudstream.notify import ledger
from fraudstream.notify.burst import Step, plan
from fraudstream.notify.message import Message, render_alert, render_summary
from fraudstream.notify.receivers import Receiver, Sender, receivers
from fraudstream.store.sqlite import connect

logger = logging.getLogger(__name__)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class ReceiverWorker:
    """One receiver's loop: read what is new, plan (burst rules), send, record."""

    def __init__(
        self,
        receiver: Receiver,
        settings: Settings,
        db_path: Path,
        poll_s: float,
        clock: Callable[[], int] = _now_ms,
    ) -> None:
        self.receiver = receiver
        self.settings = settings
        self.db_path = db_path
        self.poll_s = poll_s
        self.clock = clock
        self.failure: BaseException | None = None
        self.sent = 0
        self._sender = Sender(receiver)
        self._conn = connect(db_path, busy_timeout_ms=settings.store.busy_timeout_ms)
        ledger.ensure_schema(self._conn)
        self.state = ledger.load_state(self._conn, receiver.name, clock())
        self._stopping = threading.Event()
        self._deadline: float | None = None
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"notify-{receiver.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, deadline: float) -> None:
        """Send what is due (held-back alerts as a summary), until idle or `deadline` (monotonic)."""
        self._deadline = deadline
        self._stopping.set()
        self._wake.set()

    def close(self) -> None:
        """Release a worker that was never started."""
        self._conn.close()
        self._sender.close()

    def join(self, timeout: float) -> bool:
        self._thread.join(max(0.0, timeout))
        return not self._thread.is_alive()

    def _expired(self) -> bool:
        return self._deadline is not None and time.monotonic() >= self._deadline

    def _sleep(self, seconds: float) -> None:
        if self._deadline is not None:
            seconds = min(seconds, max(0.0, self._deadline - time.monotonic()))
        self._wake.wait(seconds)
        self._wake.clear()  # stop() only cuts the current wait short; backoff still applies after

    def _run(self) -> None:
        n = self.settings.notify
        name = self.receiver.name
        backoff = 0.5
        try:
            while not self._expired():
                stopping = self._stopping.is_set()
                try:
                    todo = ledger.pending(self._conn, self.state.position, n.severities)
                except sqlite3.OperationalError as exc:  # a busy or briefly unreadable store: later
                    logger.warning("receiver %s: reading the store failed (%s); retrying", name, exc)
                    self._sleep(max(self.poll_s, 1.0))
                    continue
                now = self.clock()
                step = plan(self.state.window, todo, now, n.burst_max, n.burst_window_ms, stopping=stopping)
                if step.kind == "idle":
                    if stopping:
                        return
                    self._sleep(self.poll_s)
                    continue
                if step.kind == "wait":  # nothing can go out before the window ends (or a stop)
                    self._sleep(max(0.0, ((step.wake_ms or now) - now) / 1000))
                    continue
                message = self._render(step)
                if not self._sender.send(message):
                    NOTIFICATIONS.labels(name, "failed").inc()
                    logger.warning("receiver %s did not take a message; retrying in %.1f s", name, backoff)
                    self._sleep(backoff)
                    backoff = min(backoff * 2, n.retry_max_backoff_ms / 1000)
                    continue
                backoff = 0.5
                NOTIFICATIONS.labels(name, "sent").inc()
                if step.kind == "summary":
                    NOTIFICATIONS.labels(name, "suppressed").inc(len(step.alerts))
                new = ledger.ReceiverState(step.alerts[-1].id, step.window)
                if not self._record(message, new):
                    return
                logger.info(
                    "receiver %s: sent %s for %d alert(s), up to store row %d",
                    name, step.kind, len(step.alerts), new.position,
                )  # fmt: skip
        except Exception as exc:  # a second notifier on the store, a bug: say so, stop this receiver
            self.failure = exc
            logger.error("receiver %s stopped: %s", name, self._sender.redact(str(exc)))
        finally:
            self._finish()

    def _record(self, message: Message, new: ledger.ReceiverState) -> bool:
        """Log the sent message and move the position; while the store is locked, retry that
        (never the send: the receiver has the message). False if the deadline came first,
        when the next run sends that one message again."""
        delay = 0.1
        while True:
            try:
                ledger.record_sent(self._conn, self.receiver.name, self.state.position, new, message, self.clock())
            except sqlite3.OperationalError as exc:
                if self._expired():
                    logger.warning(
                        "receiver %s: a sent message could not be recorded (%s): the next run may send it again",
                        self.receiver.name, exc,
                    )  # fmt: skip
                    return False
                self._sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            self.state = new
            self.sent += 1
            return True

    def _finish(self) -> None:
        try:
            if self._stopping.is_set() and self._expired():
                n = self.settings.notify
                left = ledger.count_pending(self._conn, self.state.position, n.severities)
                if left:
                    logger.warning(
                        "receiver %s: %d alert(s) not sent yet; the next run sends them", self.receiver.name, left
                    )
        except sqlite3.Error:
            logger.debug("counting what is left failed", exc_info=True)
        finally:
            self._conn.close()
            self._sender.close()

    def _render(self, step: Step) -> Message:
        url = self.settings.dashboard.url
        style = self.receiver.style
        if step.kind == "summary":
            return render_summary(step.alerts, self.settings.notify.burst_window_ms, url, style)
        return render_alert(step.alerts[0], url, style)


class Notifier:
    """Every configured receiver's worker, started and stopped together."""

    def __init__(self, settings: Settings, db_path: Path | None = None, poll_s: float | None = None) -> None:
        self.settings = settings
        path = db_path or settings.db_path
        poll = settings.store.flush_interval_ms / 1000 if poll_s is None else poll_s
        self.workers: list[ReceiverWorker] = []
        try:
            for receiver in receivers(settings.notify):
                self.workers.append(ReceiverWorker(receiver, settings, path, poll))
        except BaseException:
            for worker in self.workers:
                worker.close()
            raise

    def start(self) -> Notifier:
        for worker in self.workers:
            worker.start()
        logger.info(
            "notifying %s of %s alerts",
            ", ".join(w.receiver.name for w in self.workers),
            "/".join(self.settings.notify.severities),
        )
        return self

    def stop(self, timeout_s: float = 10.0) -> bool:
        """Send what is due, waiting at most `timeout_s`; True if every receiver finished.
        A receiver still busy then (hanging) is left behind: its thread is a daemon, and what
        it did not send is sent by the next run."""
        deadline = time.monotonic() + timeout_s
        for worker in self.workers:
            worker.stop(deadline)
        done = True
        for worker in self.workers:
            if not worker.join(deadline - time.monotonic() + 0.5):
                logger.warning("receiver %s did not finish within %.0f s", worker.receiver.name, timeout_s)
                done = False
        return done
