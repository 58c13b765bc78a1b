"""`fraudstream train` on a real archive file, `model show`, and broken model files."""

from __future__ import annotations

import zipfile
from pathlib import Path

import orjson
import pytest

from fraudstream.cli.main import main
from fraudstream.features.spec import FEATURES
from fraudstream.model.file import ModelFile, load, save
from fraudstream.model.score import Scorer
from tests.evaluation.test_loaders import write_archive

from .streams import trained, training_stream


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def _archive(root: Path, count: int) -> None:
    """A generated stream laid out as the job's archive (hive partitions, part files)."""
    _, orders = training_stream()
    records = []
    for o in orders[:count]:
        record = o.to_dict()
        records.append({**record, "raw": orjson.dumps(record).decode()})
    write_archive(root, records)


@pytest.mark.slow
def test_train_on_an_archive_then_show_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    archive = tmp_path / "data" / "archive" / "orders"
    _archive(archive, 6_000)
    code, out, err = run_cli(capsys, "--data-dir", str(tmp_path / "data"), "train", "--to", "2026-01-02T00:00")
    assert code == 0, err
    written = [line.removeprefix("Model written to ") for line in out.splitlines() if line.startswith("Model written")]
    path = Path(written[0])
    assert path.parent == tmp_path / "data" / "models" and path.name.startswith("m-")
    assert "orders read" in err and "fitting HistGradientBoostingClassifier" in err
    assert "scores the held-out orders exactly as evaluated" in err
    model = load(path)
    assert model.meta["period"]["source"] == str(tmp_path / "data" / "archive")
    assert model.meta["period"]["from"].startswith("2026-01-01T")
    assert Scorer(model).score([model.baseline]).shape == (1,)

    code, shown, err = run_cli(capsys, "model", "show", str(path))
    assert code == 0, err
    assert shown.splitlines()[0] == f"Model {model.version} (file format 1)"
    for name in FEATURES:
        assert name in shown
    assert "AUC" in shown and "scikit-learn" in shown and "account_takeover" in shown
    code, as_json, _ = run_cli(capsys, "model", "show", "--json", str(path))
    assert code == 0 and orjson.loads(as_json) == model.describe()


def test_train_with_nothing_to_read_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "--data-dir", str(tmp_path), "train")
    assert code == 1 and out == ""
    assert err.strip().count("\n") == 0 and "no archive at" in err
    code, _, err = run_cli(capsys, "--data-dir", str(tmp_path), "train", "--db", "x.db")
    assert code == 1 and "--db goes with --labels reviews" in err


def test_broken_model_files_are_one_line_at_the_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    not_zip = tmp_path / "not.zip"
    not_zip.write_bytes(b"PK nothing")
    old = tmp_path / "old.zip"
    with zipfile.ZipFile(old, "w") as z:
        z.writestr("model.json", orjson.dumps({"format": 0, "version": "m-old"}))
        z.writestr("model.onnx", b"")
    m = trained().model
    bad_graph = tmp_path / "graph.zip"
    save(bad_graph, ModelFile(m.version, m.features, m.baseline, b"not a graph", m.meta))
    cases = ((tmp_path / "missing.zip", "not found"), (not_zip, "corrupt"), (old, "has format 0"),
             (bad_graph, "cannot be loaded by ONNX Runtime"))  # fmt: skip
    for path, said in cases:
        code, out, err = run_cli(capsys, "model", "show", str(path))
        assert code == 1 and out == ""
        assert err.startswith("fraudstream: error: model") and said in err
        assert err.strip().count("\n") == 0
    code, _, err = run_cli(capsys, "model", "evaluate", str(tmp_path / "missing.zip"))
    assert code == 1 and "not found" in err


def test_evaluate_options_are_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "model", "evaluate", "--shares", "account_takeover=x")
    assert code == 1 and "--shares expects name=share" in err
    code, _, err = run_cli(capsys, "model", "evaluate", "--shares", "nope=1")
    assert code == 1 and "unknown pattern" in err
    model = tmp_path / "m.zip"
    model.write_bytes(b"")
    code, _, err = run_cli(capsys, "model", "evaluate", str(model), "--train-seed", "3")
    assert code == 1 and "--train-seed: only without MODEL" in err
