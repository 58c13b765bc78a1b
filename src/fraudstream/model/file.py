"""The model file: one zip holding `model.onnx` and `model.json` (what it is and how it was made).

The ONNX graph is what every engine scores with (ONNX Runtime in Python and in the JVM), so a
model is never unpickled: a model file carries no code. `model.json` names the file format, the
model's version, its feature list (in input order), each feature's usual value for honest
orders (the baseline explanations compare with), the training period, the libraries and the
model's own evaluation.
"""

from __future__ import annotations

import math
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from fraudstream.errors import UserFacingError
from fraudstream.features.spec import FEATURES, FeatureSpec

FORMAT = 1
_JSON, _ONNX = "model.json", "model.onnx"


class ModelFileError(UserFacingError):
    """A model file that is missing, unreadable or made for other features."""


@dataclass(frozen=True)
class ModelFile:
    version: str
    features: tuple[str, ...]
    baseline: tuple[float, ...]
    onnx: bytes
    meta: dict[str, Any] = field(default_factory=dict)  # period, libraries, evaluation, ...

    def describe(self) -> dict[str, Any]:
        """Everything model.json holds."""
        return {
            "format": FORMAT,
            "version": self.version,
            "features": list(self.features),
            "baseline": list(self.baseline),
            **self.meta,
        }


def save(path: Path, model: ModelFile) -> None:
    """Write the file (through a temporary name, so a reader never sees half of it)."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z:
            z.writestr(_JSON, orjson.dumps(model.describe(), option=orjson.OPT_INDENT_2))
            z.writestr(_ONNX, model.onnx)
        tmp.replace(path)
    except OSError as exc:
        if tmp.parent.is_dir():
            tmp.unlink(missing_ok=True)
        raise ModelFileError(f"cannot write the model file {path}: {exc.strerror or exc}") from None


def load(path: Path) -> ModelFile:
    """The model in `path`, checked against this build's features; one line if it is not usable."""
    if not path.is_file():
        raise ModelFileError(f"model file {path} not found: train one with 'fraudstream train'")
    try:
        with zipfile.ZipFile(path) as z:
            meta = orjson.loads(z.read(_JSON))
            onnx = z.read(_ONNX)
    except (zipfile.BadZipFile, KeyError, orjson.JSONDecodeError, OSError) as exc:
        raise ModelFileError(f"model file {path} is corrupt or not a model file ({exc})") from None
    if not isinstance(meta, dict):
        raise ModelFileError(f"model file {path} is corrupt: model.json is not an object")
    if meta.get("format") != FORMAT:
        raise ModelFileError(
            f"model file {path} has format {meta.get('format')!r}, this fraudstream reads format {FORMAT}: "
            "train a new one with 'fraudstream train'"
        )
    raw_features = meta.get("features")
    if not isinstance(raw_features, list) or not all(isinstance(f, str) for f in raw_features):
        raise ModelFileError(f"model file {path} is corrupt: its features are not a list of names")
    features = tuple(raw_features)
    if features != FEATURES:
        missing = [f for f in FEATURES if f not in features]
        extra = [f for f in features if f not in FEATURES]
        what = "; ".join(
            part for part in (f"lacks {', '.join(missing)}" if missing else "",
                              f"has unknown {', '.join(extra)}" if extra else "") if part
        ) or "orders them differently"  # fmt: skip
        raise ModelFileError(f"model file {path} was trained on other features ({what}): train a new one")
    baseline = meta.get("baseline")
    if (
        not isinstance(baseline, list)
        or len(baseline) != len(FEATURES)
        or not all(isinstance(b, int | float) and not isinstance(b, bool) and math.isfinite(b) for b in baseline)
    ):
        raise ModelFileError(f"model file {path} is corrupt: its baseline is not one finite number per feature")
    for name in ("period", "evaluation", "libraries", "features_spec"):
        if name in meta and not isinstance(meta[name], dict):
            raise ModelFileError(f"model file {path} is corrupt: its {name} is not an object")
    version = meta.get("version")
    if not isinstance(version, str) or not version:
        raise ModelFileError(f"model file {path} is corrupt: it has no version")
    rest = {k: v for k, v in meta.items() if k not in ("format", "version", "features", "baseline")}
    return ModelFile(version, features, tuple(float(b) for b in baseline), onnx, rest)


def check_spec(model: ModelFile, spec: FeatureSpec) -> None:
    """The features' bounds the model was trained with (model.json's `features_spec`) are this
    run's: features computed under other bounds are not what the model learned from. A file
    that records none (made by hand or by an older train) is taken as it is."""
    recorded = model.meta.get("features_spec")
    if not isinstance(recorded, dict):
        return
    differing = sorted(k for k, v in recorded.items() if getattr(spec, k, None) != v)
    if differing:
        said = ", ".join(f"features.{k}={recorded[k]!r} (this run: {getattr(spec, k, None)!r})" for k in differing)
        raise ModelFileError(
            f"model {model.version} was trained with {said}: train again with this run's settings, "
            "or set the same features.* as the training"
        )
