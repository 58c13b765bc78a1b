"""Batching off the hot path, in one place: a background thread drains a queue and hands
batches to a sink's `write_batch`. Sinks only know how to write one batch."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from fraudstream.metrics.process import count_stored

logger = logging.getLogger(__name__)
T = TypeVar("T")
_STOP = object()


class UnwrittenItems(RuntimeError):
    """`close()` could not write everything: the items it hands back, oldest first."""

    def __init__(self, items: list[Any], error: BaseException | None) -> None:
        super().__init__(f"{len(items)} items could not be written: {error}")
        self.items = items
        self.error = error


class BatchWriter(Generic[T]):
    """Writes items in batches of `batch_size`, or whatever is waiting every `flush_interval_s`.

    `flush()` blocks until everything submitted so far is written; `close()` flushes and stops.
    A failing batch is logged and kept, and written with the next one, never silently dropped.
    What waits is bounded: at most `max_pending` items in the queue and about as many kept
    from failed writes. Once that many failed, the writer only retries them (backing off up
    to `max_backoff_s`) and `submit` blocks: the producer (the job's result stream) slows
    down, instead of memory growing for as long as the store is away. A `close()` whose last
    writes keep failing stops anyway and raises `UnwrittenItems` with what was not written,
    so the caller can keep it elsewhere.

    `on_written` is told of each batch once it is written; by default it counts the batch in
    this process's `fraudstream_store_records_total` by kind (the store is this writer's sink).
    """

    def __init__(
        self,
        write_batch: Callable[[Sequence[T]], None],
        batch_size: int = 100,
        flush_interval_s: float = 0.5,
        name: str = "batch-writer",
        max_pending: int = 10_000,
        max_backoff_s: float = 10.0,
        on_written: Callable[[Sequence[T]], None] = count_stored,
    ) -> None:
        self._write_batch = write_batch
        self._on_written = on_written
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.max_pending = max_pending
        self.max_backoff_s = max_backoff_s
        self._queue: queue.Queue[object] = queue.Queue(maxsize=max_pending)
        self._written = 0
        self._failed: list[T] = []
        self._batch: list[T] = []
        self._error: BaseException | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._closed = False
        self._thread.start()

    @property
    def written(self) -> int:
        return self._written

    @property
    def pending(self) -> int:
        """Items submitted and not written yet (queued, batched, or kept from a failed write)."""
        return self._queue.qsize() + len(self._batch) + len(self._failed)

    def submit(self, item: T) -> None:
        if self._closed:
            raise RuntimeError("writer is closed")
        self._queue.put(item)  # blocks while `max_pending` items wait

    def flush(self, timeout: float | None = 30.0) -> None:
        done = threading.Event()
        try:
            self._queue.put(done, timeout=timeout)
        except queue.Full:
            raise TimeoutError(f"timed out flushing the writer ({self._error})") from self._error
        if not done.wait(timeout):
            raise TimeoutError(f"timed out flushing the writer ({self._error})") from self._error
        if self._error is not None:
            raise RuntimeError(f"writer failed: {self._error}") from self._error

    def close(self, timeout: float | None = 30.0) -> None:
        """Write what is left, retrying with backoff for up to `timeout`; then stop, always.
        Raises `UnwrittenItems` if some could not be written."""
        if self._closed:
            return
        self._closed = True
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.1
        while True:
            try:
                self.flush(None if deadline is None else max(0.01, deadline - time.monotonic()))
                break
            except (RuntimeError, TimeoutError):
                if deadline is not None and time.monotonic() + delay > deadline:
                    break
                time.sleep(delay)
                delay = min(delay * 2, self.max_backoff_s)
        self._stopping.set()
        self._thread.join(timeout)
        left = self._leftovers()
        if left:
            logger.error("%d items could not be written: %s", len(left), self._error)
            raise UnwrittenItems(left, self._error)

    def _leftovers(self) -> list[T]:
        """What was never written, oldest first (the thread has stopped)."""
        left = self._failed + self._batch
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return left
            if isinstance(item, threading.Event):
                item.set()
            elif item is not _STOP:
                left.append(item)  # type: ignore[arg-type]

    def __enter__(self) -> BatchWriter[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _drain(self) -> bool:
        """Write the kept and the batched items together; False (and kept) if that failed."""
        if not self._batch and not self._failed:
            return True
        items = self._failed + self._batch
        try:
            self._write_batch(items)
        except Exception as exc:  # keep the items; the next write tries again
            logger.exception("writing %d items failed", len(items))
            self._failed, self._batch = items, []
            self._error = exc
            return False
        self._failed, self._batch = [], []
        self._error = None
        self._written += len(items)
        try:
            self._on_written(items)
        except Exception:  # a metric must never fail a write that succeeded
            logger.exception("counting %d written items failed", len(items))
        return True

    def _run(self) -> None:
        deadline = time.monotonic() + self.flush_interval_s
        delay = 0.1
        while not self._stopping.is_set():
            if len(self._failed) >= self.max_pending:
                # Full: take nothing new (submit blocks) until the kept items are written.
                if self._stopping.wait(delay) or self._drain():
                    delay = 0.1
                else:
                    delay = min(delay * 2, self.max_backoff_s)
                continue
            try:
                item = self._queue.get(timeout=max(0.0, min(deadline - time.monotonic(), 0.2)))
            except queue.Empty:
                item = None
            if item is _STOP:
                self._drain()
                return
            if isinstance(item, threading.Event):
                self._drain()
                item.set()
                continue
            if item is not None:
                self._batch.append(item)  # type: ignore[arg-type]
                if len(self._batch) < self.batch_size:
                    continue
            elif time.monotonic() < deadline:
                continue
            self._drain()
            deadline = time.monotonic() + self.flush_interval_s
