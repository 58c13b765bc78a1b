"""A small risk model made in the test itself (no dependence on `fraudstream train`): gradient-
boosted trees on the features of a seeded generated stream, labelled by the generator's
`behavior`, exported to ONNX and saved as a model file."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fraudstream.events.model import Order
from fraudstream.events.parse import parse_record
from fraudstream.features.replay import feature_rows
from fraudstream.features.spec import FEATURES, FeatureSpec
from fraudstream.generator import OrderGenerator
from fraudstream.model.file import ModelFile, save


def orders_of(events: list[dict]) -> list[Order]:
    """The events as the job parses them (through JSON, as the job receives them)."""
    import orjson

    out = []
    for e in events:
        parsed = parse_record(orjson.dumps(e))
        assert isinstance(parsed, Order)
        out.append(parsed)
    return out


def tiny_model(path: Path, seed: int = 11, count: int = 6_000, users: int = 400) -> ModelFile:
    """Train, export and save a small model; returns what was saved."""
    from skl2onnx import to_onnx

    from fraudstream.model.train import estimator

    orders = orders_of(list(OrderGenerator(seed=seed, users=users).orders(count)))
    rows = list(feature_rows(orders, FeatureSpec()))
    x = np.asarray([f for _, f in rows], dtype=np.float64)
    y = np.asarray([(o.behavior or "normal") != "normal" for o, _ in rows], dtype=np.int64)
    assert 0 < y.sum() < len(y), "the stream needs both honest and fraudulent orders"
    m = estimator("hgb").fit(x, y)  # the trees `fraudstream train` fits (100 rounds, leaves of 100, ...)
    onnx = to_onnx(
        m, x[:1].astype(np.float32), options={id(m): {"zipmap": False}}, target_opset={"": 17, "ai.onnx.ml": 3}
    )
    honest = x[y == 0]
    model = ModelFile(
        version=f"test-{seed}",
        features=FEATURES,
        baseline=tuple(float(v) for v in np.median(honest, axis=0)),
        onnx=onnx.SerializeToString(),
        meta={"made_by": "tests/modelkit.py"},
    )
    save(path, model)
    return model
