"""The burst rule on its own: a flood costs a bounded number of messages and covers every alert once."""

from __future__ import annotations

import random
from bisect import bisect_right
from collections import Counter

from fraudstream.notify.burst import Window, plan
from tests.notify.test_message import stored


def simulate(arrivals: list[int], burst_max: int, window_ms: int, end_ms: int, stop_at: int | None = None):
    """Drive `plan` as the follower does, every 100 ms: (time, kind, alert ids) per message."""
    window, position, sent = Window(), 0, []
    alerts = [stored(i + 1) for i in range(len(arrivals))]
    for now in range(0, end_ms, 100):
        stopping = stop_at is not None and now >= stop_at
        while True:
            todo = alerts[position : bisect_right(arrivals, now)]  # arrived, not yet covered (ids are 1..n)
            step = plan(window, todo, now, burst_max, window_ms, stopping=stopping)
            if step.kind in ("idle", "wait"):
                break
            sent.append((now, step.kind, [a.id for a in step.alerts], step.window.start_ms))
            window, position = step.window, step.alerts[-1].id
        if stopping:
            break
    return sent


def test_a_burst_of_100_becomes_a_bounded_number_of_messages():
    sent = simulate([1_000 + i * 10 for i in range(100)], burst_max=5, window_ms=60_000, end_ms=200_000)
    assert [k for _, k, _, _ in sent] == ["alert"] * 5 + ["summary"]
    covered = [i for _, _, ids, _ in sent for i in ids]
    assert covered == list(range(1, 101))  # every alert once, in order
    assert sent[-1][0] == 61_000  # the summary when the window that held them back ends


def test_any_window_holds_at_most_burst_max_messages_under_a_long_flood():
    rng = random.Random(4)
    arrivals = sorted(rng.randrange(0, 600_000) for _ in range(2_000))
    sent = simulate(arrivals, burst_max=5, window_ms=60_000, end_ms=700_000)
    per_window = Counter(start for *_, start in sent)
    assert max(per_window.values()) == 5
    starts = sorted(per_window)
    assert all(b - a >= 60_000 for a, b in zip(starts, starts[1:], strict=False))  # windows do not overlap
    times = [t for t, *_ in sent]
    for i, t in enumerate(times):  # so any stretch of one window's length sees at most two windows' worth
        assert sum(1 for u in times[i:] if u < t + 60_000) <= 10
    assert sorted(i for _, _, ids, _ in sent for i in ids) == list(range(1, 2_001))
    assert len(sent) <= 5 * (700_000 // 60_000 + 1)


def test_quiet_alerts_go_one_by_one_and_a_stop_summarises_what_was_held():
    quiet = simulate([0, 70_000, 140_000], burst_max=2, window_ms=60_000, end_ms=200_000)
    assert [k for _, k, _, _ in quiet] == ["alert"] * 3
    held = simulate([0, 10, 20, 30], burst_max=2, window_ms=60_000, end_ms=200_000, stop_at=1_000)
    assert [(k, ids) for _, k, ids, _ in held] == [("alert", [1]), ("alert", [2]), ("summary", [3, 4])]
    # after an early summary the window's held alerts are done: the next window starts afresh
    w = Window(0, 3, summarised=True)
    assert plan(w, [stored(9)], 70_000, 2, 60_000).kind == "alert"
    assert plan(Window(0, 2), [stored(9)], 70_000, 2, 60_000).kind == "summary"
    assert plan(Window(0, 2), [stored(9)], 30_000, 2, 60_000).wake_ms == 60_000
