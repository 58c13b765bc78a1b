"""The benchmark's peer: the four rules and the cooldown as a Python team would write them on
Quix Streams, the pure-Python stream processor one would pick instead of Flink.

Standalone on purpose: it runs in its own virtual environment (`.venv-peers`, see
`fraudstream.bench.peers`), because quixstreams pins older confluent-kafka and pydantic
than fraudstream does, so it imports only quixstreams, orjson and the standard library.
The rule functions below take Quix's `State` (anything with get/set) and plain dicts, so
the main environment can import and test them without quixstreams.

Orders are processed in arrival order: Quix has no event-time reordering, so a window is
judged against whatever the key has seen so far. That is the point of the comparison, not a
flaw to fix here. Usage (the bench runs it so, and reads its stdout):

    .venv-peers/bin/python quix_peer.py CONFIG.json

stdout carries one JSON line when the app is defined (its topics created), one at the first
order read, then about every 0.25 s, and one when every order has been through both key
kinds (`"done": true`); the app then commits and exits.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import orjson

logger = logging.getLogger("quix_peer")

VELOCITY = "VELOCITY_FRAUD"
DEVICE_SHARING = "DEVICE_SHARING_FRAUD"
HIGH_VALUE = "HIGH_VALUE_FRAUD"
GEO = "GEO_ANOMALY_FRAUD"
_FIELDS = {
    "transaction_id": str,
    "user_id": str,
    "device_id": str,
    "city": str,
    "amount": (int, float),
    "event_time": int,
}


class StateLike(Protocol):
    def get(self, key: str, default: Any = None) -> Any: ...

    def set(self, key: str, value: Any) -> None: ...


# ----------------------------------------------------------------- the rules


def parse(value: bytes) -> dict[str, Any] | None:
    """The order in a raw record, or None for anything that is not one (skipped)."""
    try:
        order = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(order, dict):
        return None
    for name, kind in _FIELDS.items():
        v = order.get(name)
        if not isinstance(v, kind) or isinstance(v, bool):
            return None
    return order


def _alert(rules: dict[str, Any], rule: str, key: str, order: dict[str, Any], message: str, details: dict) -> dict:
    alert_type = rules[rule]["alert_type"]
    t = order["event_time"]
    raw = f"{alert_type}|{key}|{order['transaction_id']}|{t}".encode()
    return {
        "alert_id": hashlib.sha256(raw).hexdigest()[:24],
        "alert_type": alert_type,
        "severity": rules[rule]["severity"],
        "key": key,
        "user_id": order["user_id"],
        "device_id": order["device_id"],
        "transaction_id": order["transaction_id"],
        "amount": order["amount"],
        "event_time": t,
        "message": message,
        "details": details,
        "detected_at": int(time.time() * 1000),
    }


def _cooled(last_alert: dict[str, int], rules: dict[str, Any], rule: str, t: int) -> bool:
    """The cooldown per (alert type, key): the state is the key's, so one entry per type."""
    last = last_alert.get(rule)
    if last is not None and t - last < rules[rule]["cooldown_ms"]:
        return False
    last_alert[rule] = t
    return True


def _newest(latest: dict[str, int], limit: int) -> list[str]:
    return sorted(latest, key=lambda name: (-latest[name], name))[:limit]


def user_rules(order: dict[str, Any], state: StateLike, rules: dict[str, Any]) -> list[dict]:
    """Velocity, high value and geo for one order, on the state of its user (one value per
    user, read and written once per order: each State access is a store lookup)."""
    alerts = []
    t = order["event_time"]
    user = order["user_id"]
    mine = state.get("user") or {"velocity": [], "geo": {}, "cooldown": {}}
    cooldown = mine["cooldown"]
    r = rules.get("velocity")
    if r:
        times = [ts for ts in mine["velocity"] if ts > t - r["window_ms"]]
        times.append(t)
        mine["velocity"] = times
        if len(times) > r["threshold"] and _cooled(cooldown, rules, "velocity", t):
            minutes = r["window_ms"] / 60_000
            alerts.append(
                _alert(
                    rules,
                    "velocity",
                    user,
                    order,
                    f"User {user} placed {len(times)} orders in {minutes:g} minutes",
                    {"order_count": len(times), "threshold": r["threshold"], "window_ms": r["window_ms"]},
                )
            )
    r = rules.get("high_value")
    if r and order["amount"] > r["threshold"] and _cooled(cooldown, rules, "high_value", t):
        alerts.append(
            _alert(
                rules,
                "high_value",
                user,
                order,
                f"User {user} placed an order of ₹{order['amount']:,.2f} (limit ₹{r['threshold']:,.2f})",
                {"amount": order["amount"], "threshold": r["threshold"]},
            )
        )
    r = rules.get("geo")
    if r:
        city = order["city"]
        cities = {c: ts for c, ts in mine["geo"].items() if ts > t - r["window_ms"]}
        others = {c: ts for c, ts in cities.items() if c != city}
        cities[city] = t
        mine["geo"] = cities
        if others and _cooled(cooldown, rules, "geo", t):
            listed = _newest(others, rules["list_max"])
            minutes = (t - others[listed[0]]) / 60_000
            alerts.append(
                _alert(
                    rules,
                    "geo",
                    user,
                    order,
                    f"User {user} ordered from {city} {minutes:.1f} min after {listed[0]}",
                    {
                        "city": city,
                        "previous_city": listed[0],
                        "other_cities": listed,
                        "cities_total": len(others),
                        "minutes_apart": round(minutes, 3),
                        "window_ms": r["window_ms"],
                    },
                )
            )
    state.set("user", mine)
    return alerts


def device_rules(order: dict[str, Any], state: StateLike, rules: dict[str, Any]) -> list[dict]:
    """Device sharing for one order, on the state of its device (after the re-key)."""
    r = rules.get("device_sharing")
    if not r:
        return []
    t = order["event_time"]
    mine = state.get("device") or {"users": {}, "cooldown": {}}
    users = {u: ts for u, ts in mine["users"].items() if ts > t - r["window_ms"]}
    users[order["user_id"]] = t
    mine["users"] = users
    alert = len(users) > r["threshold"] and _cooled(mine["cooldown"], rules, "device_sharing", t)
    state.set("device", mine)
    if not alert:
        return []
    device = order["device_id"]
    minutes = r["window_ms"] / 60_000
    return [
        _alert(
            rules,
            "device_sharing",
            device,
            order,
            f"Device {device} used by {len(users)} users in {minutes:g} minutes",
            {
                "distinct_users": len(users),
                "threshold": r["threshold"],
                "window_ms": r["window_ms"],
                "users": _newest(users, rules["list_max"]),
                "users_total": len(users),
            },
        )
    ]


# ----------------------------------------------------------------- the app


class Progress:
    """Counts the messages Quix has processed per topic; stops the app once every order
    has been through both key kinds, and reports on stdout, about every `every_s`."""

    def __init__(self, raw_topic: str, expected: int, stop: Callable[[], None], every_s: float = 0.25) -> None:
        self.raw_topic = raw_topic
        self.expected = expected
        self.stop = stop
        self.every_s = every_s
        self.raw = 0
        self.orders = 0  # valid orders, each also sent to the repartition topic
        self.rekeyed = 0
        self.alerts: dict[str, int] = {}
        self.done = False
        self._next = 0.0

    def valid(self, order: dict[str, Any] | None) -> bool:
        if order is None:
            return False
        self.orders += 1
        return True

    def count(self, alert: dict[str, Any]) -> dict[str, Any]:
        self.alerts[alert["alert_type"]] = self.alerts.get(alert["alert_type"], 0) + 1
        return alert

    def __call__(self, topic: str, _partition: int, _offset: int) -> None:
        if topic == self.raw_topic:
            self.raw += 1
        else:
            self.rekeyed += 1
        if self.done:
            return
        if self.raw >= self.expected and self.rekeyed >= self.orders:
            self.done = True
            self.report(done=True)
            self.stop()
            return
        if self.raw == 1 or (self.raw + self.rekeyed) % 500 == 0 and time.monotonic() >= self._next:
            self.report()

    def report(self, **extra: Any) -> None:
        self._next = time.monotonic() + self.every_s
        line = {"records": self.raw, "orders": self.orders, "rekeyed": self.rekeyed, **extra}
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()


def main(argv: list[str]) -> int:
    from quixstreams import Application

    cfg = json.loads(Path(argv[1]).read_text(encoding="utf-8"))
    rules = cfg["rules"]
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    progress: Progress
    app = Application(
        broker_address=cfg["bootstrap_servers"],
        consumer_group=cfg["consumer_group"],
        auto_offset_reset="earliest",
        processing_guarantee=cfg["processing_guarantee"],
        commit_interval=cfg["commit_interval_s"],
        state_dir=cfg["state_dir"],
        loglevel=cfg.get("loglevel", "WARNING"),
        on_message_processed=lambda *a: progress(*a),
    )
    progress = Progress(cfg["raw_topic"], cfg["expected"], app.stop)
    orders_topic = app.topic(cfg["raw_topic"], key_deserializer="str", value_deserializer="bytes")
    alerts_topic = app.topic(cfg["alerts_topic"], key_serializer="str", value_serializer="json")

    sdf = app.dataframe(orders_topic)
    sdf = sdf.apply(parse).filter(progress.valid)
    # Velocity, high value and geo on the raw topic's key, the user.
    by_user = sdf.apply(lambda order, state: user_rules(order, state, rules), stateful=True, expand=True)
    by_user.apply(progress.count).to_topic(alerts_topic, key=lambda alert: alert["key"])
    # Device sharing needs the orders keyed by device: Quix re-keys through a repartition topic.
    by_device = sdf.group_by("device_id")
    by_device = by_device.apply(lambda order, state: device_rules(order, state, rules), stateful=True, expand=True)
    by_device.apply(progress.count).to_topic(alerts_topic, key=lambda alert: alert["key"])

    # Quix has created its topics by now (the alerts topic if missing, a repartition topic and
    # a changelog topic per stateful step): the rest of the start-up is joining the group.
    progress.report(ready=True)
    app.run()
    sys.stdout.write(json.dumps({"exited": True, "records": progress.raw, "alerts": progress.alerts}) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
