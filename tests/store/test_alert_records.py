"""An alert record of the alerts topic with the model's marks, as the copier and `alerts tail`
read it: risk a number from 0 to 1 or null, held_back true or false, both optional (a job
without the model, or from before it); anything else is refused with its reason."""

from __future__ import annotations

import dataclasses

import orjson
import pytest

from fraudstream.detectors import VelocityDetector
from fraudstream.kafka.tail import alert_from_json
from fraudstream.store.mirror import Unstorable, _alert
from tests.conftest import BASE, make_order

ALERT = VelocityDetector(threshold=0).make_alert(make_order(BASE), "User u_1 placed 4 orders", {"n": 4})


def record(**fields: object) -> bytes:
    return orjson.dumps(ALERT.to_dict() | fields)


@pytest.mark.parametrize("read", [_alert, alert_from_json])
def test_the_marks_are_kept_and_optional(read):
    marked = dataclasses.replace(ALERT, risk=0.042, held_back=True)
    assert read(orjson.dumps(marked.to_dict())) == marked
    assert read(record(risk=1)).risk == 1.0 and isinstance(read(record(risk=1)).risk, float)
    old = ALERT.to_dict()
    del old["risk"], old["held_back"]  # a record of a job without them
    assert read(orjson.dumps(old)) == ALERT


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"risk": "0.5"}, "risk"),
        ({"risk": True}, "risk"),
        ({"risk": 1.5}, "risk"),
        ({"risk": -0.1}, "risk"),
        ({"held_back": 1}, "held_back"),
        ({"held_back": None}, "held_back"),
    ],
)
def test_a_mark_of_the_wrong_kind_is_refused_with_its_reason(fields, reason):
    with pytest.raises(Unstorable, match=reason):
        _alert(record(**fields))
    with pytest.raises(ValueError, match=f"'{reason}' is not"):
        alert_from_json(record(**fields))


def test_a_console_line_shows_the_marks_only_when_there_are_some():
    from fraudstream.cli.format import alert_line

    line = alert_line(dataclasses.replace(ALERT, risk=0.0421, held_back=True))
    assert "Z risk=0.042 held-back id=" in line
    assert "risk" not in alert_line(ALERT) and "held" not in alert_line(ALERT)
