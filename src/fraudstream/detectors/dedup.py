"""Alert cooldown: at most one alert per (alert_type, key) per cooldown of event time."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from fraudstream.config import DetectorSettings
from fraudstream.detectors.base import RULE_ALERT_TYPES, Alert


@dataclass
class DedupState:
    # Event time of the last alert emitted for this (alert_type, key) (ValueState in Flink).
    last_emitted: int | None = None


class AlertDeduplicator:
    """`cooldown_ms` for every alert type, or each type's own from `per_type`."""

    def __init__(self, cooldown_ms: int = 300_000, per_type: Mapping[str, int] | None = None) -> None:
        self.cooldown_ms = cooldown_ms
        self.per_type = dict(per_type or {})
        self.longest_ms = max([cooldown_ms, *self.per_type.values()])

    @classmethod
    def from_settings(cls, cfg: DetectorSettings) -> AlertDeduplicator:
        """Each rule's cooldown (detectors.<rule>_cooldown_ms, else dedup_cooldown_ms)."""
        per_type = {alert_type: cfg.cooldown_of(rule) for rule, alert_type in RULE_ALERT_TYPES.items()}
        return cls(cfg.dedup_cooldown_ms, per_type)

    def cooldown_of(self, alert_type: str) -> int:
        return self.per_type.get(alert_type, self.cooldown_ms)

    def new_state(self) -> DedupState:
        return DedupState()

    def admit(self, state: DedupState, alert: Alert) -> bool:
        """True if `alert` should be emitted; alerts must arrive in event-time order per key."""
        last = state.last_emitted
        if last is not None and alert.event_time - last < self.cooldown_of(alert.alert_type):
            return False
        state.last_emitted = alert.event_time
        return True

    def expires_at(self, state: DedupState) -> int | None:
        """When the state can go: the longest cooldown after the last alert (any type's)."""
        return None if state.last_emitted is None else state.last_emitted + self.longest_ms
