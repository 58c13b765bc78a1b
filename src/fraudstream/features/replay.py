"""Features over a finished stream, exactly as the job computes them: every order in
`Order.sort_key` order, its device's step before its user's."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from fraudstream.events.model import Order
from fraudstream.features.history import DeviceHistory, UserHistory, device_step, user_step
from fraudstream.features.spec import FeatureSpec


def feature_rows(orders: Iterable[Order], spec: FeatureSpec) -> Iterator[tuple[Order, tuple[float, ...]]]:
    """(order, feature vector) for each order, in sort_key order. Give it the orders the rules
    see (re-deliveries dropped: `detectors.replay.first_copies`, or an archive, which holds
    only those)."""
    users: dict[str, UserHistory] = {}
    devices: dict[str, DeviceHistory] = {}
    for order in sorted(orders, key=lambda o: o.sort_key):
        device = devices.get(order.device_id)
        if device is None:
            device = devices[order.device_id] = DeviceHistory()
        others = device_step(spec, device, order)
        user = users.get(order.user_id)
        if user is None:
            user = users[order.user_id] = UserHistory()
        yield order, user_step(spec, user, order, others)
