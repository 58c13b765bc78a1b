from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from fraudstream.config import (
    PROFILES,
    ConfigError,
    DetectorSettings,
    Settings,
    load_settings,
    parse_set_option,
    to_toml,
)


def test_defaults_are_the_tuned_values_and_the_seed_profile_the_replaced_systems():
    s = load_settings(environ={})
    d = s.detectors
    assert (d.velocity_threshold, d.velocity_window_ms) == (3, 300_000)
    assert (d.device_sharing_threshold, d.device_sharing_window_ms) == (2, 1_800_000)
    assert (d.high_value_threshold, d.geo_window_ms, d.dedup_cooldown_ms) == (1500.0, 1_800_000, 300_000)
    seed = load_settings(environ={}, profile="seed").detectors
    assert (seed.device_sharing_threshold, seed.device_sharing_window_ms, seed.geo_window_ms) == (3, 3_600_000, 600_000)
    assert s.pipeline.out_of_orderness_ms == 5_000
    assert s.db_path == Path("data/fraud_alerts.db") and s.log_file == Path("data/app.log")


def test_precedence_file_then_env_then_flags(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('data_dir = "/srv/fs"\n[detectors]\nvelocity_threshold = 5\nhigh_value_threshold = 900.0\n')
    env = {"FRAUDSTREAM_DETECTORS__VELOCITY_THRESHOLD": "6", "FRAUDSTREAM_GENERATOR__SEED": "11"}
    s = load_settings(cfg, environ=env)
    assert s.detectors.velocity_threshold == 6
    assert s.detectors.high_value_threshold == 900.0
    assert s.generator.seed == 11
    assert s.db_path == Path("/srv/fs/fraud_alerts.db")
    s = load_settings(cfg, {"detectors.velocity_threshold": 7}, environ=env)
    assert s.detectors.velocity_threshold == 7


def test_config_file_from_environment(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[pipeline]\nout_of_orderness_ms = 100\n")
    assert load_settings(environ={"FRAUDSTREAM_CONFIG": str(cfg)}).pipeline.out_of_orderness_ms == 100


def test_settings_are_immutable():
    s = Settings()
    with pytest.raises(Exception):  # noqa: B017 - pydantic raises its own ValidationError
        s.detectors.velocity_threshold = 9  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"flags": {"detectors.velocity_threshold": "abc"}}, "detectors.velocity_threshold"),
        ({"flags": {"detectors.nope": 1}}, "unknown setting 'detectors.nope'"),
        ({"flags": {"generator.fraud_ratio": 2}}, "generator.fraud_ratio"),
        ({"environ": {"FRAUDSTREAM_PIPELINE__PARALLELISM": "0"}}, "pipeline.parallelism"),
        ({"config_file": Path("/does/not/exist.toml")}, "config file not found"),
    ],
)
def test_bad_configuration_is_one_readable_error(kwargs, message):
    kwargs.setdefault("environ", {})
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        load_settings(**kwargs)


def test_bad_toml(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[detectors\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(cfg, environ={})


def test_set_option_parsing():
    assert parse_set_option(("a.b=1", " c.d = x ")) == {"a.b": "1", "c.d": "x"}
    with pytest.raises(ConfigError):
        parse_set_option(("novalue",))


def test_secrets_are_masked_wherever_settings_are_shown():
    s = load_settings(flags={"kafka.sasl_password": "hunter2", "broker.sasl_users": '{"fraud": "s3cret"}'}, environ={})
    assert s.broker.sasl_users == {"fraud": "s3cret"}  # JSON text from --set or the environment
    shown = s.redacted()
    assert shown["kafka"]["sasl_password"] == "***"
    assert shown["broker"]["sasl_users"] == {"fraud": "***"}
    assert "hunter2" not in str(shown) and "s3cret" not in str(shown)


def test_broker_users_must_be_a_json_object():
    with pytest.raises(ConfigError, match="broker.sasl_users"):
        load_settings(flags={"broker.sasl_users": "fraud:s3cret"}, environ={})


def test_kafka_transactions_must_outlive_a_checkpoint():
    with pytest.raises(ConfigError, match="transaction_timeout_ms"):
        load_settings(flags={"kafka.transaction_timeout_ms": 30_000, "checkpoint.interval_ms": 5_000}, environ={})
    ok = load_settings(flags={"kafka.transaction_timeout_ms": 120_000}, environ={})
    assert ok.kafka.transaction_timeout_ms == 120_000
    # over a backlog checkpoints come less often: the transaction must outlive that interval too
    with pytest.raises(ConfigError, match="transaction_timeout_ms"):
        load_settings(
            flags={"kafka.transaction_timeout_ms": 30_000, "checkpoint.backlog_interval_ms": 5_000}, environ={}
        )


def test_a_backlog_is_checkpointed_less_often_but_never_more_often_than_live_orders():
    default = load_settings(environ={}).checkpoint
    assert default.interval_ms < default.backlog_interval_ms == default.longest_interval_ms
    raised = load_settings(flags={"checkpoint.interval_ms": 10_000}, environ={}).checkpoint
    assert raised.longest_interval_ms == 10_000


def test_checkpoint_and_savepoint_locations_are_uris(tmp_path):
    s = load_settings(flags={"data_dir": str(tmp_path)}, environ={})
    assert s.checkpoint_uri == (tmp_path / "checkpoints").resolve().as_uri()
    assert s.savepoint_uri == (tmp_path / "savepoints").resolve().as_uri()
    remote = load_settings(flags={"checkpoint.dir": "s3://bucket/ckpt"}, environ={})
    assert remote.checkpoint_uri == "s3://bucket/ckpt"
    assert remote.transactional_id_prefix == remote.kafka.group_id


def test_rules_have_short_names_in_overrides():
    s = load_settings(
        flags={"velocity.threshold": "5", "geo.window_minutes": "15", "device.window_ms": 60_000,
               "dedup.cooldown_minutes": 0.5, "high_value.threshold": 2000},
        environ={},
    )  # fmt: skip
    d = s.detectors
    assert (d.velocity_threshold, d.geo_window_ms, d.device_sharing_window_ms) == (5, 900_000, 60_000)
    assert (d.dedup_cooldown_ms, d.high_value_threshold) == (30_000, 2000.0)
    with pytest.raises(ConfigError, match="unknown setting 'velocity.speed'"):
        load_settings(flags={"velocity.speed": 1}, environ={})


def test_profiles_sit_under_the_file_environment_and_flags(tmp_path):
    seed = load_settings(profile="seed", environ={})
    assert seed.detectors == DetectorSettings(**{k.split(".")[1]: v for k, v in PROFILES["seed"].items()})
    assert load_settings(profile="default", environ={}) == Settings()
    from_env = load_settings(environ={"FRAUDSTREAM_PROFILE": "seed", "FRAUDSTREAM_DETECTORS__VELOCITY_THRESHOLD": "9"})
    assert from_env.detectors.velocity_threshold == 9
    assert from_env.detectors.high_value_threshold == PROFILES["seed"]["detectors.high_value_threshold"]
    with pytest.raises(ConfigError, match="unknown profile"):
        load_settings(profile="lenient", environ={})


def test_settings_written_as_toml_read_back_the_same(tmp_path):
    s = load_settings(flags={"velocity.threshold": 7, "generator.pattern_shares": '{"high_value": 1}'}, environ={})
    path = tmp_path / "s.toml"
    path.write_text(to_toml(s.model_dump(mode="json")))
    assert load_settings(path, environ={}) == s


def test_pattern_shares_are_checked():
    with pytest.raises(ConfigError, match="unknown pattern"):
        load_settings(flags={"generator.pattern_shares": '{"phishing": 1}'}, environ={})
    with pytest.raises(ConfigError, match="above 0"):
        load_settings(flags={"generator.pattern_shares": '{"high_value": 0}'}, environ={})


@pytest.mark.parametrize(
    ("bind", "reach"),
    [("127.0.0.1", "127.0.0.1"), ("0.0.0.0", "127.0.0.1"), ("::", "127.0.0.1"), ("10.1.2.3", "10.1.2.3")],
)
def test_local_clients_reach_the_job_where_it_listens(bind, reach):
    """`savepoint` and the run's failure watch call the job's REST API: on loopback unless the
    job listens on one other address only."""
    settings = load_settings(flags={"pipeline.bind_host": bind}, environ={})
    assert settings.pipeline.reach_host == reach


def test_the_documented_configuration_file_is_one_the_settings_accept(tmp_path):
    """docs/configuration.md shows a whole file: every key in it must exist and validate."""
    page = (Path(__file__).resolve().parents[1] / "docs" / "configuration.md").read_text(encoding="utf-8")
    block = re.search(r"```toml\n(.*?)```", page, re.S)
    assert block is not None
    config = tmp_path / "documented.toml"
    config.write_text(block.group(1), encoding="utf-8")
    documented = tomllib.loads(block.group(1))
    settings = load_settings(config, environ={})
    dumped = settings.model_dump(mode="json")
    for section, values in documented.items():
        if not isinstance(values, dict):
            continue
        for key, value in values.items():
            assert dumped[section][key] == value, f"{section}.{key}"


def test_notification_and_dashboard_secrets_are_masked_and_lists_come_from_text():
    settings = load_settings(
        flags={
            "notify.urls": "json://127.0.0.1:1/a?secret=1,json://127.0.0.1:2/b",
            "notify.webhook_url": "https://hooks.example/T000/B000/XXXX",
            "notify.smtp_password": "hunter2",
            "notify.severities": "HIGH, CRITICAL",
            "dashboard.token": "tok-123",
        },
        environ={},
    )
    assert settings.notify.urls == ["json://127.0.0.1:1/a?secret=1", "json://127.0.0.1:2/b"]
    assert settings.notify.severities == ["HIGH", "CRITICAL"]
    shown = str(settings.redacted())
    for secret in ("secret=1", "XXXX", "hunter2", "tok-123"):
        assert secret not in shown
    assert tomllib.loads(to_toml(settings.redacted()))["notify"]["severities"] == ["HIGH", "CRITICAL"]
    with pytest.raises(ConfigError, match="notify.severities"):
        load_settings(flags={"notify.severities": "URGENT"}, environ={})


def test_live_runs_flush_buffers_and_move_event_time_sooner_than_replays_unless_told_otherwise():
    default = load_settings(environ={})
    assert (default.buffer_timeout_ms, default.watermark_interval_ms) == (5, 50)
    replay = {"pipeline.source": "kafka", "kafka.bounded": "true"}
    slow = load_settings(flags=replay, environ={})
    assert slow.replays_backlog and (slow.buffer_timeout_ms, slow.watermark_interval_ms) == (100, 200)
    fast = load_settings(flags={**replay, "kafka.delivery": "at-least-once"}, environ={})
    assert (fast.buffer_timeout_ms, fast.watermark_interval_ms) == (5, 50)
    told = load_settings(flags={"kafka.delivery": "at-least-once", "pipeline.buffer_timeout_ms": "20"}, environ={})
    assert (told.buffer_timeout_ms, told.watermark_interval_ms) == (20, 50)
    # no transactions at least once: the timeout need not outlive a long checkpoint interval
    load_settings(flags={"kafka.delivery": "at-least-once", "checkpoint.interval_ms": "3600000"}, environ={})
    with pytest.raises(ValueError, match="must exceed"):
        load_settings(flags={"checkpoint.interval_ms": "3600000"}, environ={})
