"""The job with a risk model on the real broker: SIGKILLed after a checkpoint and `--resume`d,
it commits exactly the offline reference's alerts (rules and model, `replay_with_model`), none
twice: the features' keyed state and the scoring step recover like the rules' state."""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest

from fraudstream.config import GeneratorSettings, KafkaSettings, load_settings
from fraudstream.generator import generator_from_settings
from fraudstream.kafka.tail import alert_from_json
from fraudstream.model.file import load
from fraudstream.model.offline import replay_with_model
from fraudstream.model.score import Scorer
from tests.kafka.conftest import consume, kafka_flags, kill_hard, report, send
from tests.kafka.runs import stored_alerts
from tests.lines import in_own_session
from tests.modelkit import orders_of, tiny_model

pytestmark = pytest.mark.flink
EXE = [sys.executable, "-m", "fraudstream"]
FIRST, MORE = 2_000, 1_000
SETTINGS = {
    "checkpoint.interval_ms": 1000,
    "checkpoint.backlog_interval_ms": 1000,
    "model.takeover_risk": 0.5,
    "model.high_risk": 0.8,
    "model.critical_risk": 0.95,
    "alerts.min_risk": 0.05,
    "archive.enabled": False,
}


def _command(k: KafkaSettings, data: Path, model: Path, *extra: str) -> list[str]:
    sets = [arg for key, value in SETTINGS.items() for arg in ("--set", f"{key}={value}")]
    return [*EXE, "--data-dir", str(data), *kafka_flags(k), *sets,
            "run", "--source", "kafka", "--model", str(model), *extra]  # fmt: skip


def _fields(a) -> bytes:
    return orjson.dumps(
        {k: getattr(a, k) for k in ("alert_id", "alert_type", "severity", "risk", "held_back", "details")},
        option=orjson.OPT_SORT_KEYS,
    )


def test_a_killed_run_with_a_model_resumes_to_exactly_the_offline_alerts(kafka, tmp_path):
    model = tmp_path / "model.zip"
    tiny_model(model)
    orders = list(generator_from_settings(GeneratorSettings(seed=1515, count=FIRST + MORE)).orders(FIRST + MORE))
    settings = load_settings(
        flags={"data_dir": str(tmp_path / "ref"), "model.path": str(model), **SETTINGS}, environ={}
    )
    scorer = Scorer(load(model), settings.model.explain_top)
    expected = replay_with_model(orders_of(orders), settings, scorer)
    assert sum(a.alert_type == "ACCOUNT_TAKEOVER" for a in expected) > 5
    send(kafka, [(None, o["user_id"].encode(), orjson.dumps(o)) for o in orders[:FIRST]])
    data = tmp_path / "data"
    db = data / "fraud_alerts.db"

    with in_own_session(_command(kafka, data, model, "--start-from", "earliest"), stderr=subprocess.PIPE) as (proc, _):
        deadline = time.monotonic() + 240
        while stored_alerts(db) == 0:  # a checkpoint completed (the copier stores committed alerts)
            assert proc.poll() is None, proc.stderr.read()[-3000:]
            assert time.monotonic() < deadline, "no alert stored"
            time.sleep(0.1)
        kill_hard(proc)
    # the kill landed mid-stream: fewer alerts committed (and stored) than the first part's orders give
    stored_at_kill = stored_alerts(db)
    first_part = replay_with_model(orders_of(orders[:FIRST]), settings, scorer)
    assert 0 < stored_at_kill < len(first_part), (stored_at_kill, len(first_part))
    # the second part's orders get their features from the state the first part left
    send(kafka, [(None, o["user_id"].encode(), orjson.dumps(o)) for o in orders[FIRST:]])

    with in_own_session(_command(kafka, data, model, "--bounded", "--resume"), stderr=subprocess.PIPE) as (proc, lines):
        proc.wait(timeout=240)
        out = lines.finish()
    assert proc.returncode == 0, proc.stderr.read()[-3000:]
    assert "/chk-" in out

    alerts = [alert_from_json(v) for _, _, v in consume(kafka, kafka.alerts_topic)]
    twice = [k for k, n in Counter(a.alert_id for a in alerts).items() if n > 1]
    assert not twice, f"{len(twice)} alerts committed twice"
    assert sorted(map(_fields, alerts)) == sorted(map(_fields, expected))
    report(
        f"run with a model killed after a checkpoint; {MORE} more orders; `run --bounded --resume` | "
        f"{FIRST + MORE} orders, {len(expected)} alerts ({sum(a.alert_type == 'ACCOUNT_TAKEOVER' for a in expected)} "
        f"ACCOUNT_TAKEOVER), {stored_at_kill} of the first part's {len(first_part)} stored at the kill | lost 0, duplicated 0; every alert's risk, held_back and details = the offline reference's"
    )
