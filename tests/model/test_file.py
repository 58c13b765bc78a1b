"""A model file with malformed fields, or an unwritable place for one, is one line."""

from __future__ import annotations

import zipfile
from pathlib import Path

import orjson
import pytest

from fraudstream.features.spec import FEATURES
from fraudstream.model.file import ModelFile, ModelFileError, load, save

GOOD = {"format": 1, "version": "v1", "features": list(FEATURES), "baseline": [0.0] * len(FEATURES)}


def _file(tmp_path: Path, meta: dict) -> Path:
    path = tmp_path / "m.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("model.json", orjson.dumps(meta))
        z.writestr("model.onnx", b"graph")
    return path


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"features": 5}, "features are not a list"),
        ({"baseline": "x"}, "baseline is not one finite number"),
        ({"baseline": [None] * len(FEATURES)}, "baseline is not one finite number"),
        ({"baseline": [True] * len(FEATURES)}, "baseline is not one finite number"),
        ({"period": "x"}, "period is not an object"),
        ({"evaluation": []}, "evaluation is not an object"),
    ],
)
def test_malformed_fields_are_one_line(tmp_path: Path, change: dict, said: str) -> None:
    with pytest.raises(ModelFileError, match=said):
        load(_file(tmp_path, GOOD | change))


def test_a_well_formed_file_loads(tmp_path: Path) -> None:
    model = load(_file(tmp_path, GOOD | {"period": {"orders": 3}}))
    assert (model.version, model.features, model.onnx, model.meta) == (
        "v1",
        FEATURES,
        b"graph",
        {"period": {"orders": 3}},
    )


def test_an_unwritable_path_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(ModelFileError, match="cannot write the model file"):
        save(tmp_path / "file" / "m.zip", ModelFile("v1", FEATURES, (0.0,) * len(FEATURES), b"graph"))
