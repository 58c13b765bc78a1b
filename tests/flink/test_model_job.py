"""The job with a risk model (sql engine): the features it computes in the JVM's keyed state
equal training's (`fraudstream.features.replay.feature_rows`) for every order and feature, its
ONNX Runtime scores and reasons equal Python's, and its alerts equal the offline reference
(`fraudstream.model.offline.replay_with_model`), field for field. One run serves all of these."""

from __future__ import annotations

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
# a silence, devices and cities evicted, the hour's list capped, a device's users forgotten.
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


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("model-job")
    model_path = tmp / "model.zip"
    tiny_model(model_path)
    # 1,500 orders of 150 customers over about 12 minutes, event times jittered by up to 4 s
    events = list(OrderGenerator(seed=2027, users=150, mean_gap_ms=500, jitter_ms=4_000).orders(1_500))
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
    # the bounds were reached: a history restarted, the hour's list capped, a device's users counted
    seen: set[str] = set()
    restarted = 0
    for order, features in expected:
        restarted += order.user_id in seen and features[FEATURES.index("prior_orders")] == 0
        seen.add(order.user_id)
    assert restarted > 0
    columns = list(zip(*(f for _, f in expected), strict=True))
    assert max(columns[FEATURES.index("orders_last_hour")]) == 2
    assert max(columns[FEATURES.index("device_users_24h")]) >= 1


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
    return sorted(orjson.dumps(a.to_dict() | {"detected_at": None}, option=orjson.OPT_SORT_KEYS) for a in alerts)


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
    assert _comparable(alerts) == _comparable(expected)
