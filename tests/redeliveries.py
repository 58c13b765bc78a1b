"""Re-delivered orders mixed into a stream, as an upstream retry or a topic replay makes them."""

from __future__ import annotations

import random

from tests.oracle import REDELIVERY_HORIZON_MS

MIN = 60_000


def with_redeliveries(
    events: list[dict],
    rng: random.Random,
    every: int = 100,
    horizon_ms: int = REDELIVERY_HORIZON_MS,
    bound_ms: int = 5_000,
) -> list[dict]:
    """`events` (in arrival order) with a copy of every `every`-th order, four kinds in turn:

    - an identical copy, a few records later (a producer's retry);
    - a copy stamped 1-20 minutes later with another amount, at its time's place (a replay
      of a changed record): a duplicate, its original kept;
    - a copy stamped 300 ms earlier with another amount, right after its original: it is
      kept and the original becomes the duplicate;
    - a copy stamped beyond the horizon, at its time's place: a new order.

    A copy that would be behind the watermark where it lands (judged like the job's
    admission, with `bound_ms`) is left out, so every copy reaches the re-delivery check.
    """
    placed: list[tuple[float, dict]] = [(float(i), e) for i, e in enumerate(events)]
    for n, i in enumerate(range(0, len(events), every)):
        o = events[i]
        kind = n % 4
        if kind == 0:
            copy, at = dict(o), i + rng.randint(1, 10) + 0.5
        elif kind == 1:
            copy = {**o, "event_time": o["event_time"] + rng.randint(MIN, 20 * MIN), "amount": o["amount"] + 1}
            at = _place(events, copy["event_time"])
        elif kind == 2:
            copy, at = {**o, "event_time": o["event_time"] - 300, "amount": o["amount"] + 2}, i + 0.5
        else:
            copy = {**o, "event_time": o["event_time"] + horizon_ms + rng.randint(0, MIN)}
            at = _place(events, copy["event_time"])
        if at < len(events):
            placed.append((at, copy))
    placed.sort(key=lambda p: p[0])
    out, newest = [], None
    for at, e in placed:
        t = e["event_time"]
        if newest is not None and t <= newest - bound_ms - 1:
            if at != int(at):  # a copy: leave it out rather than make it late
                continue
            raise AssertionError("the stream itself has late orders")
        newest = t if newest is None else max(newest, t)
        out.append(e)
    return out


def _place(events: list[dict], t: int) -> float:
    """Just before the first record stamped after `t`."""
    for j, e in enumerate(events):
        if e["event_time"] > t:
            return j - 0.5
    return float(len(events))
