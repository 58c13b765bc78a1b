"""`fraudstream run --model FILE`: a model that cannot be used is one line before Flink starts."""

from __future__ import annotations

import json
import re
import time
import zipfile

import numpy as np
import orjson
import pytest

from fraudstream.cli.main import main
from fraudstream.config import load_settings
from fraudstream.features.spec import FEATURES
from fraudstream.flink.checkpoints import STATE_LAYOUT, OtherSteps, resume_point


def _run(capsys, tmp_path, *args):
    code = main(["--data-dir", str(tmp_path / "data"), "run", "--count", "5", *args])
    out, err = capsys.readouterr()
    return code, out, err


def _model_zip(path, features, onnx=b"not an onnx graph"):
    meta = {"format": 1, "version": "v1", "features": list(features), "baseline": [0.0] * len(features)}
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("model.json", orjson.dumps(meta))
        z.writestr("model.onnx", onnx)
    return path


def _first_two_columns() -> bytes:
    """A valid ONNX graph with the model's input and output (its "probabilities" are the first
    two features): quicker to make than a trained model."""
    from onnx import TensorProto, helper, numpy_helper

    def const(name, values):
        return numpy_helper.from_array(np.asarray(values, dtype=np.int64), name)

    graph = helper.make_graph(
        [helper.make_node("Slice", ["x", "starts", "ends", "axes"], ["probabilities"])],
        "first-two",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, len(FEATURES)])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 2])],
        [const("starts", [0]), const("ends", [2]), const("axes", [1])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10).SerializeToString()


@pytest.mark.parametrize(
    ("case", "said"),
    [
        ("missing", r"model file .*missing\.zip not found: train one with 'fraudstream train'"),
        ("corrupt", r"model file .*corrupt\.zip is corrupt or not a model file"),
        ("other features", r"was trained on other features \(lacks amount_to_usual.*has unknown velocity\)"),
        ("not onnx", r"model v1 cannot be loaded by ONNX Runtime"),
    ],
)
def test_an_unusable_model_is_refused_in_one_line(tmp_path, capsys, case, said):
    if case == "missing":
        path = tmp_path / "missing.zip"
    elif case == "corrupt":
        path = tmp_path / "corrupt.zip"
        path.write_bytes(b"PK\x03\x04 half a zip")
    elif case == "other features":
        path = _model_zip(tmp_path / "other.zip", [f for f in FEATURES if f != "amount_to_usual"] + ["velocity"])
    else:
        path = _model_zip(tmp_path / "notonnx.zip", FEATURES)
    code, out, err = _run(capsys, tmp_path, "--model", str(path))
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and re.search(said, lines[0]), err
    assert "Traceback" not in err and "fraudstream: real-time" not in out  # refused before the banner


def test_a_model_with_an_engine_that_cannot_score_is_refused(tmp_path, capsys):
    path = _model_zip(tmp_path / "m.zip", FEATURES)
    code, _, err = _run(capsys, tmp_path, "--engine", "datastream", "--model", str(path))
    assert code == 1
    assert err.strip().splitlines() == [
        "fraudstream: error: the model runs in the sql engine; --engine datastream has no scoring step: "
        "run with --engine sql, or without a model (unset model.path)"
    ]


@pytest.mark.parametrize("scored", [True, False])
def test_resume_across_a_model_change_is_refused_in_one_line(tmp_path, scored):
    """A run with the model's steps left a checkpoint; resuming it without them (or the
    reverse) would make Flink fail to map its state: refused before Flink starts."""
    point = tmp_path / "checkpoints" / "job-a" / "chk-4"
    point.mkdir(parents=True)
    (point / "_metadata").write_bytes(b"x")
    runs = tmp_path / "checkpoints" / "runs"
    runs.mkdir()
    record = {"job_id": "job-a", "started": time.time() - 30, "checkpointed": True, "state_layout": STATE_LAYOUT}
    (runs / "job-a.json").write_text(json.dumps({**record, "scored": scored, "live_rules": True}))
    flags = {"data_dir": str(tmp_path), "pipeline.source": "kafka"}
    model = {"model.path": str(tmp_path / "m.zip")}
    other = load_settings(flags={**flags, **({} if scored else model)}, environ={})
    with pytest.raises(OtherSteps, match=("with" if scored else "without") + " a risk model, and this run is"):
        resume_point(other)
    same = load_settings(flags={**flags, **(model if scored else {})}, environ={})
    assert resume_point(same) == point


def test_a_model_without_the_jvms_onnx_runtime_is_refused_in_one_line(tmp_path, capsys):
    """An older `make jars` fetched no ONNX Runtime jar: said before Flink starts."""
    model = _model_zip(tmp_path / "m.zip", FEATURES, _first_two_columns())
    code, _, err = _run(capsys, tmp_path, "--set", f"broker.jars_dir={tmp_path / 'jars'}", "--model", str(model))
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "ONNX Runtime jar not found in" in lines[0] and "run 'make jars'" in lines[0], err


def _graph(inputs: int, outputs: int) -> bytes:
    """A valid ONNX graph whose "probabilities" are its first `outputs` inputs of `inputs`."""
    from onnx import TensorProto, helper, numpy_helper

    def const(name, values):
        return numpy_helper.from_array(np.asarray(values, dtype=np.int64), name)

    graph = helper.make_graph(
        [helper.make_node("Slice", ["x", "starts", "ends", "axes"], ["probabilities"])],
        "slice",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, inputs])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, outputs])],
        [const("starts", [0]), const("ends", [outputs]), const("axes", [1])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10).SerializeToString()


@pytest.mark.parametrize(
    ("inputs", "outputs", "said"),
    [
        (len(FEATURES) - 1, 2, r"model v1 cannot score its 11 features: "),
        (len(FEATURES), 1, r"model v1 gives probabilities of shape \(1, 1\), not \(1, 2\) in \[0, 1\]"),
    ],
)
def test_a_graph_that_cannot_score_the_features_is_refused_at_start_up(tmp_path, capsys, inputs, outputs, said):
    """ONNX Runtime loads these graphs; only scoring shows they read or give the wrong shape."""
    path = _model_zip(tmp_path / "m.zip", FEATURES, _graph(inputs, outputs))
    code, out, err = _run(capsys, tmp_path, "--model", str(path))
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and re.search(said, lines[0]), err
    assert "fraudstream: real-time" not in out


def test_a_model_trained_with_other_feature_bounds_is_refused_in_one_line(tmp_path, capsys):
    path = _model_zip(tmp_path / "m.zip", FEATURES, _first_two_columns())
    with zipfile.ZipFile(path) as z:
        meta = orjson.loads(z.read("model.json"))
    spec = {"history_ms": 5, "recent_ms": 3_600_000, "max_cities": 3}
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("model.json", orjson.dumps({**meta, "features_spec": spec}))
        z.writestr("model.onnx", _first_two_columns())
    code, _, err = _run(capsys, tmp_path, "--model", str(path))
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "features.history_ms=5 (this run: 2592000000)" in lines[0] and "features.max_cities=3" in lines[0]
    assert "recent_ms" not in lines[0] and "train again" in lines[0]
    # the same bounds set for the run: accepted (it fails later only for the missing ONNX jar dir)
    code, _, err = _run(
        capsys, tmp_path, "--set", "features.history_ms=5", "--set", "features.max_cities=3",
        "--set", f"broker.jars_dir={tmp_path / 'jars'}", "--model", str(path),
    )  # fmt: skip
    assert code == 1 and "ONNX Runtime jar not found in" in err, err


def test_the_model_file_is_read_once_per_start_up(tmp_path):
    """run checks the model before Flink starts and the job graph takes it: one read, unless
    the file changed in between."""
    import os

    from fraudstream.flink.job import load_model

    path = _model_zip(tmp_path / "m.zip", FEATURES, _first_two_columns())
    settings = load_settings(flags={"data_dir": str(tmp_path / "data"), "model.path": str(path)}, environ={})
    first = load_model(settings)
    assert first is not None and load_model(settings) is first
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert load_model(settings) is not first
