"""An independent, brute-force judge of the four rules and the cooldown.

It shares no code with the detectors: it sorts the whole stream by time and recomputes
every rule from scratch for every order, straight from the definitions in the issue.
Re-deliveries are dropped first, as the job's input step does: an order whose id was
already admitted for the same user less than the re-delivery horizon earlier (the longest
window a live rule change may widen a rule to: the largest rules.*_max_window_ms, 2 h).

`expected_alerts_versioned` judges a stream under a schedule of rule versions (live rule
changes): each order by the version in force at its event time.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fraudstream.config import DetectorSettings, RulesSettings

_D = DetectorSettings()  # the oracle judges the configured defaults unless told otherwise
_R = RulesSettings()
# The job judges re-deliveries over the longest window a rules version may widen a rule to
# (events.redelivery.redelivery_horizon), whatever the rules in force; so does the oracle.
REDELIVERY_HORIZON_MS = max(_R.velocity_max_window_ms, _R.device_sharing_max_window_ms, _R.geo_max_window_ms)


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
    redelivery_horizon_ms: int | None = None  # how long an admitted id is remembered; None: REDELIVERY_HORIZON_MS

    @property
    def horizon_ms(self) -> int:
        """The rules' longest window (the re-delivery horizon is `redelivery_horizon_ms`)."""
        return max(self.velocity_window_ms, self.device_window_ms, self.geo_window_ms)

    @staticmethod
    def of(d: DetectorSettings, redelivery_horizon_ms: int | None = None) -> Params:
        return Params(
            d.velocity_threshold, d.velocity_window_ms, d.device_sharing_threshold, d.device_sharing_window_ms,
            d.high_value_threshold, d.geo_window_ms, d.dedup_cooldown_ms, d.detail_list_max, redelivery_horizon_ms,
        )  # fmt: skip


def _id(o: dict) -> str:
    return o["transaction_id"] if o.get("transaction_id") is not None else o["order_id"]


def redeliveries(orders: list[dict], p: Params = Params(), horizon_ms: int | None = None) -> list[int]:
    """Positions (in `orders`, i.e. arrival order) of the copies the job must reject as
    `duplicate`: by event time, then arrival, an order is a re-delivery when an order with
    its user and id was admitted in the horizon before it (t - horizon, t]. The horizon:
    `horizon_ms`, else `p.redelivery_horizon_ms`, else REDELIVERY_HORIZON_MS."""
    horizon = horizon_ms if horizon_ms is not None else p.redelivery_horizon_ms
    if horizon is None:
        horizon = REDELIVERY_HORIZON_MS
    admitted: dict[tuple[str, str], list[int]] = defaultdict(list)
    out = []
    for i in sorted(range(len(orders)), key=lambda i: orders[i]["event_time"]):
        o = orders[i]
        t = o["event_time"]
        times = admitted[(o["user_id"], _id(o))]
        if any(t - horizon < s <= t for s in times):
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


# ---- versioned rules (live rule changes) ----------------------------------------------------

RULE_TYPES = {
    "velocity": "VELOCITY_FRAUD",
    "device_sharing": "DEVICE_SHARING_FRAUD",
    "high_value": "HIGH_VALUE_FRAUD",
    "geo": "GEO_ANOMALY_FRAUD",
}  # written out, not imported: the oracle shares no code with the detectors
NEVER = -(2**63)  # "from the start": the effective time of the version a job starts with


@dataclass(frozen=True)
class RuleParams:
    """One rule in one version (threshold None: high value's amount or a count; geo has none)."""

    enabled: bool
    cooldown_ms: int
    severity: str
    threshold: float | None = None
    window_ms: int | None = None


@dataclass(frozen=True)
class Version:
    """A version as the job applies it: from `effective_from` (event time ms) on."""

    effective_from: int
    version: int
    rules: Mapping[str, RuleParams]


def rules_of(given: Any) -> dict[str, RuleParams]:
    """The four rules of `given`: a RuleSet (fraudstream.rules.model, read by its fields), a
    Params (every rule on, the settings' default severities), or a mapping rule -> anything with
    enabled/cooldown_ms/severity/threshold/window_ms attributes."""
    if isinstance(given, Params):
        return {
            "velocity": RuleParams(True, given.cooldown_ms, _D.velocity_severity, given.velocity_threshold,
                                   given.velocity_window_ms),
            "device_sharing": RuleParams(True, given.cooldown_ms, _D.device_sharing_severity, given.device_threshold,
                                         given.device_window_ms),
            "high_value": RuleParams(True, given.cooldown_ms, _D.high_value_severity, given.high_value),
            "geo": RuleParams(True, given.cooldown_ms, _D.geo_severity, None, given.geo_window_ms),
        }  # fmt: skip
    rules = getattr(given, "rules", given)
    return {
        name: RuleParams(bool(r.enabled), int(r.cooldown_ms), str(r.severity), r.threshold, r.window_ms)
        for name, r in ((name, rules[name]) for name in RULE_TYPES)
    }


def schedule_of(entries: Iterable[tuple[int | None, Any, int]]) -> list[Version]:
    """(effective_from ms or None = from the start, rules, version) -> Versions in the order the
    job resolves them: by effective time, equal times by version."""
    out = [Version(NEVER if t is None else int(t), int(v), rules_of(r)) for t, r, v in entries]
    if not out:
        raise ValueError("a schedule needs at least the version in force from the start")
    return sorted(out, key=lambda x: (x.effective_from, x.version))


def version_at(schedule: Sequence[Version], t: int) -> Version:
    """The version in force at event time t: the highest effective_from <= t, ties the higher
    version. Before every version: the first one (a job never runs without rules)."""
    found = schedule[0]
    for v in schedule:
        if v.effective_from <= t and (v.effective_from, v.version) >= (found.effective_from, found.version):
            found = v
    return found


def expected_alerts_versioned(
    orders: list[dict],
    schedule: Sequence[Version] | Iterable[tuple[int | None, Any, int]],
    horizon_ms: int = REDELIVERY_HORIZON_MS,
) -> set[tuple[str, str, str, int, int]]:
    """Alerts as (alert_type, key, transaction_id, event_time, version): each order judged by
    every rule the version in force at its event time switches on, with that version's
    threshold and window; a candidate is held by the cooldown (per alert type and key, the
    last alert let through, whatever its version) of the version in force at its own time."""
    versions = list(schedule)
    sched = versions if all(isinstance(v, Version) for v in versions) else schedule_of(versions)
    dropped = set(redeliveries(orders, horizon_ms=horizon_ms))
    events = sorted((o for i, o in enumerate(orders) if i not in dropped), key=_order_key)
    by_user: dict[str, list[dict]] = defaultdict(list)
    by_device: dict[str, list[dict]] = defaultdict(list)
    for o in events:
        by_user[o["user_id"]].append(o)
        by_device[o["device_id"]].append(o)
    times_user = {k: [x["event_time"] for x in v] for k, v in by_user.items()}
    times_device = {k: [x["event_time"] for x in v] for k, v in by_device.items()}

    def within(times: list[int], mine: list[dict], lo: int, hi: int) -> list[dict]:
        """The orders with lo < event_time <= hi."""
        return mine[bisect.bisect_right(times, lo) : bisect.bisect_right(times, hi)]

    candidates = []  # (alert_type, key, order, version)
    for o in events:
        t = o["event_time"]
        v = version_at(sched, t)
        r = v.rules
        user, device = o["user_id"], o["device_id"]
        if r["velocity"].enabled:
            w = r["velocity"].window_ms
            if len(within(times_user[user], by_user[user], t - w, t)) > r["velocity"].threshold:
                candidates.append(("VELOCITY_FRAUD", user, o, v))
        if r["device_sharing"].enabled:
            w = r["device_sharing"].window_ms
            users = {x["user_id"] for x in within(times_device[device], by_device[device], t - w, t)}
            if len(users) > r["device_sharing"].threshold:
                candidates.append(("DEVICE_SHARING_FRAUD", device, o, v))
        if r["high_value"].enabled and o["amount"] > r["high_value"].threshold:
            candidates.append(("HIGH_VALUE_FRAUD", user, o, v))
        if r["geo"].enabled:
            w = r["geo"].window_ms
            before = within(times_user[user], by_user[user], t - w, t - 1)  # (t - w, t)
            if any(x["city"] != o["city"] for x in before):
                candidates.append(("GEO_ANOMALY_FRAUD", user, o, v))

    rule_of = {alert_type: rule for rule, alert_type in RULE_TYPES.items()}
    candidates.sort(key=lambda c: _order_key(c[2]))
    last: dict[tuple[str, str], int] = {}
    out = set()
    for alert_type, key, o, v in candidates:
        t = o["event_time"]
        prev = last.get((alert_type, key))
        if prev is not None and t - prev < v.rules[rule_of[alert_type]].cooldown_ms:
            continue
        last[(alert_type, key)] = t
        out.add((alert_type, key, _id(o), t, v.version))
    return out


def severity_of(schedule: Sequence[Version], alert: tuple[str, str, str, int, int]) -> str:
    """The severity the version of a versioned alert gives it."""
    alert_type, _, _, t, version = alert
    v = version_at(schedule, t)
    assert v.version == version, f"{alert} is not of the version in force at its time ({v.version})"
    rule = next(rule for rule, name in RULE_TYPES.items() if name == alert_type)
    return v.rules[rule].severity
