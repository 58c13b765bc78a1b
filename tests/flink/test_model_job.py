"""The job with a risk model (sql engine): the features it computes in the JVM's keyed state
equal training's (`fraudstream.features.replay.feature_rows`) for every order and feature, its
ONNX Runtime scores and reasons equal Python's, and its alerts equal the offline reference
(`fraudstream.model.offline.replay_with_model`), field for field. One run serves all of these."""

from __future__ import annotations

import math
from collections import Counter

import orjson
import pytest

from fraudstream.config import load_settings
from fraudstream.features.replay import feature_rows
from fraudstream.features.spec import FEATURES, FeatureSpec
from fraudstream.flink.job import build_job
from fraudstream.flink.sources import SourceSpec
from fraudstream.generator import OrderGenerator
from fraudstream.model.file import load
from fraudstream.model.offline import replay_with_model
from fraudstream.model.score import Scorer
from tests.flink.conftest import write_lines
from tests.modelkit import orders_of, tiny_model

pytestmark = pytest.mark.flink
MIN = 60_000

# Small bounds, so that the stream reaches every one of them: a user's history restarting after
# a silence, devices and cities evicted, the hour's list capped, a device's users forgotten
# (the test counts that each occurs).
FLAGS = {
    "features.history_ms": 4 * MIN,
    "features.recent_ms": MIN,
    "features.recent_max": 2,
    "features.max_devices": 2,
    "features.max_cities": 2,
    "features.device_window_ms": 2 * MIN,
    "features.device_users_max": 2,
    # bands low enough that the small model raises alerts of each severity, and holds some rule alerts back
    "model.takeover_risk": 0.5,
    "model.high_risk": 0.8,
    "model.critical_risk": 0.95,
    "model.batch_size": 64,
    "alerts.min_risk": 0.4,
    "pipeline.parallelism": 2,
    "archive.enabled": False,
}


A, B = "\uff21", "\U0001f600"  # Python orders A before B (code points), Java's compareTo B before A (UTF-16)


def _hand_made(t0: int) -> list[dict]:
    """Orders for what the bounds and the orderings must get right: same-millisecond orders with
    different ids for one user and for one device (ids outside the BMP), more devices and cities
    than kept (equal last times: the eviction's name order decides), a burst over the hour's cap,
    a tiny amount before a large one, and orders at exactly history_ms and history_ms + 1 after
    the previous one."""

    def o(tx, user, device, city, t, amount=300.0):
        return {"transaction_id": tx, "user_id": user, "device_id": device, "restaurant_id": "r_hm",
                "amount": amount, "city": city, "payment_method": "UPI", "event_time": t}  # fmt: skip

    u, d = f"u_hm{B}", f"d_hm{B}"
    hist = FLAGS["features.history_ms"]
    return [
        o(f"t_hm{B}", u, f"d{B}", f"c{B}", t0),
        o(f"t_hm{A}", u, f"d{A}", f"c{A}", t0),
        o("t_hm3", u, "d3", "c3", t0 + 1_000),  # evicts one of d_A, d_B (and of the cities): name order
        o("t_hm4", u, f"d{A}", f"c{A}", t0 + 2_000),  # was d_A kept?
        o("t_hm5", u, f"d{B}", f"c{B}", t0 + 3_000),
        o(f"t_hd{B}", f"v{A}", d, "Pune", t0 + 5_000),  # one device, one millisecond, two users
        o(f"t_hd{A}", f"v{B}", d, "Pune", t0 + 5_000),
        o("t_tiny1", "u_tiny", "d_tiny", "Pune", t0, amount=1e-309),
        o("t_tiny2", "u_tiny", "d_tiny", "Pune", t0 + 1_000, amount=1000.0),
        o("t_h1", "u_hist1", "d_h1", "Pune", t0),
        o("t_h2", "u_hist1", "d_h1", "Pune", t0 + hist),  # exactly history_ms later: a new history
        o("t_h3", "u_hist2", "d_h2", "Pune", t0),
        o("t_h4", "u_hist2", "d_h2", "Pune", t0 + hist + 1),  # at the expiry timer's instant
        o("t_h5", "u_hist3", "d_h3", "Pune", t0),
        o("t_h6", "u_hist3", "d_h3", "Pune", t0 + hist - 1),  # still the same history
    ]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("model-job")
    model_path = tmp / "model.zip"
    tiny_model(model_path)
    # 1,500 orders of 150 customers over about 70 minutes, event times jittered by up to 4 s,
    # and hand-made ones that reach what the generator does not (see _hand_made)
    events = list(OrderGenerator(seed=2027, users=150, mean_gap_ms=500, jitter_ms=4_000).orders(1_500))
    for e in _hand_made(events[len(events) // 3]["event_time"]):
        at = next(i for i, g in enumerate(events) if g["event_time"] > e["event_time"])
        events.insert(at, e)
    path = write_lines(tmp / "orders.jsonl", [orjson.dumps(e) for e in events])
    settings = load_settings(flags={"data_dir": str(tmp / "data"), "model.path": str(model_path), **FLAGS}, environ={})
    _, results = build_job(settings, SourceSpec.parse(f"file:{path}"), scored=True).start("model-test")
    assert results is not None
    with results:
        records = list(results)
    return events, settings, records


def test_the_jobs_features_are_trainings_for_every_order(run):
    events, settings, records = run
    assert [e["event_time"] for e in events] != sorted(e["event_time"] for e in events)  # arrival != event order
    scored = {r[0]: r for kind, r in records if kind == "scored"}
    expected = list(feature_rows(orders_of(events), FeatureSpec.from_settings(settings.features)))
    assert len(scored) == len(expected) == len(events)
    for order, features in expected:
        got = tuple(scored[order.transaction_id][1])
        assert got == features, {f: (g, e) for f, g, e in zip(FEATURES, got, features, strict=True) if g != e}
    assert all(math.isfinite(v) for _, f in expected for v in f)
    # Every bound and ordering was reached, counted from the stream (Python side):
    spec = FeatureSpec.from_settings(settings.features)
    reached = Counter()
    last: dict[str, int] = {}
    devices: dict[str, set[str]] = {}
    cities: dict[str, set[str]] = {}
    times: dict[str, list[int]] = {}
    for order, features in expected:
        t, user = order.event_time, order.user_id
        if user in last:
            gap = t - last[user]
            reached["at history_ms"] += gap == spec.history_ms
            reached["at history_ms + 1"] += gap == spec.history_ms + 1
        if features[FEATURES.index("prior_orders")] == 0:
            reached["restarted"] += user in last
            devices[user], cities[user], times[user] = set(), set(), []
        devices[user].add(order.device_id)
        cities[user].add(order.city)
        reached["devices evicted"] += len(devices[user]) == spec.max_devices + 1
        reached["cities evicted"] += len(cities[user]) == spec.max_cities + 1
        before = [p for p in times[user] if t - p < spec.recent_ms]
        reached["over the hour's cap"] += len(before) > spec.recent_max
        assert features[FEATURES.index("orders_last_hour")] == min(len(before), spec.recent_max)
        times[user].append(t)
        last[user] = t
    for key in ("user_id", "device_id"):
        instants = Counter((getattr(o, key), o.event_time) for o, _ in expected)
        reached[f"same ms, one {key}"] = sum(n > 1 for n in instants.values())
    reached["device users"] = sum(f[FEATURES.index("device_users_24h")] >= 1 for _, f in expected)
    reached["non-BMP ids"] = sum(any(ord(c) > 0xFFFF for c in o.transaction_id) for o, _ in expected)
    wanted = ["at history_ms", "at history_ms + 1", "restarted", "devices evicted", "cities evicted",
              "over the hour's cap", "same ms, one user_id", "same ms, one device_id", "device users",
              "non-BMP ids"]  # fmt: skip
    assert all(reached[k] > 0 for k in wanted), reached


def test_the_jobs_scores_and_reasons_are_pythons(run):
    events, settings, records = run
    scorer = Scorer(load(settings.model.path), settings.model.explain_top)
    rows = list(feature_rows(orders_of(events), FeatureSpec.from_settings(settings.features)))
    risks = scorer.score([f for _, f in rows])
    scored = {r[0]: r for kind, r in records if kind == "scored"}
    risky = 0
    for (order, features), risk in zip(rows, risks, strict=True):
        _, _, got_risk, got_reasons = scored[order.transaction_id]
        assert got_risk == float(risk)
        if risk >= settings.model.takeover_risk:
            risky += 1
            assert orjson.loads(got_reasons) == scorer.explain(features, float(risk))
        else:
            assert got_reasons is None
    assert risky > 10


def _comparable(alerts):
    """Alerts as sorted JSON, without when they were made or the rules version (the offline
    replays do not number their rules)."""
    fields = {"detected_at": None, "rule_version": None}
    return sorted(orjson.dumps(a.to_dict() | fields, option=orjson.OPT_SORT_KEYS) for a in alerts)


def test_the_jobs_alerts_are_the_offline_references(run):
    events, settings, records = run
    alerts = [r for kind, r in records if kind == "alert"]
    expected = replay_with_model(
        orders_of(events), settings, Scorer(load(settings.model.path), settings.model.explain_top)
    )
    takeovers = [a for a in expected if a.alert_type == "ACCOUNT_TAKEOVER"]
    assert {a.severity for a in takeovers} == {"MEDIUM", "HIGH", "CRITICAL"}
    assert any(a.held_back for a in expected) and any(not a.held_back for a in expected if a not in takeovers)
    assert all(a.risk is not None for a in expected)
    # a held-back and a delivered alert on one key within the cooldown: both kept (separate chains)
    cooldown = settings.detectors.dedup_cooldown_ms
    chains: dict[str, list] = {}
    for a in sorted(expected, key=lambda a: a.event_time):
        chains.setdefault(f"{a.alert_type}|{a.key}", []).append(a)
    assert any(
        y.event_time - x.event_time < cooldown and x.held_back != y.held_back
        for chain in chains.values()
        for x, y in zip(chain, chain[1:], strict=False)
    )
    assert _comparable(alerts) == _comparable(expected)
    assert {a.rule_version for a in alerts} == {0}  # a file run: the settings' rules, version 0
