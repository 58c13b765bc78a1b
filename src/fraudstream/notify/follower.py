"""The notifier: follows the alert store and tells each receiver about new committed alerts.

It reads rows of `fraud_alerts` (committed: the embedded run's writer commits them, the
copier copies only committed Kafka records), so nothing is ever sent from inside the job.
Each receiver has its own thread, connection and position: one that fails is retried with
exponential backoff (a message it refused `notify.max_attempts` times is recorded as
`dropped` and skipped, so one message cannot block a receiver forever), and one that hangs (bounded by `notify.timeout_s`) holds up no other
receiver, no store write and no detection. A message is logged as sent, and the position
moved, in one transaction after the receiver accepted it: a crash between the two repeats
at most that one message.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from prometheus_client import Gauge

from fraudstream.config import Settings
from fraudstream.metrics.process import NOTIFICATIONS, REGISTRY
from fraudstream.notify import ledger
from fraudstream.notify.burst import Step, plan
from fraudstream.notify.message import Message, render_alert, render_summary
from fraudstream.notify.receivers import Receiver, Sender, receivers
from fraudstream.store import db

logger = logging.getLogger(__name__)

RECEIVER_UP = Gauge(
    "fraudstream_notify_receiver_up",
    "1 while a receiver's notifier thread runs; 0 once it stopped (a run's end, or an error)",
    ["receiver"],
    registry=REGISTRY,
)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class ReceiverWorker:
    """One receiver's loop: read what is new, plan (burst rules), send, record."""

    def __init__(
        self,
        receiver: Receiver,
        settings: Settings,
        location: db.Location,
        poll_s: float,
        clock: Callable[[], int] = _now_ms,
    ) -> None:
        self.receiver = receiver
        self.settings = settings
        self.location = location
        self.poll_s = poll_s
        self.clock = clock
        self.failure: BaseException | None = None
        self.sent = 0
        self._sender = Sender(receiver)
        self._conn: db.Connection | None = None
        try:
            self._conn = self._connect()
            ledger.ensure_schema(self._conn)
            self.state = ledger.load_state(self._conn, receiver.name, clock())
        except BaseException:
            self.close()  # the sender's log filter and the connection would outlive it
            raise
        self._stopping = threading.Event()
        self._deadline: float | None = None
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"notify-{receiver.name}", daemon=True)

    def _connect(self) -> db.Connection:
        return db.connect(self.location, busy_timeout_ms=self.settings.store.busy_timeout_ms)

    def _reconnect(self) -> None:
        """After a transient failure, a PostgreSQL connection may be gone (the server
        restarted, the network dropped it): open a new one. SQLite's (a lock) stays usable."""
        assert self._conn is not None
        if not self._conn.broken:
            return
        try:
            fresh = self._connect()
        except db.StoreUnreachable as exc:  # still down: the next try opens it
            logger.debug("receiver %s: %s", self.receiver.name, exc)
            return
        self._conn.close()
        self._conn = fresh

    def start(self) -> None:
        RECEIVER_UP.labels(self.receiver.name).set(1)
        self._thread.start()

    @property
    def dead(self) -> bool:
        """Its thread ended without being told to stop (an error, a bug)."""
        ended = self._thread.ident is not None and not self._thread.is_alive()
        return ended and (self.failure is not None or not self._stopping.is_set())

    def stop(self, deadline: float) -> None:
        """Send what is due (held-back alerts as a summary), until idle or `deadline` (monotonic)."""
        self._deadline = deadline
        self._stopping.set()
        self._wake.set()

    def close(self) -> None:
        """Release a worker that was never started."""
        if self._conn is not None:
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
        attempts = 0  # failed sends in a row
        assert self._conn is not None
        try:
            while not self._expired():
                stopping = self._stopping.is_set()
                try:
                    todo = ledger.pending(self._conn, self.state.position, n.severities)
                except db.TRANSIENT as exc:  # a busy, restarting or briefly unreachable store: later
                    logger.warning("receiver %s: reading the store failed (%s); retrying", name, exc)
                    self._sleep(max(self.poll_s, 1.0))
                    self._reconnect()
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
                new = ledger.ReceiverState(step.alerts[-1].id, step.window)
                if not self._sender.send(message):
                    NOTIFICATIONS.labels(name, "failed").inc()
                    attempts += 1
                    if attempts >= n.max_attempts:  # this one message must not block the receiver
                        if not self._record(message, new, kind="dropped"):
                            return
                        NOTIFICATIONS.labels(name, "dropped").inc(len(step.alerts))
                        attempts, backoff = 0, 0.5
                        logger.warning(
                            "receiver %s refused a %s %d times: dropped it (store rows %d-%d, in notify_sent)",
                            name, step.kind, n.max_attempts, message.first_id, message.last_id,
                        )  # fmt: skip
                        continue
                    if stopping:  # the next run sends it: a stop does not wait out the backoff
                        return
                    logger.warning("receiver %s did not take a message; retrying in %.1f s", name, backoff)
                    self._sleep(backoff)
                    backoff = min(backoff * 2, n.retry_max_backoff_ms / 1000)
                    continue
                attempts, backoff = 0, 0.5
                NOTIFICATIONS.labels(name, "sent").inc()
                if step.kind == "summary":
                    NOTIFICATIONS.labels(name, "suppressed").inc(len(step.alerts))
                if not self._record(message, new):
                    return
                logger.info(
                    "receiver %s: sent %s for %d alert(s), up to store row %d",
                    name, step.kind, len(step.alerts), new.position,
                )  # fmt: skip
        except Exception as exc:  # a second notifier on the store, a bug: Notifier.check says so
            self.failure = exc
            logger.debug("receiver %s stopped", name, exc_info=True)  # the filter masks secrets in it
        finally:
            RECEIVER_UP.labels(name).set(0)
            self._finish()

    def _record(self, message: Message, new: ledger.ReceiverState, kind: str | None = None) -> bool:
        """Log the sent message and move the position; while the store is locked, retry that
        (never the send: the receiver has the message). False if the deadline came first,
        when the next run sends that one message again."""
        delay = 0.1
        retry = False  # after a transient failure: its COMMIT may have landed (record_sent)
        while True:
            try:
                assert self._conn is not None
                ledger.record_sent(
                    self._conn, self.receiver.name, self.state.position, new, message, self.clock(), kind, retry=retry
                )
            except db.TRANSIENT as exc:
                retry = True
                if self._expired():
                    logger.warning(
                        "receiver %s: a sent message could not be recorded (%s): the next run may send it again",
                        self.receiver.name, exc,
                    )  # fmt: skip
                    return False
                self._sleep(delay)
                delay = min(delay * 2, 2.0)
                self._reconnect()
                continue
            self.state = new
            self.sent += kind is None
            return True

    def _finish(self) -> None:
        assert self._conn is not None
        try:
            if self._stopping.is_set():
                n = self.settings.notify
                left = ledger.count_pending(self._conn, self.state.position, n.severities)
                if left:
                    logger.warning(
                        "receiver %s: %d alert(s) not sent yet; the next run sends them", self.receiver.name, left
                    )
        except db.ERRORS:
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

    def __init__(self, settings: Settings, location: db.Location | None = None, poll_s: float | None = None) -> None:
        self.settings = settings
        self.location = location or db.Location.of(settings)  # SQLite, or PostgreSQL with store.url
        poll = settings.store.flush_interval_ms / 1000 if poll_s is None else poll_s
        self.workers: list[ReceiverWorker] = []
        self._reported: set[str] = set()
        try:
            for receiver in receivers(settings.notify):
                self.workers.append(ReceiverWorker(receiver, settings, self.location, poll))
            self._warn_unconfigured()
        except BaseException:
            for worker in self.workers:
                worker.close()
            raise

    def _warn_unconfigured(self) -> None:
        """A receiver in the store that the settings no longer name (its address changed, or it
        was removed) is left where it was; say so, since its messages stop."""
        if not self.workers:
            return
        conn = self.workers[0]._conn  # not shared yet: no thread has started
        assert conn is not None
        configured = {w.receiver.name for w in self.workers}
        for name in ledger.receiver_states(conn):
            if name not in configured:
                logger.warning(
                    "receiver %s in the store is no longer configured: nothing more is sent to it "
                    "(a changed address is a new receiver, which starts at the store's end)",
                    name,
                )

    def start(self) -> Notifier:
        for worker in self.workers:
            worker.start()
        logger.info(
            "notifying %s of %s alerts",
            ", ".join(w.receiver.name for w in self.workers),
            "/".join(self.settings.notify.severities),
        )
        return self

    def check(self) -> list[str]:
        """Receivers whose thread died since the last call, each said once in one loud line. The
        run goes on: detection and the store matter more than a notification."""
        dead = [w for w in self.workers if w.dead and w.receiver.name not in self._reported]
        for worker in dead:
            self._reported.add(worker.receiver.name)
            why = worker.failure if worker.failure is not None else "its thread ended"
            logger.error(
                "NOTIFICATIONS TO %s HAVE STOPPED (%s): detection and the store go on; restart the run "
                "to resume them, `fraudstream notify status` shows what waits",
                worker.receiver.name, worker._sender.redact(str(why)),
            )  # fmt: skip
        return [w.receiver.name for w in dead]

    def pending(self) -> int:
        """Alerts not yet sent, summed over the receivers (read on a connection of its own)."""
        conn = db.connect(self.location, read_only=True, busy_timeout_ms=self.settings.store.busy_timeout_ms)
        try:
            severities = self.settings.notify.severities
            return sum(ledger.count_pending(conn, w.state.position, severities) for w in self.workers if not w.dead)
        finally:
            conn.close()

    def stop(self, timeout_s: float = 10.0, announce: Callable[[str], None] | None = None) -> bool:
        """Send what is due, waiting at most `timeout_s`; True if every receiver finished.
        A receiver still busy then (hanging) is left behind: its thread is a daemon, and what
        it did not send is sent by the next run; one that fails while stopping ends at once.
        `announce` gets one line first, when something is pending."""
        if announce is not None:
            try:
                waiting = self.pending()
            except (*db.ERRORS, db.StoreMissingError, db.StoreUnreachable):
                waiting = 0
            if waiting:
                announce(f"sending {waiting} pending notifications (up to {timeout_s:.0f} s; Ctrl-C again skips)")
        deadline = time.monotonic() + timeout_s
        for worker in self.workers:
            worker.stop(deadline)
        done = True
        for worker in self.workers:
            if not worker.join(deadline - time.monotonic() + 0.5):
                logger.warning("receiver %s did not finish within %.0f s", worker.receiver.name, timeout_s)
                done = False
        self.check()
        return done
