"""Deterministic order generator: ~80% normal users, ~20% fraud in four patterns.

Normal users have one device, one home city and ordinary amounts, and order rarely.
Fraud comes in episodes whose orders are scheduled on the event-time clock and
interleaved with normal traffic:

- ``velocity_burst``: one account places 4-7 orders within about three minutes;
- ``account_farm``: 4-6 fresh accounts order from one shared device within ~40 minutes;
- ``high_value``: one order far above the usual basket (INR 1,600-9,000);
- ``city_hopping``: one account orders from 2-3 distant cities a few minutes apart.

Every event is labelled in ``behavior`` (ground truth for evaluation; detectors never
read it). The same seed and settings always give the same stream.
"""

from __future__ import annotations

import heapq
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from faker import Faker

from fraudstream.config import GeneratorSettings

CITIES = (
    "Mumbai", "Delhi", "Bengaluru", "Hyderabad", "Chennai", "Kolkata", "Pune",
    "Ahmedabad", "Jaipur", "Lucknow", "Chandigarh", "Kochi", "Indore", "Bhopal",
)  # fmt: skip
PAYMENT_METHODS = ("UPI", "Credit Card", "Debit Card", "Wallet", "Net Banking", "Cash on Delivery")
BEHAVIORS = ("normal", "velocity_burst", "account_farm", "high_value", "city_hopping")
SEEDED_START = "2026-01-01T00:00:00+00:00"
_RESTAURANTS_PER_CITY = 40


@dataclass(frozen=True, slots=True)
class _User:
    user_id: str
    device_id: str
    city: str
    payment: str
    basket: float  # typical order value


@dataclass(order=True, slots=True)
class _Scheduled:
    at: int
    seq: int
    event: dict[str, Any]


def _start_ms(start_time: str | None, seeded: bool) -> int:
    if start_time is None:
        if seeded:
            start_time = SEEDED_START
        else:
            return int(time.time() * 1000)
    parsed = datetime.fromisoformat(start_time.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


class OrderGenerator:
    """Produces order dicts following the event contract, one at a time."""

    def __init__(
        self,
        seed: int | None = None,
        fraud_ratio: float = 0.2,
        users: int = 20_000,
        start_ms: int | None = None,
        mean_gap_ms: int = 250,
        jitter_ms: int = 0,
    ) -> None:
        self.seed = seed if seed is not None else random.SystemRandom().randrange(2**31)
        self.rng = random.Random(self.seed)
        self.fraud_ratio = fraud_ratio
        self.mean_gap_ms = mean_gap_ms
        self.jitter_ms = jitter_ms
        self.clock = start_ms if start_ms is not None else _start_ms(None, seed is not None)
        # Faker supplies order ids; seeding its instance keeps the stream reproducible.
        self.faker = Faker("en_IN")
        self.faker.seed_instance(self.seed)
        self.restaurants = {
            city: [f"r_{city[:3].lower()}_{i}" for i in range(_RESTAURANTS_PER_CITY)] for city in CITIES
        }
        self.users = [self._new_user(f"u_{i}", f"d_{i}") for i in range(1, users + 1)]
        self._next_account = users + 1
        self._next_device = users + 1
        self._heap: list[_Scheduled] = []
        self._seq = 0
        self.emitted = 0
        self.fraud_committed = 0

    def _new_user(self, user_id: str, device_id: str) -> _User:
        rng = self.rng
        return _User(
            user_id=user_id,
            device_id=device_id,
            city=rng.choice(CITIES),
            payment=rng.choice(PAYMENT_METHODS),
            basket=rng.uniform(150, 600),
        )

    def _fresh_account(self) -> str:
        uid = f"u_{self._next_account}"
        self._next_account += 1
        return uid

    def _fresh_device(self) -> str:
        did = f"d_{self._next_device}"
        self._next_device += 1
        return did

    def _order(self, user: str, device: str, city: str, amount: float, payment: str, behavior: str) -> dict[str, Any]:
        rng = self.rng
        return {
            "transaction_id": f"t_{self.faker.uuid4()[:18]}",
            "user_id": user,
            "device_id": device,
            "restaurant_id": rng.choice(self.restaurants[city]),
            "amount": round(amount, 2),
            "city": city,
            "payment_method": payment,
            "event_time": 0,  # stamped when emitted
            "behavior": behavior,
        }

    def _normal(self) -> dict[str, Any]:
        u = self.rng.choice(self.users)
        amount = min(1400.0, max(80.0, self.rng.gauss(u.basket, u.basket * 0.25)))
        return self._order(u.user_id, u.device_id, u.city, amount, u.payment, "normal")

    def _schedule(self, offset_ms: int, event: dict[str, Any]) -> None:
        self._seq += 1
        heapq.heappush(self._heap, _Scheduled(self.clock + offset_ms, self._seq, event))
        self.fraud_committed += 1

    def _start_episode(self) -> None:
        rng = self.rng
        kind = rng.choice(BEHAVIORS[1:])
        if kind == "velocity_burst":
            uid, did, city = self._fresh_account(), self._fresh_device(), rng.choice(CITIES)
            offset = 0
            for _ in range(rng.randint(4, 7)):
                self._schedule(offset, self._order(uid, did, city, rng.uniform(100, 700), "Wallet", kind))
                offset += rng.randint(10_000, 40_000)
        elif kind == "account_farm":
            did, city = self._fresh_device(), rng.choice(CITIES)
            offset = 0
            for _ in range(rng.randint(4, 6)):
                uid = self._fresh_account()
                self._schedule(offset, self._order(uid, did, city, rng.uniform(100, 500), "UPI", kind))
                offset += rng.randint(60_000, 480_000)
        elif kind == "high_value":
            u = rng.choice(self.users)
            amount = rng.uniform(1_600, 9_000)
            self._schedule(0, self._order(u.user_id, u.device_id, u.city, amount, "Credit Card", kind))
        else:  # city_hopping
            uid, did = self._fresh_account(), self._fresh_device()
            offset = 0
            for city in rng.sample(CITIES, rng.randint(2, 3)):
                self._schedule(offset, self._order(uid, did, city, rng.uniform(150, 800), "Credit Card", kind))
                offset += rng.randint(60_000, 420_000)

    def next_order(self) -> dict[str, Any]:
        rng = self.rng
        if self.mean_gap_ms:
            self.clock += int(rng.expovariate(1.0 / self.mean_gap_ms))
        if self._heap and self._heap[0].at <= self.clock:
            event = heapq.heappop(self._heap).event
        elif self.fraud_committed < self.fraud_ratio * (self.emitted + 1):
            self._start_episode()
            event = heapq.heappop(self._heap).event
        else:
            event = self._normal()
        # Out-of-order jitter: the event claims a time up to jitter_ms before the clock,
        # so it is never further behind the newest event than the jitter bound.
        jitter = rng.randint(0, self.jitter_ms) if self.jitter_ms else 0
        event["event_time"] = self.clock - jitter
        self.emitted += 1
        return event

    def orders(self, count: int | None = None) -> Iterator[dict[str, Any]]:
        n = 0
        while count is None or n < count:
            yield self.next_order()
            n += 1


def generator_from_settings(cfg: GeneratorSettings) -> OrderGenerator:
    return OrderGenerator(
        seed=cfg.seed,
        fraud_ratio=cfg.fraud_ratio,
        users=cfg.users,
        start_ms=_start_ms(cfg.start_time, cfg.seed is not None),
        mean_gap_ms=cfg.mean_gap_ms,
        jitter_ms=cfg.jitter_ms,
    )
