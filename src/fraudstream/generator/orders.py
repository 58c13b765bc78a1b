"""Deterministic food-delivery orders: a realistic honest population plus labelled fraud.

Time. Orders arrive as a Poisson stream whose rate follows a day in India (IST): quiet
nights (about a tenth of the mean rate at 4 am), a lunch peak around 13:00 and a larger
dinner peak around 20:30 (about 2.5x the mean). The rate profile averages to 1 over a
day, so ``mean_gap_ms`` stays the long-run mean gap between orders.

Honest customers (``behavior="normal"``, no ``fraud_actor``). Each of the ``users``
customers has a home city (weighted by city size), a preferred payment method, a basket
(lognormal, median INR 300, mostly 170-530) and their own device; each order's amount
varies around the basket (lognormal, sigma 0.3, capped at INR 1,400). Rarely:

- a trip (0.2% of orders): the customer orders from another city for 3-72 hours;
- a second device (10% of customers), used for a quarter of their orders;
- a shared household device (4% of customers, households of 2-4 people);
- a group/office order (0.3% of orders): 2-4 orders within a few minutes (20-150 s apart);
- a party order (0.2% of orders): INR 1,200-3,500.

This honest noise gives each rule some false alerts at the default thresholds, so
thresholds trade precision against recall.

Fraud comes in episodes, one fraud actor each, whose orders are scheduled on the
event-time clock and interleaved with honest traffic. A new episode starts whenever the
fraud emitted so far falls below ``fraud_ratio`` of all events, so the share holds from
the first events on. Its pattern is drawn by ``pattern_shares`` (relative shares among
episodes, by default 0.2 for each of the first four and 0.1 for each of the last two; a
missing pattern or share 0 turns it off):

- ``velocity_burst``: a fresh account and device; a burst of 3-9 orders 10 s-2 min apart
  (log-uniform), and for 30% of actors a second burst 20-90 minutes later;
- ``account_farm``: 3-8 fresh accounts on one fresh device in one city, first orders spread
  over 10-90 minutes; a fifth of the accounts order twice;
- ``high_value``: a taken-over existing account (on the attacker's new device 60% of the
  time) places one or, 35% of the time, two orders of INR 1,600-9,000 (log-uniform);
- ``city_hopping``: a fresh account ordering from 2-4 cities, each over 400 km from the
  previous one, 2-30 minutes apart (log-uniform);
- ``account_takeover``, quiet: an honest customer with a history (at least 3 orders emitted
  so far, and idle for an hour if a few random picks find one; in a stream's first hours,
  before that, one with fewer) is taken over from the attacker's fresh device, in a city
  that is neither the customer's home nor their trip city 80% of the time (else where the
  customer is). 2-4 orders 15-90 minutes apart (log-uniform; under the velocity rule) from
  that one city, each 3-6x the customer's basket and at most INR 1,449 (under the
  high-value rule; only customers whose basket allows that are chosen), paid with the
  customer's usual method half the time, else a card. The attacker changes the password:
  the owner places no order from the episode's start until 2 hours after its last order,
  so the geo rule sees no hop between owner and attacker. The rules catch almost none;
- ``promo_abuse``: first-order promotions farmed slowly: 4-10 fresh accounts on one fresh
  device in one city, each placing exactly one order of INR 200-600, 35-150 minutes apart,
  so the device-sharing rule (users on a device within 30 minutes) never sees two at once.

Live streams. Given a ``clock`` (``start_time = "now"`` with a rate above 0 in the
settings, the default of an unseeded paced run), the generator runs on the wall clock
instead of its own: each order is stamped with the time at which it is made, and the
orders an episode or a group order scheduled (10 s-2 min apart, 20-90 minutes later...)
come due in real time, so the patterns keep their real spacing. The rate is then set by
whoever paces the calls (``paced``), flat, without the daily rhythm; a live stream is not
reproducible, even with a seed. So that each customer orders as often as in a reproducible
stream (one order every ``users`` x ``mean_gap_ms`` on average, about 80 minutes by
default), and honest noise trips the rules as rarely, a live stream's population is
``users`` scaled to its rate (``live_users``: 250,000 customers at 50 orders/s).

Labels: ``behavior`` is the pattern (or ``"normal"``); fraud events also carry
``fraud_actor``, the episode's id such as ``"velocity_burst-000017"``. Both are ground
truth for evaluation; detectors never read them. The same seed and settings always give
the same stream.
"""

from __future__ import annotations

import heapq
import math
import random
import time
from bisect import bisect
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from itertools import accumulate
from statistics import NormalDist
from typing import Any

from fraudstream.config import DEFAULT_PATTERN_SHARES, GeneratorSettings

# name, relative share of customers living there, latitude, longitude
_CITY_TABLE = (
    ("Mumbai", 16, 19.08, 72.88),
    ("Delhi", 16, 28.61, 77.21),
    ("Bengaluru", 14, 12.97, 77.59),
    ("Hyderabad", 10, 17.39, 78.49),
    ("Chennai", 9, 13.08, 80.27),
    ("Kolkata", 8, 22.57, 88.36),
    ("Pune", 7, 18.52, 73.86),
    ("Ahmedabad", 5, 23.02, 72.57),
    ("Jaipur", 4, 26.91, 75.79),
    ("Lucknow", 3, 26.85, 80.95),
    ("Chandigarh", 2, 30.73, 76.78),
    ("Kochi", 2, 9.93, 76.27),
    ("Indore", 2, 22.72, 75.86),
    ("Bhopal", 2, 23.26, 77.41),
)
CITIES = tuple(row[0] for row in _CITY_TABLE)
PAYMENT_METHODS = ("UPI", "Credit Card", "Debit Card", "Wallet", "Net Banking", "Cash on Delivery")
PATTERNS = ("velocity_burst", "account_farm", "high_value", "city_hopping", "account_takeover", "promo_abuse")
BEHAVIORS = ("normal", *PATTERNS)
SEEDED_START = "2026-01-01T00:00:00+00:00"
LIVE_START = "now"  # generator.start_time of a stream on the wall clock
LIVE_MAX_USERS = 1_000_000
_RESTAURANTS_PER_CITY = 40

_MIN = 60_000
_HOUR = 3_600_000
_CITY_CUM = list(accumulate(row[1] for row in _CITY_TABLE))
_PAYMENT_CUM = list(accumulate((45, 15, 12, 13, 5, 10)))  # preferred method of a customer


def _distance_km(a: tuple[str, int, float, float], b: tuple[str, int, float, float]) -> float:
    lat1, lon1, lat2, lon2 = map(math.radians, (a[2], a[3], b[2], b[3]))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * 6371 * math.asin(math.sqrt(h))


FAR_KM = 400
# city -> cities more than FAR_KM away (the hops of city_hopping)
FAR_CITIES = {
    a[0]: tuple(b[0] for b in _CITY_TABLE if _distance_km(a, b) > FAR_KM) for a in _CITY_TABLE
}  # fmt: skip

# Daily rhythm: relative order rate at each IST hour (value at the middle of the hour).
_HOURLY_RATE = (
    0.45, 0.25, 0.15, 0.10, 0.08, 0.10, 0.20, 0.35, 0.55, 0.65, 0.75, 1.10,
    1.80, 2.00, 1.40, 0.85, 0.75, 0.90, 1.25, 1.80, 2.30, 2.20, 1.50, 0.80,
)  # fmt: skip
_IST_OFFSET_MS = 19_800_000  # UTC+05:30
_SLOT_MS = 15 * _MIN
_SLOTS = 96


def _rhythm() -> list[float]:
    """Relative rate per quarter hour of the IST day, interpolated and averaging to 1."""
    out = []
    for s in range(_SLOTS):
        h = (s + 0.5) / 4 - 0.5  # hours after the middle of hour 0
        lo = math.floor(h)
        frac = h - lo
        out.append(_HOURLY_RATE[lo % 24] * (1 - frac) + _HOURLY_RATE[(lo + 1) % 24] * frac)
    mean = sum(out) / len(out)
    return [r / mean for r in out]


RHYTHM = _rhythm()

# Honest customers
_QUANTILES = 4096
_Z = [NormalDist().inv_cdf((k + 0.5) / _QUANTILES) for k in range(_QUANTILES)]
_BASKETS = [min(700.0, max(120.0, 300.0 * math.exp(0.35 * z))) for z in _Z]  # per customer
_SPREAD = [math.exp(0.3 * z) for z in _Z]  # per order, around the basket
_MIN_AMOUNT, _MAX_AMOUNT = 60.0, 1400.0
TWO_DEVICES_SHARE = 0.10
SECOND_DEVICE_USE = 0.25
HOUSEHOLD_SHARE = 0.04
_HOUSEHOLD_SIZES = (2, 2, 2, 2, 2, 3, 3, 3, 4, 4)
TRIP_P = 0.002
TRIP_MS = (3 * _HOUR, 72 * _HOUR)
GROUP_P = 0.003
_GROUP_SIZES = (2, 2, 2, 2, 2, 3, 3, 3, 4, 4)
GROUP_GAP_MS = (20_000, 150_000)
PARTY_P = 0.002
PARTY_AMOUNT = (1_200.0, 3_500.0)
_NOISE_P = TRIP_P + GROUP_P + PARTY_P

# Quiet fraud
TAKEOVER_HISTORY = 3  # honest orders a taken-over customer has placed before, at least
TAKEOVER_ORDERS = (2, 4)
TAKEOVER_GAP_MS = (15 * _MIN, 90 * _MIN)  # log-uniform
TAKEOVER_TIMES_BASKET = (3.0, 6.0)
TAKEOVER_MAX_AMOUNT = 1_449.0  # under the high-value rule's INR 1,500, rounding included
TAKEOVER_AWAY_P = 0.8
TAKEOVER_IDLE_MS = _HOUR  # the victim has not ordered for this long (if one can be found)
TAKEOVER_LOCKOUT_MS = 2 * _HOUR  # the owner is locked out until this long after the last order
_VICTIM_TRIES = 20
_TAKEOVER_MAX_BASKET = TAKEOVER_MAX_AMOUNT / TAKEOVER_TIMES_BASKET[0]
PROMO_ACCOUNTS = (4, 10)
PROMO_GAP_MS = (35 * _MIN, 150 * _MIN)
PROMO_AMOUNT = (200.0, 600.0)


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def is_live(cfg: GeneratorSettings) -> bool:
    """Whether these settings ask for a stream on the wall clock (see the module's doc)."""
    return cfg.start_time == LIVE_START and cfg.rate > 0


def live_users(cfg: GeneratorSettings) -> int:
    """A live stream's population: `users` at the pace of a reproducible stream (an order
    every mean_gap_ms) scaled to the live rate, so each customer orders as often as there
    (at most LIVE_MAX_USERS, which a rate above 200/s with the defaults reaches)."""
    if not cfg.mean_gap_ms:
        return cfg.users
    return max(1, min(LIVE_MAX_USERS, round(cfg.users * cfg.rate * cfg.mean_gap_ms / 1000)))


def _start_ms(start_time: str | None, seeded: bool) -> int:
    if start_time is None:
        if seeded:
            start_time = SEEDED_START
        else:
            return wall_clock_ms()
    if start_time == LIVE_START:
        return wall_clock_ms()
    parsed = datetime.fromisoformat(start_time.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


def _pattern_weights(shares: Mapping[str, float] | None) -> list[float]:
    if shares is None:
        shares = DEFAULT_PATTERN_SHARES
    unknown = sorted(set(shares) - set(PATTERNS))
    if unknown:
        raise ValueError(f"unknown pattern(s) {', '.join(unknown)}: use {', '.join(PATTERNS)}")
    weights = [float(shares.get(p, 0.0)) for p in PATTERNS]
    if any(not math.isfinite(w) or w < 0 for w in weights):
        raise ValueError("pattern shares must be finite numbers >= 0")
    if not any(weights):
        raise ValueError("at least one pattern needs a share above 0")
    return weights


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
        pattern_shares: Mapping[str, float] | None = None,
        clock: Callable[[], int] | None = None,
    ) -> None:
        """`clock` (epoch ms, e.g. `wall_clock_ms`) makes a live stream: orders are stamped
        with it as they are made, instead of with the generator's own event-time clock
        (`start_ms`, advancing by `mean_gap_ms` on average)."""
        self.seed = seed if seed is not None else random.SystemRandom().randrange(2**31)
        self.rng = rng = random.Random(self.seed)
        self.fraud_ratio = fraud_ratio
        self.mean_gap_ms = mean_gap_ms
        self.jitter_ms = jitter_ms
        self.pattern_shares = dict(zip(PATTERNS, _pattern_weights(pattern_shares), strict=True))
        self._pattern_cum = list(accumulate(self.pattern_shares.values()))
        # Arrival rate (per ms) in each quarter hour of the IST day.
        self._rates = [r / mean_gap_ms for r in RHYTHM] if mean_gap_ms else []
        self.live_clock = clock
        if clock is not None:
            self.clock = clock()
        else:
            self.clock = start_ms if start_ms is not None else _start_ms(None, seed is not None)
        self._last_time = self.clock
        self.restaurants = {
            city: [f"r_{city[:3].lower()}_{i}" for i in range(_RESTAURANTS_PER_CITY)] for city in CITIES
        }
        # Customer i (0-based) is user u_{i+1} with device d_{i+1} unless listed in _devices.
        self.n_users = users
        self._home = rng.choices(CITIES, cum_weights=_CITY_CUM, k=users)
        self._payment = rng.choices(PAYMENT_METHODS, cum_weights=_PAYMENT_CUM, k=users)
        rand = rng.random
        self._basket = [_BASKETS[int(rand() * _QUANTILES)] for _ in range(users)]
        self._next_device = users + 1
        self._devices = self._special_devices(users)  # i -> (main device, second device or None)
        self._trips: dict[int, tuple[str, int]] = {}  # i -> (city, until event time)
        # Honest orders emitted per customer, and the customers a quiet takeover may pick:
        # _history[k] lists those who reached k + 1 orders (in that order; no RNG is drawn,
        # so a stream without takeovers is the same as before they existed).
        self._orders_of = [0] * users
        self._last_order = [0] * users  # event time of each customer's latest honest order
        self._history: list[list[int]] = [[] for _ in range(TAKEOVER_HISTORY)]
        self._locked: dict[int, int] = {}  # taken-over customer -> locked out until event time
        self._next_account = users + 1
        self._heap: list[tuple[int, int, dict[str, Any]]] = []
        self._seq = 0
        self._episodes = 0
        self.emitted = 0
        self.fraud_emitted = 0
        self.fraud_committed = 0  # fraud orders scheduled so far, emitted or not

    # ---- population -------------------------------------------------------------------

    def _special_devices(self, users: int) -> dict[int, tuple[str, str | None]]:
        rng = self.rng
        devices: dict[int, tuple[str, str | None]] = {}
        # Households: customers head, head+1, ... share the head's device.
        mean_size = sum(_HOUSEHOLD_SIZES) / len(_HOUSEHOLD_SIZES)
        heads = rng.sample(range(users), min(users, int(users * HOUSEHOLD_SHARE / mean_size)))
        for head in sorted(heads):
            members = range(head, min(users, head + rng.choice(_HOUSEHOLD_SIZES)))
            if len(members) < 2 or any(m in devices for m in members):
                continue
            shared = f"d_{head + 1}"
            for m in members:
                devices[m] = (shared, None)
        # Customers with a second device.
        for i in sorted(rng.sample(range(users), int(users * TWO_DEVICES_SHARE))):
            main = devices[i][0] if i in devices else f"d_{i + 1}"
            devices[i] = (main, self._fresh_device())
        return devices

    def _fresh_account(self) -> str:
        uid = f"u_{self._next_account}"
        self._next_account += 1
        return uid

    def _fresh_device(self) -> str:
        did = f"d_{self._next_device}"
        self._next_device += 1
        return did

    def _city(self) -> str:
        return self.rng.choices(CITIES, cum_weights=_CITY_CUM)[0]

    def _log_uniform(self, lo: float, hi: float) -> float:
        return lo * math.exp(self.rng.random() * math.log(hi / lo))

    # ---- events -----------------------------------------------------------------------

    def _order(self, user: str, device: str, city: str, amount: float, payment: str, behavior: str) -> dict[str, Any]:
        rng = self.rng
        return {
            "transaction_id": f"t_{rng.getrandbits(72):018x}",
            "user_id": user,
            "device_id": device,
            "restaurant_id": self.restaurants[city][int(rng.random() * _RESTAURANTS_PER_CITY)],
            "amount": round(amount, 2),
            "city": city,
            "payment_method": payment,
            "event_time": 0,  # stamped when emitted
            "behavior": behavior,
        }

    def _normal(self) -> dict[str, Any]:
        rand = self.rng.random
        i = int(rand() * self.n_users)
        locked = self._locked
        for _ in range(_VICTIM_TRIES):  # a taken-over customer cannot order (bounded: tiny populations)
            if i not in locked:
                break
            if self.clock < locked[i]:
                i = int(rand() * self.n_users)
            else:
                del locked[i]
        city = self._home[i]
        trips = self._trips
        trip = trips.get(i)
        if trip is not None:
            if self.clock < trip[1]:
                city = trip[0]
            else:
                del trips[i]
                trip = None
        devices = self._devices.get(i)
        if devices is None:
            device = f"d_{i + 1}"
        elif devices[1] is not None and rand() < SECOND_DEVICE_USE:
            device = devices[1]
        else:
            device = devices[0]
        basket = self._basket[i]
        amount = min(_MAX_AMOUNT, max(_MIN_AMOUNT, basket * _SPREAD[int(rand() * _QUANTILES)]))
        roll = rand()
        extras = 0
        if roll < _NOISE_P:
            if roll < TRIP_P:
                if trip is None:
                    city = self._trip(i)
            elif roll < TRIP_P + GROUP_P:
                extras = self.rng.choice(_GROUP_SIZES) - 1
            else:
                amount = self.rng.uniform(*PARTY_AMOUNT)
        user = f"u_{i + 1}"
        payment = self._payment[i]
        self._count(i)
        offset = 0
        for _ in range(extras):  # the rest of a group order, a few minutes
            offset += self.rng.randint(*GROUP_GAP_MS)
            extra = min(_MAX_AMOUNT, max(_MIN_AMOUNT, basket * _SPREAD[int(rand() * _QUANTILES)]))
            self._schedule(offset, self._order(user, device, city, extra, payment, "normal"), fraud=False)
        return self._order(user, device, city, amount, payment, "normal")

    def _count(self, i: int) -> None:
        """One more honest order emitted for customer i."""
        n = self._orders_of[i] = self._orders_of[i] + 1
        self._last_order[i] = self.clock
        if n <= TAKEOVER_HISTORY and self._basket[i] <= _TAKEOVER_MAX_BASKET:
            self._history[n - 1].append(i)

    def _current_city(self, i: int) -> str:
        trip = self._trips.get(i)
        return trip[0] if trip is not None and self.clock < trip[1] else self._home[i]

    def _trip(self, i: int) -> str:
        home = self._home[i]
        city = home
        while city == home:
            city = self._city()
        self._trips[i] = (city, self.clock + int(self._log_uniform(*TRIP_MS)))
        return city

    def _schedule(self, offset_ms: int, event: dict[str, Any], fraud: bool = True) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (self.clock + offset_ms, self._seq, event))
        if fraud:
            self.fraud_committed += 1

    def _fraud(self, offset_ms: float, actor: str, event: dict[str, Any]) -> None:
        event["fraud_actor"] = actor
        self._schedule(int(offset_ms), event)

    # ---- fraud episodes ---------------------------------------------------------------

    def _start_episode(self) -> None:
        rng = self.rng
        kind = PATTERNS[bisect(self._pattern_cum, rng.random() * self._pattern_cum[-1])]
        self._episodes += 1
        actor = f"{kind}-{self._episodes:06d}"
        getattr(self, f"_{kind}")(kind, actor)

    def _velocity_burst(self, kind: str, actor: str) -> None:
        rng = self.rng
        uid, did, city = self._fresh_account(), self._fresh_device(), self._city()
        payment = rng.choice(("Wallet", "UPI", "Credit Card"))
        offset = 0.0
        for burst in range(2 if rng.random() < 0.3 else 1):
            if burst:
                offset += rng.randint(20 * _MIN, 90 * _MIN)
            for k in range(rng.randint(3, 9)):
                if k:
                    offset += self._log_uniform(10_000, 120_000)
                self._fraud(offset, actor, self._order(uid, did, city, rng.uniform(100, 700), payment, kind))

    def _account_farm(self, kind: str, actor: str) -> None:
        rng = self.rng
        did, city = self._fresh_device(), self._city()
        accounts = rng.randint(3, 8)
        span = rng.randint(10 * _MIN, 90 * _MIN)
        starts = [0, *sorted(rng.randint(0, span) for _ in range(accounts - 2)), span]
        for start in starts:
            uid = self._fresh_account()
            payment = rng.choice(("UPI", "Wallet", "Cash on Delivery"))
            self._fraud(start, actor, self._order(uid, did, city, rng.uniform(100, 450), payment, kind))
            if rng.random() < 0.2:
                again = rng.randint(start, span)
                self._fraud(again, actor, self._order(uid, did, city, rng.uniform(100, 450), payment, kind))

    def _high_value(self, kind: str, actor: str) -> None:
        rng = self.rng
        i = int(rng.random() * self.n_users)
        own = self._devices.get(i, (f"d_{i + 1}", None))[0]
        did = self._fresh_device() if rng.random() < 0.6 else own
        payment = rng.choice(("Credit Card", "Credit Card", "Wallet", "Net Banking"))
        offset = 0
        for k in range(2 if rng.random() < 0.35 else 1):
            if k:
                offset += rng.randint(2 * _MIN, 25 * _MIN)
            amount = self._log_uniform(1_600, 9_000)
            self._fraud(offset, actor, self._order(f"u_{i + 1}", did, self._home[i], amount, payment, kind))

    def _city_hopping(self, kind: str, actor: str) -> None:
        rng = self.rng
        uid, did, city = self._fresh_account(), self._fresh_device(), self._city()
        payment = rng.choice(("Credit Card", "Debit Card"))
        visited = [city]
        offset = 0.0
        for k in range(rng.randint(2, 4)):
            if k:
                offset += self._log_uniform(2 * _MIN, 30 * _MIN)
                city = rng.choice([c for c in FAR_CITIES[city] if c not in visited])
                visited.append(city)
            self._fraud(offset, actor, self._order(uid, did, city, rng.uniform(150, 900), payment, kind))

    def _account_takeover(self, kind: str, actor: str) -> None:
        rng = self.rng
        i = self._victim()
        basket = self._basket[i]
        did = self._fresh_device()
        city = here = self._current_city(i)
        if rng.random() < TAKEOVER_AWAY_P:
            while city in (here, self._home[i]):
                city = self._city()
        offset = 0.0
        for k in range(rng.randint(*TAKEOVER_ORDERS)):
            if k:
                offset += self._log_uniform(*TAKEOVER_GAP_MS)
            most = min(TAKEOVER_TIMES_BASKET[1], TAKEOVER_MAX_AMOUNT / basket)
            times = rng.uniform(min(TAKEOVER_TIMES_BASKET[0], most), most)
            payment = self._payment[i] if rng.random() < 0.5 else rng.choice(("Credit Card", "Debit Card"))
            self._fraud(offset, actor, self._order(f"u_{i + 1}", did, city, basket * times, payment, kind))
        self._locked[i] = max(self._locked.get(i, 0), self.clock + int(offset) + TAKEOVER_LOCKOUT_MS)

    def _victim(self) -> int:
        """A customer idle for TAKEOVER_IDLE_MS (an order just before the attacker's, in
        another city, would be a hop), with the longest history up to TAKEOVER_HISTORY orders
        that a few random picks find, whose basket leaves room under TAKEOVER_MAX_AMOUNT and
        not taken over already. Only when no pick at any history length is idle (early in a
        stream): the busy one with the longest history, else anyone."""
        rng = self.rng
        fallback = None
        for known in reversed(self._history):
            for _ in range(_VICTIM_TRIES if known else 0):
                i = known[int(rng.random() * len(known))]
                if i not in self._locked:
                    if self.clock - self._last_order[i] >= TAKEOVER_IDLE_MS:
                        return i
                    fallback = i if fallback is None else fallback
        if fallback is not None:
            return fallback
        for _ in range(_VICTIM_TRIES):
            i = int(rng.random() * self.n_users)
            if i not in self._locked and self._basket[i] <= _TAKEOVER_MAX_BASKET:
                break
        return i  # in a tiny population perhaps not: amounts are capped all the same

    def _promo_abuse(self, kind: str, actor: str) -> None:
        rng = self.rng
        did, city = self._fresh_device(), self._city()
        offset = 0
        for k in range(rng.randint(*PROMO_ACCOUNTS)):
            if k:
                offset += rng.randint(*PROMO_GAP_MS)
            payment = rng.choice(("UPI", "Wallet", "Cash on Delivery"))
            order = self._order(self._fresh_account(), did, city, rng.uniform(*PROMO_AMOUNT), payment, kind)
            self._fraud(offset, actor, order)

    # ---- the stream -------------------------------------------------------------------

    def next_order(self) -> dict[str, Any]:
        rng = self.rng
        live = self.live_clock is not None
        if live:
            self.clock = max(self.clock, self.live_clock())  # type: ignore[misc]
        elif self.mean_gap_ms:
            slot = (self.clock + _IST_OFFSET_MS) // _SLOT_MS % _SLOTS
            self.clock += int(rng.expovariate(self._rates[slot]))
        heap = self._heap
        if heap and (heap[0][0] <= self.clock or not (live or self.mean_gap_ms)):
            at, _, event = heapq.heappop(heap)
            # A scheduled order keeps its own time, unless that would put it before the last
            # order (or after the clock, which only stands still when mean_gap_ms is 0); on
            # the wall clock, it is made now.
            stamp = self.clock if live else min(max(at, self._last_time), self.clock)
            if "fraud_actor" in event:
                self.fraud_emitted += 1
            else:  # the rest of a group order
                self._count(int(event["user_id"][2:]) - 1)
        elif self.fraud_emitted < self.fraud_ratio * (self.emitted + 1):
            # Held on emitted (not committed) fraud, so the share is right from the start.
            self._start_episode()
            event = heapq.heappop(heap)[2]
            stamp = self.clock
            self.fraud_emitted += 1
        else:
            event = self._normal()
            stamp = self.clock
        self._last_time = stamp
        # Out-of-order jitter: the event claims a time up to jitter_ms before its own,
        # so it is never further behind the newest event than the jitter bound.
        jitter = rng.randint(0, self.jitter_ms) if self.jitter_ms else 0
        event["event_time"] = stamp - jitter
        self.emitted += 1
        return event

    def orders(self, count: int | None = None) -> Iterator[dict[str, Any]]:
        n = 0
        while count is None or n < count:
            yield self.next_order()
            n += 1


def generator_from_settings(cfg: GeneratorSettings, clock: Callable[[], int] = wall_clock_ms) -> OrderGenerator:
    """The generator these settings describe; a live one (`is_live`) reads `clock`."""
    live = is_live(cfg)
    return OrderGenerator(
        seed=cfg.seed,
        fraud_ratio=cfg.fraud_ratio,
        users=live_users(cfg) if live else cfg.users,
        start_ms=None if live else _start_ms(cfg.start_time, cfg.seed is not None),
        mean_gap_ms=cfg.mean_gap_ms,
        jitter_ms=cfg.jitter_ms,
        pattern_shares=cfg.pattern_shares,
        clock=clock if live else None,
    )
