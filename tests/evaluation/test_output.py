from __future__ import annotations

import dataclasses

import orjson
import pytest

from fraudstream.evaluation import (
    ALL,
    Report,
    compare,
    compare_to_json,
    evaluate,
    format_table,
    report_from_json,
    report_to_json,
    save_chart,
)

from .streams import actor, alert, honest


def make_report(caught: int, false_alerts: int, actors: int = 10) -> Report:
    """`caught` of `actors` velocity actors caught, one alert each, plus false alerts on honest orders."""
    events = honest(40)
    alerts = []
    for i in range(actors):
        events += actor(f"v{i}", "velocity_burst", [100 + i, 110 + i])
        if i < caught:
            alerts.append(alert("VELOCITY_FRAUD", f"v{i}-1"))
    alerts += [alert("VELOCITY_FRAUD", f"h{i}") for i in range(false_alerts)]
    alerts.append(alert("CUSTOM_RULE", "nowhere"))
    return evaluate(events, alerts)


def test_report_json_round_trips_through_orjson():
    report = make_report(7, 3)
    data = orjson.loads(orjson.dumps(report_to_json(report)))
    assert report_from_json(data) == report
    assert set(data) == {"version", "counts", "patterns", "detectors"}
    assert [d["detector"] for d in data["detectors"]][-1] == ALL
    row_keys = {f.name for f in dataclasses.fields(report.rows[0])}
    assert all(set(d) == row_keys for d in data["detectors"])
    custom = next(d for d in data["detectors"] if d["detector"] == "CUSTOM_RULE")
    assert custom["actor_recall"] is None  # n/a is null in JSON


def test_report_from_json_refuses_another_version():
    data = report_to_json(make_report(1, 0))
    with pytest.raises(ValueError, match="version"):
        report_from_json({**data, "version": 99})


def test_format_table_rounds_and_prints_na():
    report = make_report(7, 3)
    text = format_table(report)
    velocity_line = next(line for line in text.splitlines() if line.startswith("VELOCITY_FRAUD"))
    assert "70.0%" in velocity_line  # precision 7/10 and actor recall 7/10
    assert "7/10" in velocity_line
    assert "75.00" in velocity_line  # 3 false alerts / 40 honest orders * 1000
    custom_line = next(line for line in text.splitlines() if line.startswith("CUSTOM_RULE"))
    assert "n/a" in custom_line
    assert "0.0%" in custom_line  # its one alert is false


def test_chart_is_a_png(tmp_path):
    path = save_chart(make_report(7, 3), tmp_path / "charts" / "quality.png")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 1000


def test_chart_of_an_empty_report(tmp_path):
    path = save_chart(evaluate([], []), tmp_path / "empty.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_shows_both_runs_and_the_difference():
    baseline, candidate = make_report(7, 3), make_report(8, 1)
    data = compare_to_json(baseline, candidate)

    velocity = next(d for d in data["detectors"] if d["detector"] == "VELOCITY_FRAUD")["metrics"]
    assert velocity["actor_recall"]["baseline"] == pytest.approx(0.7)
    assert velocity["actor_recall"]["candidate"] == pytest.approx(0.8)
    assert velocity["actor_recall"]["delta"] == pytest.approx(0.1)
    assert velocity["precision"]["delta"] == pytest.approx(8 / 9 - 7 / 10)
    assert velocity["false_alerts"]["delta"] == -2
    assert data["counts"]["events"]["delta"] == 0
    assert orjson.loads(orjson.dumps(data)) == data

    text = compare(baseline, candidate)
    recall_line = next(line for line in text.splitlines() if "actor_recall" in line and "70.0%" in line)
    assert "80.0%" in recall_line and "+10.0 pp" in recall_line
    assert "different events" not in text


def test_compare_warns_when_the_runs_saw_different_events():
    text = compare(make_report(7, 3), make_report(7, 3, actors=12))
    assert "different events" in text


def test_compare_lists_a_detector_only_one_run_has():
    baseline = make_report(7, 3)
    candidate = evaluate(honest(3), [alert("NEW_RULE", "h1")])
    names = [d["detector"] for d in compare_to_json(baseline, candidate)["detectors"]]
    assert "NEW_RULE" in names and "CUSTOM_RULE" in names and names[-1] == ALL
    new = next(d for d in compare_to_json(baseline, candidate)["detectors"] if d["detector"] == "NEW_RULE")
    assert new["metrics"]["alerts"] == {"baseline": None, "candidate": 1, "delta": None}
