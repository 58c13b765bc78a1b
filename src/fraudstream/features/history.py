"""Each customer's and each device's history, and the features an order gets from it.

Pure functions over plain state objects. Every key's orders are folded in `Order.sort_key`
order (event time, then id), so an order's features depend only on the orders before it in
that order, never on arrival order. Each step first computes the order's features from the
state as it is, then folds the order in. All state is bounded: at most `max_devices` devices
and `max_cities` cities per user (the least recently seen is evicted first, equal times in name
order), the last hour's order times up to `recent_max`, `device_users_max` users per device
over `device_window_ms`; a user silent for `history_ms` starts again from nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from fraudstream.events.model import Order
from fraudstream.features.spec import HOUR_MS, FeatureSpec


@dataclass
class UserHistory:
    """A customer's normal: how many orders, their amounts (running mean and spread), when,
    from which devices and cities."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0  # sum of squared deviations from the mean (Welford)
    first_time: int = 0
    last_time: int = 0
    recent: list[int] = field(default_factory=list)  # order times in the last recent_ms, oldest first
    devices: dict[str, list[int]] = field(default_factory=dict)  # device -> [orders, last time]
    cities: dict[str, list[int]] = field(default_factory=dict)  # city -> [orders, last time]


@dataclass
class DeviceHistory:
    """Who used a device lately: user -> the time of their latest order on it."""

    users: dict[str, int] = field(default_factory=dict)


def _evict_oldest(seen: dict, limit: int, last_of) -> None:  # type: ignore[no-untyped-def]
    """Make room for one more entry: drop the least recently seen (equal times: the first name)."""
    while len(seen) >= limit:
        del seen[min(seen, key=lambda name: (last_of(seen[name]), name))]


def _count(seen: dict[str, list[int]], name: str, t: int, limit: int) -> None:
    entry = seen.get(name)
    if entry is None:
        _evict_oldest(seen, limit, lambda e: e[1])
        seen[name] = [1, t]
    else:
        entry[0] += 1
        entry[1] = t


def usual_city(h: UserHistory) -> str | None:
    """The city of most orders; then the most recent; then the first name."""
    if not h.cities:
        return None
    return min(h.cities, key=lambda c: (-h.cities[c][0], -h.cities[c][1], c))


def device_step(spec: FeatureSpec, state: DeviceHistory, order: Order) -> int:
    """Other users seen on the order's device in the `device_window_ms` before it; then the
    order's user is recorded there."""
    t = order.event_time
    users = state.users
    for user in [u for u, last in users.items() if t - last >= spec.device_window_ms]:
        del users[user]
    others = len(users) - (order.user_id in users)
    if order.user_id not in users:
        _evict_oldest(users, spec.device_users_max, lambda last: last)
    users[order.user_id] = t
    return others


def user_step(spec: FeatureSpec, state: UserHistory, order: Order, device_users: int) -> tuple[float, ...]:
    """The order's feature vector (in `FEATURES` order) from the user's history; then the
    order is folded into it. `device_users` comes from `device_step`."""
    t = order.event_time
    if state.n and t - state.last_time >= spec.history_ms:
        state.__init__()  # type: ignore[misc]  # silent for too long: a new history
    h = state
    amount = float(order.amount)
    recent = h.recent
    while recent and t - recent[0] >= spec.recent_ms:
        recent.pop(0)
    if h.n:
        std = math.sqrt(h.m2 / h.n)
        # floors of one rupee keep both finite whatever the amounts (a mean of 1e-309 would
        # give inf): every feature is a finite number, in Python as in the JVM
        to_usual = amount / max(h.mean, 1.0)
        z = (amount - h.mean) / (std + 0.1 * h.mean + 1.0)
        age_h = (t - h.first_time) / HOUR_MS
        since_h = (t - h.last_time) / HOUR_MS
        usual = usual_city(h)
        km = spec.distances.get(usual, {}).get(order.city, -1) if usual is not None else -1
    else:
        to_usual, z, age_h, since_h, km = 1.0, 0.0, 0.0, spec.history_ms / HOUR_MS, 0
    device = h.devices.get(order.device_id)
    city = h.cities.get(order.city)
    features = (
        amount,
        float(h.n),
        to_usual,
        z,
        age_h,
        since_h,
        float(len(recent)),
        float(device[0] if device else 0),
        float(city[0] if city else 0),
        float(km),
        float(device_users),
    )
    # fold the order in
    if not h.n:
        h.first_time = t
    h.n += 1
    d = amount - h.mean
    h.mean += d / h.n
    h.m2 += d * (amount - h.mean)
    h.last_time = t
    recent.append(t)
    if len(recent) > spec.recent_max:
        recent.pop(0)
    _count(h.devices, order.device_id, t, spec.max_devices)
    _count(h.cities, order.city, t, spec.max_cities)
    return features
