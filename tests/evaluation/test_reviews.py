"""Precision from analysts' verdicts: the Wilson interval against published values, the rows."""

from __future__ import annotations

import orjson
import pytest

from fraudstream.evaluation.output import format_review_table, review_report_to_json
from fraudstream.evaluation.reviews import POOLED, score_reviews, wilson_interval

# Newcombe (1998), "Two-sided confidence intervals for the single proportion", Statistics in
# Medicine 17:857-872, Table II, method 3 (Wilson score interval, no continuity correction), 95 %.
NEWCOMBE = [
    ((81, 263), (0.2553, 0.3662)),
    ((15, 148), (0.0624, 0.1605)),
    ((0, 20), (0.0000, 0.1611)),
    ((1, 29), (0.0061, 0.1718)),
]


@pytest.mark.parametrize(("counts", "expected"), NEWCOMBE)
def test_wilson_interval_matches_published_values(counts, expected):
    low, high = wilson_interval(*counts)
    assert (round(low, 4), round(high, 4)) == expected


def test_wilson_interval_at_the_ends_and_as_confidence_changes():
    assert wilson_interval(0, 0) is None
    low, high = wilson_interval(40, 40)
    assert high == 1.0 and 0.9 < low < 1.0  # 40 of 40 is not certainty: the interval has width
    assert wilson_interval(0, 40)[0] == 0.0
    narrow, wide = wilson_interval(36, 40, 0.80), wilson_interval(36, 40, 0.99)
    assert wide[0] < narrow[0] < 0.9 < narrow[1] < wide[1]
    many = wilson_interval(900, 1000)
    few = wilson_interval(9, 10)
    assert few[1] - few[0] > 5 * (many[1] - many[0])  # more reviews, a tighter interval
    with pytest.raises(ValueError):
        wilson_interval(5, 4)
    with pytest.raises(ValueError):
        wilson_interval(1, 4, confidence=1.0)


def test_precision_per_rule_with_reviewed_of_stored_and_the_pooled_row():
    verdicts = [("VELOCITY_FRAUD", "confirmed_fraud")] * 36 + [("VELOCITY_FRAUD", "false_positive")] * 4
    verdicts += [("HIGH_VALUE_FRAUD", "false_positive")] * 10
    report = score_reviews(verdicts, {"VELOCITY_FRAUD": 900, "HIGH_VALUE_FRAUD": 30, "GEO_ANOMALY_FRAUD": 5})
    velocity = report.row("VELOCITY_FRAUD")
    assert (velocity.alerts, velocity.reviewed, velocity.confirmed, velocity.false_positives) == (900, 40, 36, 4)
    assert velocity.precision == 0.9 and velocity.coverage == 40 / 900
    assert (velocity.ci_low, velocity.ci_high) == wilson_interval(36, 40)
    high = report.row("HIGH_VALUE_FRAUD")
    assert high.precision == 0.0 and high.ci_low == 0.0 and high.ci_high > 0.2
    geo = report.row("GEO_ANOMALY_FRAUD")  # alerts, none reviewed: a row, figures n/a
    assert (geo.reviewed, geo.precision, geo.ci_low, geo.ci_high) == (0, None, None, None)
    total = report.rows[-1]
    assert total.detector == POOLED and report.reviewed == 50
    assert (total.alerts, total.confirmed, total.false_positives) == (935, 36, 14)
    assert total.precision == 36 / 50


def test_no_verdicts_and_an_unknown_verdict():
    empty = score_reviews([], {"VELOCITY_FRAUD": 3})
    assert empty.reviewed == 0 and empty.rows[-1].precision is None and empty.rows[-1].alerts == 3
    assert score_reviews([], {}).rows[-1].coverage is None
    with pytest.raises(ValueError, match="unknown verdict"):
        score_reviews([("VELOCITY_FRAUD", "maybe")], {"VELOCITY_FRAUD": 1})


def test_table_and_json():
    verdicts = [("VELOCITY_FRAUD", "confirmed_fraud")] * 36 + [("VELOCITY_FRAUD", "false_positive")] * 4
    report = score_reviews(verdicts, {"VELOCITY_FRAUD": 900, "HIGH_VALUE_FRAUD": 30})
    text = format_review_table(report)
    velocity = next(line for line in text.splitlines() if line.startswith("VELOCITY_FRAUD"))
    assert velocity.split() == ["VELOCITY_FRAUD", "900", "40", "4.4%", "36", "4", "90.0%", "76.9%", "-", "96.0%"]
    high = next(line for line in text.splitlines() if line.startswith("HIGH_VALUE_FRAUD"))
    assert high.split()[-2:] == ["n/a", "n/a"]
    assert "95% interval" in text and "no recall" in text
    pooled = next(line for line in text.splitlines() if line.startswith("all reviewed (pooled)"))
    assert pooled.split()[3:9] == ["930", "40", "4.3%", "36", "4", "90.0%"]  # 900 + 30 alerts, 40 verdicts
    assert "weighs each rule by how many of its alerts were reviewed" in text
    data = orjson.loads(orjson.dumps(review_report_to_json(report)))
    assert data["interval"] == "wilson" and data["confidence"] == 0.95
    rows = {d["detector"]: d for d in data["detectors"]}
    assert list(rows)[-1] == POOLED
    assert rows["HIGH_VALUE_FRAUD"]["precision"] is None  # n/a is null
    assert rows["VELOCITY_FRAUD"]["reviewed"] == 40 and rows["VELOCITY_FRAUD"]["alerts"] == 900
