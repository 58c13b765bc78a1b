"""`fraudstream rules` against the session broker: set, show, history and revert round trip; a
bad change or a missing --yes off a terminal publishes nothing; a trial that cannot run says why."""

from __future__ import annotations

import uuid
from pathlib import Path
from unittest.mock import ANY

import orjson
import pytest

from fraudstream.cli.main import main
from fraudstream.config import load_settings
from fraudstream.rules.model import Limits, RuleSet
from fraudstream.rules.topic import read_history
from fraudstream.rules.trial import trial

pytestmark = pytest.mark.slow


def test_set_show_history_revert_round_trip_and_refusals(kafka, tmp_path, capsys):
    topic = f"rules-{uuid.uuid4().hex[:8]}"
    common = ["--data-dir", str(tmp_path), "--set", f"kafka.bootstrap_servers={kafka.bootstrap_servers}",
              "--set", f"rules.topic={topic}"]  # fmt: skip
    settings = load_settings(
        environ={}, flags={"kafka.bootstrap_servers": kafka.bootstrap_servers, "rules.topic": topic}
    )

    def run(*args: str) -> tuple[int, str, str]:
        code = main([*common, "rules", *args])
        out, err = capsys.readouterr()
        return code, out, err

    # A bad key: one line, exit 2, nothing published (the topic is not even created).
    code, out, err = run("set", "velocity.thresold=5", "--yes", "--no-backtest")
    assert code == 2 and err.count("\n") == 1 and "unknown rule setting 'velocity.thresold'" in err, err
    # Off a terminal without --yes: refused in one line, before any backtest.
    code, out, err = run("set", "velocity.threshold=5", "--hours", "0.5")
    assert code == 1 and out == "" and "say --yes" in err and err.count("\n") == 1, err
    assert read_history(settings).versions == []
    code, out, err = run("set", "velocity.threshold=5", "--hours", "0", "--yes", "--json")
    assert code == 0 and orjson.loads(out)["backtest"] == {"ran": False, "hours": 0.0, "reason": ANY}
    assert "No backtest: no backtest asked for (0 hours)" in err and "published version 1" in err

    code, out, err = run("set", "velocity.threshold=5", "geo.severity=low", "--no-backtest", "--yes", "--comment", "c1")
    assert code == 0, err
    assert out.strip().splitlines()[-1] == (
        "published version 2; live jobs (sql engine, --source kafka) apply it from the event time their orders "
        "have reached"
    )
    code, out, _ = run("set", "high_value.enabled=off", "--no-backtest", "--yes", "--json")
    assert code == 0 and orjson.loads(out)["version"] == 3 and orjson.loads(out)["published"] is True

    code, out, _ = run("show", "--json")
    shown = orjson.loads(out)
    assert code == 0 and shown["version"] == 3 and shown["rules"]["high_value"]["enabled"] is False
    assert shown["rules"]["velocity"]["threshold"] == 5 and shown["rules"]["geo"]["severity"] == "LOW"
    code, out, _ = run("show")
    assert code == 0 and "Version 3" in out and "high_value.enabled" in out

    code, out, _ = run("history", "--json", "--limit", "1")
    data = orjson.loads(out)
    assert [v["version"] for v in data["versions"]] == [3] and data["rejected"] == []
    code, out, _ = run("history")
    assert code == 0 and "c1" in out and "velocity.threshold 3 -> 5" in out

    code, out, err = run("revert", "7", "--no-backtest", "--yes")
    assert code == 2 and "no version 7" in err
    code, out, err = run("revert", "0", "--no-backtest", "--yes")
    assert code == 0, err
    versions = read_history(settings).versions
    assert [v.version for v in versions] == [1, 2, 3, 4] and versions[-1].reverts == 0
    assert dict(versions[-1].items()) == dict(RuleSet.from_settings(settings).items())
    code, out, err = run("revert", "0", "--no-backtest", "--yes")
    assert code == 2 and "nothing would change" in err


def test_a_trial_that_cannot_run_says_why(tmp_path):
    settings = load_settings(environ={}, flags={"data_dir": str(tmp_path)})
    candidate = RuleSet.from_settings(settings).with_changes({"velocity.threshold": 4}, Limits.from_settings(settings))
    none = trial(settings, candidate, 0)
    assert not none.ran and "0 hours" in none.reason and none.to_dict() == {"ran": False, "hours": 0.0,
                                                                              "reason": none.reason}  # fmt: skip
    empty = trial(settings, candidate, 1.5)
    assert not empty.ran and "no archived orders" in empty.reason
    assert empty.table().startswith("No backtest: ")


@pytest.mark.flink
def test_set_backtests_the_archive_last_hours_then_publishes(kafka, tmp_path, capsys):
    """The one real trial (two bounded Flink replays, ~30 s): a stricter velocity threshold
    raises no more velocity alerts over the archive's last half hour, and is then published."""
    from fraudstream.config import GeneratorSettings
    from fraudstream.generator import generator_from_settings
    from tests.flink.test_backtest import _write_archive

    orders = list(generator_from_settings(GeneratorSettings(seed=99, mean_gap_ms=2_000)).orders(2_000))
    _write_archive(tmp_path / "archive", orders)
    newest = max(o["event_time"] for o in orders)
    in_period = sum(1 for o in orders if o["event_time"] > newest - 1_800_000)
    topic = f"rules-{uuid.uuid4().hex[:8]}"
    code = main(["--data-dir", str(tmp_path / "data"), "--set", f"archive.path={tmp_path / 'archive'}",
                 "--set", f"kafka.bootstrap_servers={kafka.bootstrap_servers}", "--set", f"rules.topic={topic}",
                 "rules", "set", "velocity.threshold=5", "--hours", "0.5", "--yes", "--json"])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0, err[-3000:]
    result = orjson.loads(out)
    bt = result["backtest"]
    assert bt["ran"] and bt["orders"] == in_period and (bt["baseline_version"], bt["candidate_version"]) == (0, 1)
    velocity = next(a for a in bt["alerts"] if a["type"] == "VELOCITY_FRAUD")
    assert 0 < velocity["candidate"] < velocity["baseline"]
    others = [a for a in bt["alerts"] if a["type"] != "VELOCITY_FRAUD"]
    assert others and all(a["baseline"] == a["candidate"] for a in others)  # only velocity changed
    assert bt["removed_alerts"] > 0 and Path(bt["work_dir"], "candidate", "fraud_alerts.db").is_file()
    assert "published version 1" in err
