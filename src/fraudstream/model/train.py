"""Training: orders in, a versioned model file out (`fraudstream train`; docs/model.md).

The orders are replayed through the features' reference (`fraudstream.features.replay`), the
very values the job computes, labelled (the generator's labels, analysts' verdicts, or none),
split by event time (the newest `holdout` share is kept out of the fit and scores the model),
fitted with scikit-learn and exported to ONNX, the graph every engine scores with. The
evaluation written into the file is computed from the ONNX graph's own scores, through
`fraudstream.model.score.Scorer`, so `verify` can hold a loaded file to it exactly.
"""

from __future__ import annotations

import hashlib
import heapq
import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version as dist_version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fraudstream.errors import UserFacingError
from fraudstream.events.model import Order
from fraudstream.features.replay import feature_rows
from fraudstream.features.spec import FEATURES, FeatureSpec
from fraudstream.model.file import ModelFile, load
from fraudstream.model.score import Scorer

if TYPE_CHECKING:
    from fraudstream.store.db import Location

logger = logging.getLogger(__name__)

LABEL_SOURCES = ("generator", "reviews", "none")
# hgb is the default (docs/model.md, "Why gradient-boosted trees"); the others are there to
# measure that choice again (`fraudstream model evaluate --algorithm ...`).
ALGORITHMS = ("hgb", "forest", "logistic")
HONEST = frozenset({"", "normal"})
UNKNOWN = -1  # a label of an order nobody judged (reviews: an alerted order not yet reviewed)
# --labels none: an isolation forest's anomaly score s (below 0 = among the most unusual) is
# mapped to a probability by sigmoid(-k * s), k chosen so that the most unusual
# ANOMALY_SHARE of training orders score at least ANOMALY_RISK.
ANOMALY_SHARE = 0.01
ANOMALY_RISK = 0.9
LIBRARIES = ("scikit-learn", "skl2onnx", "onnx", "onnxruntime", "numpy")
# The share of fraud among orders a risk is calibrated to (`prior_weights`): a generated
# stream holds 20 % fraud, a real platform's orders far less, and a risk of 0.9 should mean
# 9 in 10 at a realistic share rather than at the training data's.
FRAUD_PRIOR = 0.02
# The model file keeps the hashes of a sample of the orders it was trained on (the smallest
# SAMPLE_SIZE, so the same orders always give the same sample), for `model evaluate` to tell
# a stream that holds them: figures on a model's own training orders are no evidence.
SAMPLE_SIZE = 256
Progress = Callable[[str], None]


class TrainingError(UserFacingError):
    """Nothing (or too little) to train on."""


def is_fraud(order: Order) -> bool:
    """The generator's label: any behavior but honest."""
    return (order.behavior or "").strip() not in HONEST


@dataclass(frozen=True)
class Rows:
    """Orders in sort_key order with their feature vectors (float32, as every engine scores)."""

    orders: list[Order]
    x: np.ndarray

    @classmethod
    def of(cls, orders: Iterable[Order], spec: FeatureSpec) -> Rows:
        pairs = list(feature_rows(orders, spec))
        x = np.asarray([f for _, f in pairs], dtype=np.float32).reshape(len(pairs), len(FEATURES))
        return cls([o for o, _ in pairs], x)


def archived_orders(
    archive: Path, start_ms: int | None = None, end_ms: int | None = None, progress: Progress | None = None
) -> list[Order]:
    """The orders of the raw-event archive with start_ms <= event_time < end_ms, each as the
    job admitted it (`evaluation.labels.archived_record`, parsed again like any record)."""
    import orjson
    import pyarrow.dataset as ds

    from fraudstream.evaluation.labels import archived_record, open_order_archive
    from fraudstream.events import parse_record

    if not archive.is_dir():
        raise TrainingError(f"no archive at {archive}: run the job with the archive on (archive.enabled) first")
    folder, dataset = open_order_archive(archive)
    names = [n for n in dataset.schema.names if n not in ("dt", "hour")]
    if "event_time" not in names or "raw" not in names:
        raise TrainingError(f"{folder} is not an order archive (no event_time or raw column)")
    where = None
    for bound, term in (
        (start_ms, lambda b: ds.field("event_time") >= b),
        (end_ms, lambda b: ds.field("event_time") < b),
    ):
        if bound is not None:
            where = term(bound) if where is None else where & term(bound)
    orders: list[Order] = []
    rejected = told = 0
    try:
        for batch in dataset.to_batches(columns=names, filter=where, batch_size=65_536):
            for row in batch.to_pylist():
                order = parse_record(orjson.dumps(archived_record(row)))
                if isinstance(order, Order):
                    orders.append(order)
                else:
                    rejected += 1
            if progress is not None and len(orders) >= told + 100_000:
                told = len(orders)
                progress(f"{told:,} orders read")
    except (OSError, ValueError) as exc:
        raise TrainingError(f"cannot read the archive at {folder}: {exc}") from None
    if progress is not None:
        progress(f"{len(orders):,} orders read from {len(dataset.files):,} files")
    if rejected:
        logger.warning("%d archived record(s) no longer parse as orders; left out", rejected)
    if not orders:
        raise TrainingError(f"the archive at {folder} has no orders in the period asked for")
    return orders


def generator_labels(orders: Sequence[Order]) -> np.ndarray:
    return np.asarray([int(is_fraud(o)) for o in orders], dtype=np.int64)


def review_labels(orders: Sequence[Order], verdicts: Mapping[str, str], alerted: Iterable[str]) -> np.ndarray:
    """Labels from analysts' verdicts (by transaction id): an order with a confirmed alert is
    fraud, one whose alerts were all false positives is honest, one alerted but not reviewed
    is UNKNOWN (left out), and an order no rule alerted on is honest."""
    alerted = set(alerted)
    out = np.zeros(len(orders), dtype=np.int64)
    for i, order in enumerate(orders):
        verdict = verdicts.get(order.transaction_id)
        if verdict == "confirmed_fraud":
            out[i] = 1
        elif verdict is None and order.transaction_id in alerted:
            out[i] = UNKNOWN
    return out


def read_verdicts(store: Location | Path) -> tuple[dict[str, str], set[str]]:
    """(transaction id -> verdict, alerted transaction ids) from the store (a SQLite file, or
    a Location: PostgreSQL too), read-only. An order with several reviewed alerts is fraud if
    any verdict says so."""
    from fraudstream.store import db

    if isinstance(store, Path):
        store = db.Location("sqlite", path=store)
    if store.path is not None and not store.path.is_file():
        raise TrainingError(f"no alert store at {store}: --labels reviews reads analysts' verdicts from it")
    conn = db.connect(store, read_only=True)
    try:
        if not conn.has_table("fraud_alerts"):
            raise TrainingError(f"{store} has no fraud_alerts table")
        from fraudstream.store.schema import check_version

        check_version(conn)  # a newer store's verdicts may mean other things: refused in one line
        alerted = {r[0] for r in conn.execute("SELECT transaction_id FROM fraud_alerts") if r[0]}
        verdicts: dict[str, str] = {}
        if conn.has_table("alert_reviews"):
            rows = conn.execute(
                "SELECT a.transaction_id, r.verdict FROM alert_reviews r JOIN fraud_alerts a"
                " ON a.alert_id = r.alert_id"
                " WHERE r.id = (SELECT MAX(id) FROM alert_reviews WHERE alert_id = r.alert_id)"
            )
            for tx, verdict in rows:
                if tx and verdicts.get(tx) != "confirmed_fraud":
                    verdicts[tx] = verdict
    except db.ERRORS as exc:
        raise TrainingError(f"cannot read the alert store {store}: {exc}") from None
    finally:
        conn.close()
    return verdicts, alerted


def prior_weights(y: np.ndarray, prior: float | None) -> np.ndarray:
    """Sample weights that make the labelled fraud share `prior` (honest orders weigh
    (1 - prior) / prior fraud orders per honest order); None: every order weighs 1."""
    w = np.ones(len(y), dtype=np.float64)
    fraud, honest = int((y == 1).sum()), int((y == 0).sum())
    if prior is not None and fraud and honest:
        w[y == 0] = (1 - prior) / prior * fraud / honest
    return w


def fit_weight_name(model: Any) -> str:
    """How `fit` takes sample weights (a pipeline: its last step's)."""
    steps = getattr(model, "steps", None)
    return f"{steps[-1][0]}__sample_weight" if steps else "sample_weight"


def estimator(algorithm: str, seed: int = 0) -> Any:
    """A fresh, deterministic scikit-learn model of that kind."""
    if algorithm == "hgb":
        from sklearn.ensemble import HistGradientBoostingClassifier

        # Leaves of at least 100 orders and an L2 penalty: without them the trees learn
        # single honest group orders and households by heart and call their look-alikes
        # certain fraud (docs/model.md, "Why gradient-boosted trees").
        return HistGradientBoostingClassifier(
            max_iter=100,
            learning_rate=0.1,
            max_leaf_nodes=31,
            min_samples_leaf=100,
            l2_regularization=1.0,
            early_stopping=False,
            random_state=seed,
        )
    if algorithm == "forest":
        from sklearn.ensemble import RandomForestClassifier

        return RandomForestClassifier(n_estimators=100, min_samples_leaf=2, n_jobs=1, random_state=seed)
    if algorithm == "logistic":
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2_000))
    if algorithm == "isolation":
        from sklearn.ensemble import IsolationForest

        # skl2onnx's conversion of a forest's trees takes seconds per ten of them
        return IsolationForest(n_estimators=100, random_state=seed)
    raise ValueError(f"unknown algorithm {algorithm!r}: use {', '.join(ALGORITHMS)}")


def params_of(model: Any) -> dict[str, Any]:
    """The model's settings as JSON values (nested pipelines flattened by scikit-learn)."""
    out = {}
    for key, value in model.get_params(deep=True).items():
        if value is None or isinstance(value, bool | int | float | str):
            out[key] = value
    return {"class": type(model).__name__, **out}


def export(model: Any, x: np.ndarray, anomaly_k: float | None = None) -> bytes:
    """The fitted model as ONNX bytes with a `probabilities` output (N x 2, column 1 = risk)."""
    from skl2onnx import to_onnx

    options = {} if anomaly_k is not None else {id(model): {"zipmap": False}}  # a forest has no zipmap
    onx = to_onnx(model, x[:1].astype(np.float32), options=options, target_opset={"": 17, "ai.onnx.ml": 3})
    if anomaly_k is not None:
        onx = _anomaly_probabilities(onx, anomaly_k)
    return onx.SerializeToString()


def _anomaly_probabilities(onx: Any, k: float) -> Any:
    """Append sigmoid(-k * scores) and its complement as `probabilities` to an isolation
    forest's graph, so Scorer and the JVM read it like a classifier's."""
    from onnx import TensorProto, helper

    graph = onx.graph
    graph.initializer.extend(
        [
            helper.make_tensor("fs_minus_k", TensorProto.FLOAT, [], [-k]),
            helper.make_tensor("fs_one", TensorProto.FLOAT, [], [1.0]),
        ]
    )
    graph.node.extend(
        [
            helper.make_node("Mul", ["scores", "fs_minus_k"], ["fs_scaled"]),
            helper.make_node("Sigmoid", ["fs_scaled"], ["fs_risk"]),
            helper.make_node("Sub", ["fs_one", "fs_risk"], ["fs_normal"]),
            helper.make_node("Concat", ["fs_normal", "fs_risk"], ["probabilities"], axis=1),
        ]
    )
    graph.output.append(helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 2]))
    return onx


def libraries() -> dict[str, str]:
    return {name: dist_version(name) for name in LIBRARIES}


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _digest(scores: np.ndarray) -> str:
    return hashlib.sha256(np.asarray(scores, dtype=np.float64).tobytes()).hexdigest()


def id_hash(transaction_id: str) -> str:
    return hashlib.sha256(transaction_id.encode()).hexdigest()[:16]


def id_sample(transaction_ids: Iterable[str], size: int = SAMPLE_SIZE) -> list[str]:
    """The `size` smallest hashes of the ids: a uniform sample of them that any stream holding
    the same orders holds too."""
    return heapq.nsmallest(size, {id_hash(t) for t in transaction_ids})


def holdout_evaluation(orders: Sequence[Order], y: np.ndarray, risk: np.ndarray, threshold: float) -> dict[str, Any]:
    """The model's own figures on held-out orders: AUC, and at `threshold` precision, recall,
    false alarms per 1,000 honest orders and recall per pattern (orders, from the generator's
    labels when the orders carry them). `y` may hold UNKNOWN (left out)."""
    from sklearn.metrics import roc_auc_score

    known = y != UNKNOWN
    yk, rk = y[known], risk[known]
    flagged = rk >= threshold
    positives, negatives = int(yk.sum()), int((yk == 0).sum())
    tp = int((flagged & (yk == 1)).sum())
    fp = int((flagged & (yk == 0)).sum())
    out: dict[str, Any] = {
        "orders": len(orders),
        "labelled": int(known.sum()),
        "fraud_orders": positives,
        "auc": float(roc_auc_score(yk, rk)) if positives and negatives else None,
        "threshold": threshold,
        "flagged": int(flagged.sum()),
        "precision": tp / (tp + fp) if tp + fp else None,
        "recall": tp / positives if positives else None,
        "false_per_1k_honest": 1000 * fp / negatives if negatives else None,
    }
    by_pattern: dict[str, list[int]] = {}
    for order, r in zip(orders, risk, strict=True):
        if is_fraud(order):
            entry = by_pattern.setdefault((order.behavior or "").strip(), [0, 0])
            entry[0] += 1
            entry[1] += int(r >= threshold)
    out["patterns"] = {p: {"orders": n, "flagged": k, "recall": k / n} for p, (n, k) in sorted(by_pattern.items())}
    return out


@dataclass(frozen=True)
class Trained:
    model: ModelFile
    holdout_x: np.ndarray  # the held-out rows, to check a saved file against (`verify`)


def train(
    orders: Iterable[Order],
    spec: FeatureSpec,
    labels: str = "generator",
    algorithm: str = "hgb",
    holdout: float = 0.2,
    threshold: float = 0.9,
    prior: float | None = FRAUD_PRIOR,
    params: Mapping[str, Any] | None = None,
    verdicts: tuple[Mapping[str, str], Iterable[str]] | None = None,
    seed: int = 0,
    progress: Progress | None = None,
    source: str | None = None,
    now: datetime | None = None,
    generator_seed: int | None = None,
) -> Trained:
    """Fit a model on `orders` (labels: LABEL_SOURCES; `verdicts` for "reviews", from
    `read_verdicts`) and return its model file, evaluated on the newest `holdout` share.
    `generator_seed`: the seed of the generated stream the orders are, when known."""
    say = progress or (lambda _msg: None)
    if labels not in LABEL_SOURCES:
        raise ValueError(f"unknown label source {labels!r}: use {', '.join(LABEL_SOURCES)}")
    rows = Rows.of(orders, spec)
    n = len(rows.orders)
    say(f"features of {n:,} orders computed")
    if n < 50:
        raise TrainingError(f"{n} orders are too few to train on (at least 50; a few thousand for a useful model)")
    if labels == "generator":
        y = generator_labels(rows.orders)
    elif labels == "reviews":
        if verdicts is None:
            raise ValueError("labels='reviews' needs verdicts")
        y = review_labels(rows.orders, *verdicts)
    else:
        y = generator_labels(rows.orders)  # only to score the anomaly model, never fitted on
    cut = min(n - 1, max(1, math.floor(n * (1 - holdout))))
    fit_x, fit_y = rows.x[:cut], y[:cut]
    if labels != "none":
        known = fit_y != UNKNOWN
        fit_x, fit_y = fit_x[known], fit_y[known]
        if len(set(fit_y.tolist())) < 2:
            what = "confirmed frauds" if labels == "reviews" else "fraud orders"
            raise TrainingError(
                f"the training part of the period holds no {what} and honest orders both: nothing to learn from"
                + (" (review some alerts in the dashboard first)" if labels == "reviews" else "")
            )
    kind = "isolation" if labels == "none" else algorithm
    model = estimator(kind, seed)
    if params:
        model.set_params(**params)
    say(f"fitting {type(model).__name__} on {len(fit_x):,} orders ({int((fit_y == 1).sum()):,} labelled fraud)"
        if labels != "none" else f"fitting IsolationForest on {len(fit_x):,} orders (no labels)")  # fmt: skip
    # One thread: OpenMP's spinning workers on a shared machine cost many times the fit
    # (minutes instead of seconds when other processes use the cores), and one is deterministic.
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        _fit(model, fit_x, fit_y, labels, prior)
    if labels == "none":
        s = model.decision_function(fit_x)
        q = float(np.quantile(s, ANOMALY_SHARE))
        anomaly_k = math.log(ANOMALY_RISK / (1 - ANOMALY_RISK)) / max(-q, 1e-6)
    else:
        anomaly_k = None
    onnx_bytes = export(model, fit_x, anomaly_k)
    baseline = baseline_of(rows.x[:cut], y[:cut] if labels != "none" else None)
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    version = f"m-{stamp}-{hashlib.sha256(onnx_bytes).hexdigest()[:8]}"
    draft = ModelFile(version, FEATURES, baseline, onnx_bytes, {})
    held_x = rows.x[cut:]
    risk = Scorer(draft).score(held_x)
    say(f"scoring {len(held_x):,} held-out orders")
    evaluation = holdout_evaluation(rows.orders[cut:], y[cut:], risk, threshold)
    if labels == "none":
        evaluation["labels"] = "the generator's, where the orders carry them (the model never saw them)"
    evaluation.update(
        {
            "from": _iso(rows.orders[cut].event_time),
            "to": _iso(rows.orders[-1].event_time),
            "scores_sha256": _digest(risk),
        }
    )
    if anomaly_k is None:
        sk = model.predict_proba(held_x)[:, 1]
        evaluation["max_abs_diff_onnx_vs_sklearn"] = float(np.max(np.abs(sk - risk))) if len(risk) else 0.0
    else:
        evaluation["anomaly_k"] = anomaly_k
    meta = {
        "trained_at": (now or datetime.now(UTC)).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "period": {
            "from": _iso(rows.orders[0].event_time),
            "to": _iso(rows.orders[-1].event_time),
            "orders": n,
            "fraud_orders": int((y == 1).sum()) if labels != "none" else None,
            "training_orders": cut,
            "held_out_orders": n - cut,
            **({"source": source} if source else {}),
        },
        "labels": labels,
        "fraud_prior": prior if labels != "none" else None,
        "algorithm": kind,
        "params": params_of(model),
        "features_spec": spec.bounds(),
        "training_data": {
            **({"generator_seed": generator_seed} if generator_seed is not None else {}),
            "id_sample": id_sample(o.transaction_id for o in rows.orders),
        },
        "libraries": libraries(),
        "evaluation": evaluation,
    }
    return Trained(ModelFile(version, FEATURES, baseline, onnx_bytes, meta), held_x)


def baseline_of(x: np.ndarray, y: np.ndarray | None) -> tuple[float, ...]:
    """Each feature's usual value, what explanations compare with: its median over the honest
    orders of customers with a history (prior_orders >= 1). A first order's features are the
    same for everyone (no device or city seen yet), so in an archive that starts from nothing
    they would make "a device new to them" the usual and never a reason. Fallbacks: every
    honest order, then every order."""
    honest = x if y is None else x[y == 0]
    returning = honest[honest[:, FEATURES.index("prior_orders")] >= 1]
    for pick in (returning, honest, x):
        if len(pick):
            return tuple(float(v) for v in np.median(pick, axis=0))
    return tuple(0.0 for _ in FEATURES)


def _fit(model: Any, x: np.ndarray, y: np.ndarray, labels: str, prior: float | None) -> None:
    if labels == "none":
        model.fit(x)
    else:
        model.fit(x, y, **{fit_weight_name(model): prior_weights(y, prior)})


def verify(path: Path, trained: Trained) -> None:
    """Load the written file and score the held-out rows again: the scores must be the ones
    its evaluation was computed from, bit for bit."""
    risk = Scorer(load(path)).score(trained.holdout_x)
    if _digest(risk) != trained.model.meta["evaluation"]["scores_sha256"]:
        raise TrainingError(f"{path} does not score the held-out orders as the trained model did")
