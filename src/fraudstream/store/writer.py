"""Batching off the hot path, in one place: a background thread drains a queue and hands
batches to a sink's `write_batch`. Sinks only know how to write one batch."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

logger = logging.getLogger(__name__)
T = TypeVar("T")
_STOP = object()


class BatchWriter(Generic[T]):
    """Writes items in batches of `batch_size`, or whatever is waiting every `flush_interval_s`.

    `flush()` blocks until everything submitted so far is written; `close()` flushes and stops.
    A failing batch is logged and retried once at the next flush, never silently dropped.
    """

    def __init__(
        self,
        write_batch: Callable[[Sequence[T]], None],
        batch_size: int = 100,
        flush_interval_s: float = 0.5,
        name: str = "batch-writer",
    ) -> None:
        self._write_batch = write_batch
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self._queue: queue.Queue[object] = queue.Queue()
        self._written = 0
        self._failed: list[T] = []
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._closed = False
        self._thread.start()

    @property
    def written(self) -> int:
        return self._written

    def submit(self, item: T) -> None:
        if self._closed:
            raise RuntimeError("writer is closed")
        self._queue.put(item)

    def flush(self, timeout: float | None = 30.0) -> None:
        done = threading.Event()
        self._queue.put(done)
        if not done.wait(timeout):
            raise TimeoutError("timed out flushing the writer")
        if self._error is not None:
            raise RuntimeError(f"writer failed: {self._error}") from self._error

    def close(self, timeout: float | None = 30.0) -> None:
        if self._closed:
            return
        self.flush(timeout)
        self._closed = True
        self._queue.put(_STOP)
        self._thread.join(timeout)

    def __enter__(self) -> BatchWriter[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _drain(self, batch: list[T]) -> None:
        if not batch and not self._failed:
            return
        items = self._failed + batch
        try:
            self._write_batch(items)
        except Exception as exc:  # keep the items; the next flush tries again
            logger.exception("writing %d items failed", len(items))
            self._failed = items
            self._error = exc
            return
        self._failed = []
        self._error = None
        self._written += len(items)
        batch.clear()

    def _run(self) -> None:
        batch: list[T] = []
        deadline = time.monotonic() + self.flush_interval_s
        while True:
            try:
                item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                item = None
            if item is _STOP:
                self._drain(batch)
                return
            if isinstance(item, threading.Event):
                self._drain(batch)
                batch.clear()
                item.set()
                continue
            if item is not None:
                batch.append(item)  # type: ignore[arg-type]
                if len(batch) < self.batch_size:
                    continue
            elif time.monotonic() < deadline:
                continue
            self._drain(batch)
            batch.clear()
            deadline = time.monotonic() + self.flush_interval_s
