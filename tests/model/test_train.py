"""Training: labels, baselines, the model file's round trip and its own evaluation."""

from __future__ import annotations

import re
import sqlite3
import zipfile
from pathlib import Path

import numpy as np
import pytest

from fraudstream.config import Settings
from fraudstream.events.model import Order
from fraudstream.features.spec import FEATURES, FeatureSpec
from fraudstream.model.file import ModelFile, load, save
from fraudstream.model.score import Scorer
from fraudstream.model.train import (
    UNKNOWN,
    Rows,
    TrainingError,
    prior_weights,
    read_verdicts,
    review_labels,
    train,
    verify,
)

from .streams import trained, training_stream

pytestmark = (
    pytest.mark.slow
)  # most of these fit a model (a few seconds each under load): make test runs them, make check does not

BASE = 1_767_225_600_000


def _order(tx: str, t: int, behavior: str | None = None) -> Order:
    return Order(tx, "u1", "d1", "r1", 300.0, "Pune", "UPI", BASE + t, behavior)


def test_a_trained_model_round_trips_through_its_file(tmp_path: Path) -> None:
    result = trained()
    model = result.model
    path = tmp_path / "m.zip"
    save(path, model)
    loaded = load(path)
    assert loaded.version == model.version and loaded.onnx == model.onnx
    assert loaded.baseline == model.baseline and loaded.features == FEATURES
    assert re.fullmatch(r"m-\d{8}T\d{6}Z-[0-9a-f]{8}", model.version)
    before = Scorer(model).score(result.holdout_x)
    after = Scorer(loaded).score(result.holdout_x)
    assert np.array_equal(before, after)
    verify(path, result)  # the digest of the held-out scores written in the evaluation
    meta = loaded.meta
    assert meta["labels"] == "generator" and meta["algorithm"] == "hgb"
    assert set(meta["libraries"]) == {"scikit-learn", "skl2onnx", "onnx", "onnxruntime", "numpy"}
    ev = meta["evaluation"]
    assert ev["orders"] == meta["period"]["held_out_orders"] == len(result.holdout_x)
    assert ev["auc"] > 0.9  # the generator's fraud is far from its honest customers
    assert ev["max_abs_diff_onnx_vs_sklearn"] < 1e-5


def test_verify_refuses_a_file_that_scores_otherwise(tmp_path: Path) -> None:
    result = trained()
    other = train(training_stream()[1][:3_000], FeatureSpec.from_settings(Settings().features))
    path = tmp_path / "other.zip"
    save(path, other.model)
    with pytest.raises(TrainingError, match="does not score the held-out orders"):
        verify(path, result)


def test_the_baseline_is_the_median_of_honest_returning_customers_orders() -> None:
    result = trained()
    rows = Rows.of(training_stream()[1], FeatureSpec.from_settings(Settings().features))
    cut = result.model.meta["period"]["training_orders"]
    picked = [
        f for o, f in zip(rows.orders[:cut], rows.x[:cut], strict=True)
        if (o.behavior or "normal") == "normal" and f[FEATURES.index("prior_orders")] >= 1
    ]  # fmt: skip
    assert result.model.baseline == tuple(float(v) for v in np.median(np.asarray(picked), axis=0))
    usual = dict(zip(FEATURES, result.model.baseline, strict=True))
    assert usual["device_orders"] >= 1 and usual["city_orders"] >= 1  # a device and a city they know


def test_the_held_out_orders_are_the_newest() -> None:
    result = trained()
    period, ev = result.model.meta["period"], result.model.meta["evaluation"]
    assert period["training_orders"] + period["held_out_orders"] == period["orders"]
    assert period["from"] < ev["from"] <= ev["to"] == period["to"]
    assert abs(period["held_out_orders"] / period["orders"] - 0.2) < 0.01


def test_prior_weights_make_the_fraud_share_the_prior() -> None:
    y = np.asarray([1] * 20 + [0] * 80)
    w = prior_weights(y, 0.05)
    assert w[y == 1].sum() / w.sum() == pytest.approx(0.05)
    assert np.all(prior_weights(y, None) == 1)


def test_review_labels() -> None:
    orders = [_order("confirmed", 0), _order("fp", 1), _order("unreviewed", 2), _order("quiet", 3)]
    verdicts = {"confirmed": "confirmed_fraud", "fp": "false_positive"}
    y = review_labels(orders, verdicts, alerted={"confirmed", "fp", "unreviewed"})
    assert y.tolist() == [1, 0, UNKNOWN, 0]


def test_read_verdicts_from_a_store(tmp_path: Path) -> None:
    from fraudstream.detectors.base import Alert
    from fraudstream.store.reviews import Review, add_review
    from fraudstream.store.sqlite import AlertStore, connect

    db = tmp_path / "fraud_alerts.db"
    store = AlertStore(db)
    alerts = [
        Alert(alert_id=f"a{i}", alert_type="HIGH_VALUE_FRAUD", severity="HIGH", key="u1", user_id="u1",
              device_id="d1", transaction_id=tx, amount=2000.0, event_time=BASE + i, message="m", details={})
        for i, tx in enumerate(["t1", "t1", "t2", "t3"])
    ]  # fmt: skip
    store.write_batch(alerts)
    store.close()
    conn = connect(db)
    try:
        for alert_id, verdict in (("a0", "false_positive"), ("a1", "confirmed_fraud"), ("a2", "confirmed_fraud"),
                                  ("a2", "false_positive")):  # fmt: skip
            add_review(conn, Review(alert_id, verdict, None, "ana", BASE))  # type: ignore[arg-type]
    finally:
        conn.close()
    verdicts, alerted = read_verdicts(db)
    # t1: one alert confirmed, one not -> fraud; t2: the latest verdict (false positive) in force
    assert verdicts == {"t1": "confirmed_fraud", "t2": "false_positive"}
    assert alerted == {"t1", "t2", "t3"}
    with pytest.raises(TrainingError, match="no alert store"):
        read_verdicts(tmp_path / "missing.db")
    sqlite3.connect(tmp_path / "empty.db").close()
    with pytest.raises(TrainingError, match="no fraud_alerts"):
        read_verdicts(tmp_path / "empty.db")


def test_an_isolation_forest_without_labels_scores_like_a_classifier() -> None:
    orders = training_stream()[1][:4_000]
    # 10 trees: skl2onnx's conversion of a forest costs seconds per ten trees
    result = train(orders, FeatureSpec.from_settings(Settings().features), labels="none", params={"n_estimators": 10})
    model = result.model
    assert model.meta["algorithm"] == "isolation" and model.meta["fraud_prior"] is None
    risk = Scorer(model).score(Rows.of(orders, FeatureSpec()).x)
    assert np.all((risk >= 0) & (risk <= 1))
    # k maps the most unusual 1 % of training orders to a risk of at least 0.9
    cut = model.meta["period"]["training_orders"]
    assert np.mean(risk[:cut] >= 0.9) == pytest.approx(0.01, abs=0.005)
    assert model.meta["evaluation"]["auc"] > 0.5  # scored against the labels it never saw


def test_too_few_orders_or_one_class_is_one_line() -> None:
    spec = FeatureSpec()
    with pytest.raises(TrainingError, match="too few"):
        train([_order(f"t{i}", i) for i in range(10)], spec)
    with pytest.raises(TrainingError, match="no fraud orders and honest orders both"):
        train([_order(f"t{i}", i * 60_000) for i in range(100)], spec)


def test_broken_model_files_are_one_line(tmp_path: Path) -> None:
    from fraudstream.model.file import ModelFileError

    good = tmp_path / "good.zip"
    save(good, trained().model)
    not_zip = tmp_path / "not.zip"
    not_zip.write_bytes(b"hello")
    no_json = tmp_path / "nojson.zip"
    with zipfile.ZipFile(no_json, "w") as z:
        z.writestr("model.onnx", b"")
    other = tmp_path / "other.zip"
    m = trained().model
    save(other, ModelFile(m.version, m.features, m.baseline, m.onnx, m.meta))
    with zipfile.ZipFile(other) as z:
        text = z.read("model.json").decode().replace('"amount_z"', '"amount_zz"')
    with zipfile.ZipFile(other, "w") as z:
        z.writestr("model.json", text)
        z.writestr("model.onnx", m.onnx)
    bad_onnx = tmp_path / "badonnx.zip"
    save(bad_onnx, ModelFile(m.version, m.features, m.baseline, b"not a graph", m.meta))
    for path, said in ((tmp_path / "none.zip", "not found"), (not_zip, "corrupt"), (no_json, "corrupt"),
                       (other, "other features")):  # fmt: skip
        with pytest.raises(ModelFileError, match=said):
            load(path)
    with pytest.raises(ModelFileError, match="cannot be loaded by ONNX Runtime"):
        Scorer(load(bad_onnx))


def test_training_on_analysts_verdicts_leaves_unreviewed_alerts_out() -> None:
    from fraudstream.detectors import AlertDeduplicator, build_detectors
    from fraudstream.detectors.replay import replay

    settings = Settings()
    orders = training_stream()[1][:6_000]
    alerts = replay(orders, build_detectors(settings.detectors), AlertDeduplicator.from_settings(settings.detectors))
    fraud = {o.transaction_id for o in orders if (o.behavior or "normal") != "normal"}
    alerted = [a.transaction_id for a in alerts]
    reviewed = alerted[::2]  # analysts judged every other alert, rightly
    verdicts = {tx: "confirmed_fraud" if tx in fraud else "false_positive" for tx in reviewed}
    result = train(orders, FeatureSpec.from_settings(settings.features), labels="reviews",
                   verdicts=(verdicts, alerted))  # fmt: skip
    meta = result.model.meta
    assert meta["labels"] == "reviews"
    confirmed = sum(1 for v in verdicts.values() if v == "confirmed_fraud")
    assert meta["period"]["fraud_orders"] == confirmed
    unreviewed = len(set(alerted) - set(reviewed))
    assert meta["evaluation"]["labelled"] < meta["evaluation"]["orders"]  # unreviewed alerts left out
    assert unreviewed > 0
    with pytest.raises(TrainingError, match="review some alerts"):
        train(orders, FeatureSpec(), labels="reviews", verdicts=({}, alerted))
