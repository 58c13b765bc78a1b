from __future__ import annotations

import threading
import time

import pytest

from fraudstream.store import BatchWriter
from fraudstream.store.writer import UnwrittenItems


class Recorder:
    def __init__(self, fail_times: int = 0):
        self.batches: list[list[int]] = []
        self.fail_times = fail_times
        self.lock = threading.Lock()

    def __call__(self, batch):
        with self.lock:
            if self.fail_times:
                self.fail_times -= 1
                raise OSError("disk full")
            self.batches.append(list(batch))


def test_batches_by_size():
    rec = Recorder()
    w = BatchWriter(rec, batch_size=10, flush_interval_s=60)
    for i in range(35):
        w.submit(i)
    deadline = time.monotonic() + 5
    while len(rec.batches) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [len(b) for b in rec.batches] == [10, 10, 10]  # the rest waits for size or time
    w.close()
    assert [x for b in rec.batches for x in b] == list(range(35))
    assert w.written == 35


def test_flushes_on_interval():
    rec = Recorder()
    w = BatchWriter(rec, batch_size=1000, flush_interval_s=0.05)
    w.submit(1)
    deadline = time.monotonic() + 5
    while not rec.batches and time.monotonic() < deadline:
        time.sleep(0.01)
    assert rec.batches == [[1]]
    w.close()


def test_close_flushes_everything_and_rejects_more():
    rec = Recorder()
    w = BatchWriter(rec, batch_size=1000, flush_interval_s=60)
    for i in range(7):
        w.submit(i)
    w.close()
    assert rec.batches == [list(range(7))]
    with pytest.raises(RuntimeError):
        w.submit(8)


def test_a_failed_batch_is_kept_and_retried():
    rec = Recorder(fail_times=1)
    w = BatchWriter(rec, batch_size=1000, flush_interval_s=60)
    w.submit(1)
    with pytest.raises(RuntimeError, match="disk full"):
        w.flush()
    w.submit(2)
    w.close()
    assert rec.batches == [[1, 2]]


def test_the_retry_queue_is_bounded_and_pushes_back():
    """While the store keeps failing, at most `max_pending` items wait in memory: `submit`
    blocks (the job's result stream slows down) instead of the queue growing without end."""
    rec = Recorder(fail_times=10**9)
    w = BatchWriter(rec, batch_size=10, flush_interval_s=0.01, max_pending=50, max_backoff_s=0.05)
    submitted = []

    def produce():
        for i in range(1000):
            w.submit(i)
            submitted.append(i)

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    producer.join(1.0)
    assert producer.is_alive(), "1000 items were taken while every write failed"
    assert len(submitted) <= 2 * 50 + 10
    assert w.pending <= 2 * 50 + 10
    with rec.lock:
        rec.fail_times = 0  # the store is back
    producer.join(10)
    w.close()
    assert [x for b in rec.batches for x in b] == list(range(1000))


def test_a_final_flush_that_fails_hands_back_what_was_not_written():
    rec = Recorder(fail_times=10**9)
    w = BatchWriter(rec, batch_size=1000, flush_interval_s=60, max_backoff_s=0.05)
    for i in range(7):
        w.submit(i)
    with pytest.raises(UnwrittenItems, match="disk full") as err:
        w.close(timeout=1.0)
    assert err.value.items == list(range(7))
    assert not w._thread.is_alive()
