"""The bench's CPU split of the Flink JVM: thread names to kinds, /proc read for a real process."""

from __future__ import annotations

import os
import threading
import time

import pytest

from fraudstream.bench.jobs import OTHER_THREADS, cpu_by_kind, thread_cpu, thread_kind


def test_thread_names_say_what_the_jvm_spends_on():
    assert thread_kind("C2 CompilerThre") == thread_kind("C1 CompilerThre") == "JIT compiler"
    assert thread_kind("GC Thread#1") == thread_kind("G1 Refine#0") == "garbage collector"
    assert thread_kind("AsyncOperations") == "checkpoint snapshots"
    assert thread_kind("user-rules -> a") == thread_kind("kafka-producer-") == OTHER_THREADS


def test_cpu_is_summed_per_kind_and_in_total():
    threads = {1: ("C2 CompilerThre", 2.0), 2: ("C1 CompilerThre", 0.5), 3: ("GC Thread#0", 1.5),
               4: ("user-rules -> a", 3.0), 5: ("Source: orders-", 1.0)}  # fmt: skip
    assert cpu_by_kind(threads) == {"JIT compiler": 2.5, "garbage collector": 1.5, OTHER_THREADS: 4.0, "total": 8.0}


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="threads' CPU comes from Linux's /proc")
def test_a_busy_threads_cpu_is_read_from_proc():
    done = threading.Event()

    def spin() -> None:
        while not done.is_set():
            sum(range(1000))

    worker = threading.Thread(target=spin, name="busy")
    worker.start()
    try:
        time.sleep(0.6)
        threads = thread_cpu(os.getpid())
    finally:
        done.set()
        worker.join()
    assert worker.native_id in threads
    name, seconds = threads[worker.native_id]
    assert seconds >= 0.2  # most of 0.6 s, at 100 ticks a second
    assert name  # Python names its threads at the OS level only from 3.12 on; any name will do
