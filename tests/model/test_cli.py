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
    bad_graph = tmp_path / "graph.zip"  # well-formed model.json, no graph: nothing to train
    save(bad_graph, ModelFile("m-bad", FEATURES, (0.0,) * len(FEATURES), b"not a graph"))
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
    code, _, err = run_cli(capsys, "model", "evaluate", "--seed", "3", "--validation-seed", "3")
    assert code == 1 and "--validation-seed 3 is the evaluated stream's seed" in err


def test_an_unwritable_output_is_one_line_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file").write_text("not a folder")
    under_a_file = str(tmp_path / "file" / "out.json")
    code, out, err = run_cli(capsys, "model", "evaluate", "--json-out", under_a_file)
    assert code == 1 and out == "" and err.strip().count("\n") == 0
    assert "cannot write --json-out" in err and "is not a folder" in err
    code, _, err = run_cli(capsys, "model", "evaluate", "--json-out", str(tmp_path))
    assert code == 2 and "is a directory" in err and err.strip().count("\n") == 0
    (tmp_path / "data" / "archive").mkdir(parents=True)  # an archive it never reads: refused before
    code, out, err = run_cli(capsys, "--data-dir", str(tmp_path / "data"), "train", "-o", under_a_file)
    assert code == 1 and out == "" and err.strip().count("\n") == 0
    assert "cannot write the model file" in err


def test_shares_are_laid_over_the_default_mix(capsys: pytest.CaptureFixture[str]) -> None:
    from fraudstream.cli.model_cmds import _shares
    from fraudstream.model import evaluate as ev

    assert _shares(None, ev.SHARES) == ev.SHARES
    assert _shares("account_takeover=0", ev.SHARES) == {**ev.SHARES, "account_takeover": 0.0}
    assert _shares('{"promo_abuse": 1}', ev.SHARES) == {**ev.SHARES, "promo_abuse": 1.0}
    zero = ",".join(f"{p}=0" for p in ev.SHARES)
    code, _, err = run_cli(capsys, "model", "evaluate", "--shares", zero)
    assert code == 1 and "at least one pattern needs a share above 0" in err


def test_model_show_prints_what_an_odd_model_json_holds() -> None:
    from fraudstream.cli.model_cmds import describe

    base = {"format": 1, "version": "v1", "features": list(FEATURES), "baseline": [0.5] * len(FEATURES)}
    odd = [
        {},
        {"period": {}, "evaluation": {}},
        {"period": {"orders": "many", "fraud_orders": "x"}, "evaluation": {"auc": "high", "patterns": {"p": 3}}},
        {"evaluation": {"patterns": {"p": {"orders": 4}}, "precision": None}, "params": [], "libraries": "x"},
        {"features": "x", "baseline": None, "training_data": []},
    ]
    for change in odd:
        text = describe(base | change)
        assert text.startswith("Model v1 (file format 1)")
    assert "many orders" in describe(base | odd[2]) and "AUC high" in describe(base | odd[2])
    assert "?/4" in describe(base | odd[3])


@pytest.mark.slow  # trains a model
def test_evaluate_tells_a_stream_the_model_was_trained_on() -> None:
    from fraudstream.model import evaluate as ev

    model = trained().model
    sample = model.meta["training_data"]["id_sample"]
    assert len(sample) == 256 and sample == sorted(sample)
    said = ev.trained_on(model, 99, training_stream()[1])
    assert said is not None and "256 of the 256 sampled training orders are in it" in said
    assert ev.trained_on(model, 99, ev.stream(6, 2_000)[1]) is None
    seeded = ModelFile(model.version, model.features, model.baseline, model.onnx,
                       {**model.meta, "training_data": {"generator_seed": 6}})  # fmt: skip
    assert "same seed (6)" in (ev.trained_on(seeded, 6, ev.stream(6, 2_000)[1]) or "")
    odd = ModelFile(model.version, model.features, model.baseline, model.onnx, {"training_data": [1]})
    assert ev.trained_on(odd, 6, training_stream()[1]) is None


@pytest.mark.slow  # trains a model
def test_evaluate_refuses_a_model_trained_with_other_features(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "m.zip"
    save(path, trained().model)
    code, out, err = run_cli(capsys, "--set", "features.recent_max=10", "model", "evaluate", str(path))
    assert code == 1 and out == "" and err.strip().count("\n") == 0
    assert "was trained with features.recent_max=64 (this run: 10)" in err
