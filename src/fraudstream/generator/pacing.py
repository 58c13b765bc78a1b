"""Holding a rate in events per second of wall clock, shared by every generator loop."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


class Pacer:
    """`wait()` before each event keeps to `rate` per second (0 = no limit). A stall of more
    than a second is not made up with a burst afterwards."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.next_at = time.monotonic()

    def wait(self) -> None:
        if not self.interval:
            return
        delay = self.next_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        self.next_at = max(self.next_at + self.interval, time.monotonic() - 1.0)


def paced(items: Iterable[T], rate: float) -> Iterator[T]:
    """`items` at `rate` per second (0 = no limit), each taken from `items` only when its turn
    has come: a live generator then stamps an order at the moment it is sent, not one
    interval earlier."""
    if rate <= 0:
        yield from items
        return
    pacer = Pacer(rate)
    it = iter(items)
    while True:
        pacer.wait()
        try:
            item = next(it)
        except StopIteration:
            return
        yield item
