"""An independent, brute-force judge of the four rules and the cooldown.

It shares no code with the detectors: it sorts the whole stream by time and recomputes
every rule from scratch for every order, straight from the definitions in the issue.
Re-deliveries are dropped first, as the job's input step does: an order whose id was
already admitted for the same user less than the longest rule window earlier.
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
    detail_list_max: int = _D.detail_list_max

    @property
    def horizon_ms(self) -> int:
        return max(self.velocity_window_ms, self.device_window_ms, self.geo_window_ms)

    @staticmethod
    def of(d: DetectorSettings) -> Params:
        return Params(
            d.velocity_threshold, d.velocity_window_ms, d.device_sharing_threshold, d.device_sharing_window_ms,
            d.high_value_threshold, d.geo_window_ms, d.dedup_cooldown_ms, d.detail_list_max,
        )  # fmt: skip


def _id(o: dict) -> str:
    return o["transaction_id"] if o.get("transaction_id") is not None else o["order_id"]


def redeliveries(orders: list[dict], p: Params = Params()) -> list[int]:
    """Positions (in `orders`, i.e. arrival order) of the copies the job must reject as
    `duplicate`: by event time, then arrival, an order is a re-delivery when an order with
    its user and id was admitted in the horizon before it (t - horizon, t]."""
    admitted: dict[tuple[str, str], list[int]] = defaultdict(list)
    out = []
    for i in sorted(range(len(orders)), key=lambda i: orders[i]["event_time"]):
        o = orders[i]
        t = o["event_time"]
        times = admitted[(o["user_id"], _id(o))]
        if any(t - p.horizon_ms < s <= t for s in times):
            out.append(i)
        else:
            times.append(t)
    return sorted(out)


def _order_key(o: dict) -> tuple:
    return (o["event_time"], _id(o), o["user_id"], o["device_id"])


def expected_alerts(orders: list[dict], p: Params = Params()) -> set[tuple[str, str, str, int]]:
    """Alerts as (alert_type, key, transaction_id, event_time)."""
    return set(_expected(orders, p)[0])


def expected_details(orders: list[dict], p: Params = Params()) -> dict[tuple[str, str, str, int], dict]:
    """For each alert of `expected_alerts`, the lists in its details and their totals, from the
    definition: the device's users (or the user's other cities) in the rule's window, each at
    its latest time there, all sorted newest first, equal times by name; the first
    `detail_list_max` are listed, `*_total` counts them all."""
    alerts, by_user, by_device = _expected(orders, p)
    out = {}
    for alert in alerts:
        alert_type, key, tx, t = alert
        mine = (by_device if alert_type == "DEVICE_SHARING_FRAUD" else by_user)[key]
        o = next(x for x in mine if _id(x) == tx and x["event_time"] == t)
        if alert_type == "DEVICE_SHARING_FRAUD":
            latest = _latest(x for x in by_device[key] if t - p.device_window_ms < x["event_time"] <= t)
            users = sorted(latest, key=lambda u: (-latest[u], u))
            out[alert] = {"users": users[: p.detail_list_max], "users_total": len(users), "distinct_users": len(users)}
        elif alert_type == "GEO_ANOMALY_FRAUD":
            before = [x for x in by_user[key] if t - p.geo_window_ms < x["event_time"] < t]
            latest = _latest((x for x in before if x["city"] != o["city"]), field="city")
            cities = sorted(latest, key=lambda c: (-latest[c], c))
            out[alert] = {
                "other_cities": cities[: p.detail_list_max], "cities_total": len(cities), "previous_city": cities[0],
            }  # fmt: skip
        else:
            out[alert] = {}
    return out


def _latest(orders, field: str = "user_id") -> dict[str, int]:
    latest: dict[str, int] = {}
    for x in orders:
        latest[x[field]] = max(latest.get(x[field], x["event_time"]), x["event_time"])
    return latest


def _expected(orders: list[dict], p: Params) -> tuple[list[tuple[str, str, str, int]], dict, dict]:
    order_key = _order_key
    dropped = set(redeliveries(orders, p))
    events = sorted((o for i, o in enumerate(orders) if i not in dropped), key=order_key)
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
    out = []
    for alert_type, key, o in candidates:
        t = o["event_time"]
        prev = last.get((alert_type, key))
        if prev is not None and t - prev < p.cooldown_ms:
            continue
        last[(alert_type, key)] = t
        out.append((alert_type, key, _id(o), t))
    return out, by_user, by_device
