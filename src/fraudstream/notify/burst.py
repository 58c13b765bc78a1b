"""How a burst of alerts becomes a bounded number of messages: a pure plan, no IO.

Each receiver has a window of `window_ms` that opens with its first message. In it, up to
`burst_max` alerts are sent one by one; alerts beyond that are held back and, once the window
has passed, sent as ONE summary, which opens the next window. A flood of alerts therefore
costs each receiver at most `burst_max` messages per window however long it lasts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

from fraudstream.notify.message import StoredAlert


@dataclass(frozen=True)
class Window:
    """A receiver's current window, kept in the store with its position."""

    start_ms: int | None = None  # when it opened (wall clock); None = never
    sent: int = 0  # messages sent in it
    # Its held-back alerts were already summarised, early, because the notifier stopped.
    summarised: bool = False

    def is_open(self, now_ms: int, window_ms: int) -> bool:
        return self.start_ms is not None and now_ms < self.start_ms + window_ms


@dataclass(frozen=True)
class Step:
    """What to do next. `alerts`: the ones the message covers; `window`: the state once it is sent."""

    kind: Literal["alert", "summary", "wait", "idle"]
    alerts: tuple[StoredAlert, ...] = ()
    window: Window = Window()
    wake_ms: int | None = None  # "wait": when the window ends


def plan(
    window: Window,
    pending: Sequence[StoredAlert],
    now_ms: int,
    burst_max: int,
    window_ms: int,
    stopping: bool = False,
) -> Step:
    """The next message for a receiver, given the alerts it has not been told about yet (oldest
    first). When `stopping`, held-back alerts are summarised at once rather than left waiting
    for a window that this process will not see end."""
    if not pending:
        return Step("idle", window=window)
    if window.is_open(now_ms, window_ms):
        if window.sent < burst_max:
            return Step("alert", (pending[0],), replace(window, sent=window.sent + 1))
        if stopping:
            return Step("summary", tuple(pending), replace(window, sent=window.sent + 1, summarised=True))
        return Step("wait", window=window, wake_ms=(window.start_ms or 0) + window_ms)
    if window.start_ms is not None and window.sent >= burst_max and not window.summarised:
        # The last window was full, so what waits now was held back in it: one summary,
        # which is the first message of the next window.
        return Step("summary", tuple(pending), Window(now_ms, 1))
    return Step("alert", (pending[0],), Window(now_ms, 1))
