"""`fraudstream backtest` end to end: an archive, two replays through the real Flink job, and
the comparison. Each replay is judged by the brute-force oracle with its own thresholds."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fraudstream.config import GeneratorSettings, load_settings
from fraudstream.generator import generator_from_settings
from tests.oracle import Params, expected_alerts

pytestmark = pytest.mark.flink
EXE = [sys.executable, "-m", "fraudstream"]
HOUR = 3_600_000


def _write_archive(root: Path, orders: list[dict]) -> None:
    """An archive as the job writes it: hourly partitions, part files without a suffix."""
    by_hour: dict[int, list[dict]] = {}
    for o in orders:
        by_hour.setdefault(o["event_time"] // HOUR, []).append(o)
    for hour, rows in by_hour.items():
        day = pa.scalar(hour * HOUR, pa.timestamp("ms", tz="UTC")).as_py()
        folder = root / "orders" / f"dt={day:%Y-%m-%d}" / f"hour={day:%H}"
        folder.mkdir(parents=True)
        table = pa.table(
            {
                "transaction_id": [o["transaction_id"] for o in rows],
                "event_time": pa.array([o["event_time"] for o in rows], pa.int64()),
                "raw": [orjson.dumps(o).decode() for o in rows],
            }
        )
        pq.write_table(table, folder / "part-test-0-0")
        (folder / "_SUCCESS").write_text("")


def _stored(db: Path) -> set[tuple[str, str, str, int]]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT alert_type, user_id, device_id, transaction_id, event_time FROM fraud_alerts")
        return {(t, d if t == "DEVICE_SHARING_FRAUD" else u, x, e) for t, u, d, x, e in rows}


def test_a_stricter_threshold_backtests_to_no_more_alerts_than_the_baseline(tmp_path):
    orders = list(generator_from_settings(GeneratorSettings(seed=99, mean_gap_ms=2_000)).orders(3_000))
    _write_archive(tmp_path / "archive", orders)
    start, end = orders[200]["event_time"], orders[2_500]["event_time"]  # a period inside the archive
    period = [o for o in orders if start <= o["event_time"] < end]
    iso = [pa.scalar(t, pa.timestamp("ms", tz="UTC")).as_py().isoformat() for t in (start, end)]
    work = tmp_path / "bt"
    proc = subprocess.run(
        [*EXE, "--data-dir", str(tmp_path / "data"), "backtest", "--archive", str(tmp_path / "archive"),
         "--from", iso[0], "--to", iso[1], "--set", "velocity.threshold=5", "--set", "geo.window_minutes=5",
         "--work-dir", str(work), "--json-out", str(work / "out.json")],
        capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert f"Backtest over {len(period):,} archived orders" in proc.stdout

    defaults = load_settings(environ={}).detectors
    baseline_params = Params(
        velocity_threshold=defaults.velocity_threshold,
        velocity_window_ms=defaults.velocity_window_ms,
        device_threshold=defaults.device_sharing_threshold,
        device_window_ms=defaults.device_sharing_window_ms,
        high_value=defaults.high_value_threshold,
        geo_window_ms=defaults.geo_window_ms,
        cooldown_ms=defaults.dedup_cooldown_ms,
    )
    stricter = replace(baseline_params, velocity_threshold=5, geo_window_ms=300_000)
    baseline, candidate = (
        _stored(work / "baseline" / "fraud_alerts.db"),
        _stored(work / "candidate" / "fraud_alerts.db"),
    )
    assert baseline == expected_alerts(period, baseline_params)
    assert candidate == expected_alerts(period, stricter)
    assert len(candidate) < len(baseline)
    for kind in ("VELOCITY_FRAUD", "GEO_ANOMALY_FRAUD", "HIGH_VALUE_FRAUD", "DEVICE_SHARING_FRAUD"):
        assert sum(a[0] == kind for a in candidate) <= sum(a[0] == kind for a in baseline)

    result = orjson.loads((work / "out.json").read_bytes())
    assert result["events"] == len(period)
    assert {c["setting"] for c in result["changes"]} == {"detectors.velocity_threshold", "detectors.geo_window_ms"}
    for name, stored in (("baseline", baseline), ("candidate", candidate)):
        overall = next(r for r in result[name]["detectors"] if r["detector"] == "all")
        assert overall["alerts"] == len(stored)
    assert "baseline" in proc.stdout and "candidate" in proc.stdout
