"""An independent, brute-force judge of the four rules and the cooldown.

It shares no code with the detectors: it sorts the whole stream by time and recomputes
every rule from scratch for every order, straight from the definitions in the issue.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from fraudstream.config import DetectorSettings

_D = DetectorSettings()  # the oracle judges the configured defaults unless told otherwise


@dataclass(frozen=True)
class Params:
    velocity_threshold: int = _D.velocity_threshold
    velocity_window_ms: int = _D.velocity_window_ms
    device_threshold: int = _D.device_sharing_threshold
    device_window_ms: int = _D.device_sharing_window_ms
    high_value: float = _D.high_value_threshold
    geo_window_ms: int = _D.geo_window_ms
    cooldown_ms: int = _D.dedup_cooldown_ms

    @staticmethod
    def of(d: DetectorSettings) -> Params:
        return Params(
            d.velocity_threshold, d.velocity_window_ms, d.device_sharing_threshold, d.device_sharing_window_ms,
            d.high_value_threshold, d.geo_window_ms, d.dedup_cooldown_ms,
        )  # fmt: skip


def expected_alerts(orders: list[dict], p: Params = Params()) -> set[tuple[str, str, str, int]]:
    """Alerts as (alert_type, key, transaction_id, event_time)."""

    def order_key(o: dict) -> tuple:
        return (o["event_time"], o["transaction_id"], o["user_id"], o["device_id"])

    events = sorted(orders, key=order_key)
    by_user: dict[str, list[dict]] = defaultdict(list)
    by_device: dict[str, list[dict]] = defaultdict(list)
    for o in events:
        by_user[o["user_id"]].append(o)
        by_device[o["device_id"]].append(o)

    candidates = []
    for o in events:
        t = o["event_time"]
        mine = by_user[o["user_id"]]
        n = sum(1 for x in mine if t - p.velocity_window_ms < x["event_time"] <= t)
        if n > p.velocity_threshold:
            candidates.append(("VELOCITY_FRAUD", o["user_id"], o))
        users = {x["user_id"] for x in by_device[o["device_id"]] if t - p.device_window_ms < x["event_time"] <= t}
        if len(users) > p.device_threshold:
            candidates.append(("DEVICE_SHARING_FRAUD", o["device_id"], o))
        if o["amount"] > p.high_value:
            candidates.append(("HIGH_VALUE_FRAUD", o["user_id"], o))
        if any(x["city"] != o["city"] and t - p.geo_window_ms < x["event_time"] < t for x in mine):
            candidates.append(("GEO_ANOMALY_FRAUD", o["user_id"], o))

    candidates.sort(key=lambda c: order_key(c[2]))
    last: dict[tuple[str, str], int] = {}
    out = set()
    for alert_type, key, o in candidates:
        t = o["event_time"]
        prev = last.get((alert_type, key))
        if prev is not None and t - prev < p.cooldown_ms:
            continue
        last[(alert_type, key)] = t
        out.add((alert_type, key, o["transaction_id"], t))
    return out
