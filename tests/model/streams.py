"""Small generated streams the model tests train on, made once per test session."""

from __future__ import annotations

from functools import cache

from fraudstream.config import Settings
from fraudstream.evaluation import LabelledEvent
from fraudstream.events.model import Order
from fraudstream.features.spec import FeatureSpec
from fraudstream.model import evaluate as ev
from fraudstream.model.train import Trained, train

TRAIN_SEED, TRAIN_COUNT = 5, 12_000


@cache
def training_stream() -> tuple[list[LabelledEvent], list[Order]]:
    return ev.stream(TRAIN_SEED, TRAIN_COUNT)


@cache
def trained() -> Trained:
    """A model on TRAIN_COUNT orders of the generator's default mix (a few seconds)."""
    return train(training_stream()[1], FeatureSpec.from_settings(Settings().features))
