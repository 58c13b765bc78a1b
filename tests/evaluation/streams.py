"""Hand-made labelled streams and alerts whose figures are known by construction."""

from __future__ import annotations

import itertools

from fraudstream.evaluation import AlertRecord, LabelledEvent

BASE = 1_767_225_600_000  # 2026-01-01T00:00:00Z
SEC = 1000

_ids = itertools.count()


def honest(n: int, prefix: str = "h") -> list[LabelledEvent]:
    """n honest orders, one second apart."""
    return [LabelledEvent(f"{prefix}{i}", f"{prefix}u{i}", f"{prefix}d{i}", BASE + i * SEC) for i in range(n)]


def actor(name: str, pattern: str, seconds: list[int]) -> list[LabelledEvent]:
    """One fraud actor's orders at BASE + the given seconds; transaction ids are `<name>-<k>`."""
    return [
        LabelledEvent(f"{name}-{k}", f"u-{name}", f"d-{name}", BASE + s * SEC, pattern, name)
        for k, s in enumerate(seconds)
    ]


def alert(alert_type: str, transaction_id: str | None) -> AlertRecord:
    return AlertRecord(alert_type=alert_type, transaction_id=transaction_id, alert_id=f"a{next(_ids)}")
