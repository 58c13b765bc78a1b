"""Alert cooldown: at most one alert per (alert_type, key) per cooldown of event time."""

from __future__ import annotations

from dataclasses import dataclass

from fraudstream.detectors.base import Alert


@dataclass
class DedupState:
    # Event time of the last alert emitted for this (alert_type, key) (ValueState in Flink).
    last_emitted: int | None = None


class AlertDeduplicator:
    def __init__(self, cooldown_ms: int = 300_000) -> None:
        self.cooldown_ms = cooldown_ms

    def new_state(self) -> DedupState:
        return DedupState()

    def admit(self, state: DedupState, alert: Alert) -> bool:
        """True if `alert` should be emitted; alerts must arrive in event-time order per key."""
        last = state.last_emitted
        if last is not None and alert.event_time - last < self.cooldown_ms:
            return False
        state.last_emitted = alert.event_time
        return True

    def expires_at(self, state: DedupState) -> int | None:
        return None if state.last_emitted is None else state.last_emitted + self.cooldown_ms
