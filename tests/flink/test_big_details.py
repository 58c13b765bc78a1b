"""Capped alert details on the real job: both engines list the same newest users and cities, with
the same totals, as the brute-force oracle derives from the definition (`tests/oracle.py`)."""

from __future__ import annotations

import orjson
import pytest

from fraudstream.config import DetectorSettings
from tests.detectors.test_detail_caps import _listed, crowded_stream
from tests.flink.conftest import run_file, write_lines
from tests.oracle import expected_details

pytestmark = pytest.mark.flink


@pytest.fixture(scope="module")
def crowded(tmp_path_factory):
    events = crowded_stream()
    path = write_lines(
        tmp_path_factory.mktemp("crowded") / "crowded.jsonl",
        [orjson.dumps(e) for e in sorted(events, key=lambda e: e["event_time"])],
    )
    return events, path


@pytest.mark.parametrize("engine", ["sql", "datastream"])
def test_capped_details_equal_the_oracle_in_both_engines(crowded, tmp_path, engine):
    events, path = crowded
    result = run_file(path, tmp_path, **{"pipeline.engine": engine})
    got = {(a.alert_type, a.key, a.transaction_id, a.event_time): _listed(a.details) for a in result.alerts}
    expected = expected_details(events)
    assert got == expected
    cap = DetectorSettings().detail_list_max
    assert sum(1 for a in result.alerts if a.details.get("users_total", a.details.get("cities_total", 0)) > cap) > 20
