"""The command line without Flink: produce, query, config and user mistakes."""

from __future__ import annotations

import time
from dataclasses import replace

import orjson
import pytest

from fraudstream.cli.main import main
from fraudstream.detectors import HighValueDetector, VelocityDetector
from fraudstream.events import parse_record
from fraudstream.store import AlertStore
from tests.conftest import BASE, make_order


def run_cli(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_produce_is_deterministic_with_a_seed(tmp_path, capsys):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    assert run_cli(capsys, "produce", "--count", "500", "--seed", "3", "--rate", "0", "-o", str(a))[0] == 0
    code, _, err = run_cli(capsys, "produce", "--count", "500", "--seed", "3", "--rate", "0", "-o", str(b))
    assert code == 0 and "produced 500 orders" in err
    assert a.read_bytes() == b.read_bytes()
    lines = a.read_bytes().splitlines()
    assert len(lines) == 500
    assert BASE <= orjson.loads(lines[0])["event_time"] < BASE + 60_000  # seeded streams start at 2026-01-01


def test_produce_rate_limit_holds(tmp_path, capsys):
    out = tmp_path / "o.jsonl"
    started = time.monotonic()
    assert run_cli(capsys, "produce", "--count", "40", "--rate", "100", "-o", str(out), "--quiet")[0] == 0
    assert time.monotonic() - started >= 0.35


def test_a_paced_unseeded_stream_is_stamped_with_the_wall_clock(tmp_path, capsys):
    out = tmp_path / "live.jsonl"
    before = int(time.time() * 1000)
    code, _, err = run_cli(capsys, "produce", "--count", "30", "--rate", "200", "-o", str(out))
    after = int(time.time() * 1000)
    assert code == 0 and "live clock" in err
    times = [orjson.loads(line)["event_time"] for line in out.read_bytes().splitlines()]
    assert before <= times[0] and times[-1] <= after
    assert times == sorted(times) and times[-1] - times[0] >= 29 * 5 - 5  # 5 ms apart: the rate, in real time
    # A seed, or no pacing, keeps the stream's own clock.
    code, _, err = run_cli(capsys, "produce", "--count", "30", "--rate", "200", "--seed", "1", "-o", str(out))
    assert code == 0 and "live clock" not in err
    assert BASE <= orjson.loads(out.read_bytes().splitlines()[0])["event_time"] < BASE + 60_000
    code, _, err = run_cli(capsys, "produce", "--count", "3000", "--rate", "0", "-o", str(out))
    times = [orjson.loads(line)["event_time"] for line in out.read_bytes().splitlines()]
    assert times[-1] - times[0] > 3000 * 100  # about 250 ms apart in event time, made in a blink


def test_the_banner_says_whether_the_stream_is_live():
    from fraudstream.cli.app import pin_stream
    from fraudstream.cli.run_cmd import banner
    from fraudstream.config import Settings

    assert "live: stamped with the wall clock, 250,000 customers" in banner(pin_stream(Settings()))
    seeded = banner(pin_stream(Settings().with_overrides({"generator.seed": 4})))
    assert "seed=4, start=seeded default" in seeded and "wall clock" not in seeded


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--bogus"], "No such option '--bogus'"),
        (["run", "--source", "file:/no/such/file.jsonl"], "input file not found"),
        (["run", "--source", "kafak"], "unknown source 'kafak'"),
        (["--config", "/no/such.toml", "config", "show"], "config file not found"),
        (["--set", "detectors.velocity_threshold=many", "config", "show"], "detectors.velocity_threshold"),
        (["query", "--db", "/no/such.db", "stats"], "no alert database"),
        (["query", "frobnicate"], "No such command 'frobnicate'"),
        (["evaluate", "--events", "/no/such.jsonl"], "no events at /no/such.jsonl"),
        (["evaluate", "--events", "/dev/null", "--from", "yesterday"], "--from expects an ISO-8601 time"),
        (["backtest", "--archive", "/no/such/archive", "--set", "velocity.threshold=5"], "no archive at"),
        (["backtest", "--archive", "/tmp"], "nothing to try"),
        (["--profile", "lenient", "config", "show"], "'lenient' is not one of"),
        (["--set", "velocity.threshold=lots", "config", "show"], "detectors.velocity_threshold"),
    ],
)
def test_user_mistakes_get_one_readable_line(capsys, args, message):
    code, out, err = run_cli(capsys, *args)
    assert code != 0
    assert message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_config_show_reflects_every_layer(tmp_path, capsys, monkeypatch):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[detectors]\nvelocity_threshold = 5\n")
    monkeypatch.setenv("FRAUDSTREAM_DETECTORS__GEO_WINDOW_MS", "120000")
    code, out, _ = run_cli(capsys, "--config", str(cfg), "--set", "pipeline.parallelism=2", "config", "show", "--json")
    data = orjson.loads(out)
    assert code == 0
    assert data["detectors"]["velocity_threshold"] == 5
    assert data["detectors"]["geo_window_ms"] == 120000
    assert data["pipeline"]["parallelism"] == 2
    code, out, _ = run_cli(capsys, "config", "show")
    assert "[detectors]" in out and "velocity_threshold = 3" in out


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "alerts.db"
    store = AlertStore(path)
    now = int(time.time() * 1000)
    v, h = VelocityDetector(threshold=0), HighValueDetector(threshold=0)
    alerts = [v.make_alert(make_order(BASE + i, user="u_7"), f"m{i}", {}) for i in range(3)]
    alerts.append(h.make_alert(make_order(BASE + 9, user="u_8", amount=2000.0), "big", {}))
    store.write_batch([a.__class__(**{**a.to_dict(), "detected_at": now}) for a in alerts])
    store.write_batch([parse_record(b"{bad")])
    store.close()
    return path


def test_query_commands(db, capsys):
    code, out, _ = run_cli(capsys, "query", "--db", str(db), "stats")
    assert code == 0 and "Total alerts: 4" in out and "VELOCITY_FRAUD" in out and "invalid_json" in out
    code, out, _ = run_cli(capsys, "query", "--db", str(db), "--json", "stats")
    assert orjson.loads(out)["by_severity"] == [{"severity": "HIGH", "alerts": 3}, {"severity": "MEDIUM", "alerts": 1}]
    code, out, _ = run_cli(capsys, "query", "--db", str(db), "--json", "user", "u_7")
    assert [r["user_id"] for r in orjson.loads(out)] == ["u_7"] * 3
    code, out, _ = run_cli(capsys, "query", "--db", str(db), "--json", "all", "--limit", "2")
    assert len(orjson.loads(out)) == 2
    code, out, _ = run_cli(capsys, "query", "--db", str(db), "--json", "high")
    assert {r["severity"] for r in orjson.loads(out)} == {"HIGH"}
    code, out, _ = run_cli(capsys, "query", "--db", str(db), "--json", "type", "high_value_fraud")
    assert [r["user_id"] for r in orjson.loads(out)] == ["u_8"]
    code, out, _ = run_cli(capsys, "query", "--db", str(db), "type", "GEO_ANOMALY_FRAUD")
    assert code == 0 and "(none)" in out
    code, out, _ = run_cli(capsys, "query", "--db", str(db), "dead")
    assert "invalid_json" in out
    code, out, _ = run_cli(capsys, "query", "--db", str(db), "user", "u_7")
    assert "m0" in out and "m2" in out
    assert "risk" not in out and "held" not in out  # a store without the model lists as before


def test_query_shows_the_models_risk_and_filters_held_back_alerts(tmp_path, capsys):
    path = tmp_path / "alerts.db"
    store = AlertStore(path)
    v = VelocityDetector(threshold=0)
    marks = [(0.031, True), (0.912, False), (None, False)]
    alerts = [v.make_alert(make_order(BASE + i, user="u_7"), f"m{i}", {}) for i in range(3)]
    store.write_batch([replace(a, risk=r, held_back=h) for a, (r, h) in zip(alerts, marks, strict=True)])
    store.close()
    code, out, _ = run_cli(capsys, "query", "--db", str(path), "all")
    header, rule, *rows = out.splitlines()[1:]
    assert code == 0 and header.split()[:9] == [
        "alert_type", "severity", "user_id", "device_id", "transaction_id", "amount", "risk", "held", "back"
    ]  # fmt: skip
    assert [r.split()[6:8] for r in rows] == [["-", "2026-01-01"], ["0.912", "2026-01-01"], ["0.031", "yes"]]
    code, out, _ = run_cli(capsys, "query", "--db", str(path), "--json", "all", "--no-held-back")
    assert [(r["risk"], r["held_back"]) for r in orjson.loads(out)] == [(None, False), (0.912, False)]
    code, out, _ = run_cli(capsys, "query", "--db", str(path), "--json", "user", "u_7", "--held-back")
    assert [r["transaction_id"] for r in orjson.loads(out)] == [alerts[0].transaction_id]
    code, out, _ = run_cli(capsys, "query", "--db", str(path), "--json", "type", "velocity_fraud", "--min-risk", "0.5")
    assert [r["risk"] for r in orjson.loads(out)] == [0.912]
    code, out, _ = run_cli(capsys, "query", "--db", str(path), "stats")
    assert "Held back (looked normal for the customer, not notified): 1" in out
    code, _, err = run_cli(capsys, "query", "--db", str(path), "all", "--min-risk", "2")
    assert code == 2 and "--min-risk" in err


@pytest.mark.parametrize(
    "args",
    [
        ["query", "--db", "DB", "--json", "stats"],
        ["query", "stats", "--json", "--db", "DB"],
        ["query", "--json", "stats", "--db", "DB"],
        ["--data-dir", "DIR", "query", "stats", "--json"],
        ["query", "--data-dir", "DIR", "stats", "--json"],
        ["query", "stats", "--json", "--data-dir", "DIR"],
    ],
)
def test_options_work_before_and_after_the_subcommand(db, capsys, args):
    """A group's options, and the global ones, are accepted at every level of the command."""
    (db.parent / "fraud_alerts.db").write_bytes(db.read_bytes())
    args = [str(db) if a == "DB" else str(db.parent) if a == "DIR" else a for a in args]
    code, out, err = run_cli(capsys, *args)
    assert code == 0, err
    assert orjson.loads(out)["total_alerts"] == 4


def test_limit_works_before_and_after_the_subcommand_and_the_nearest_wins(db, capsys):
    for args in (["--limit", "2", "all"], ["all", "--limit", "2"], ["--limit", "3", "all", "--limit", "2"]):
        code, out, err = run_cli(capsys, "query", "--db", str(db), "--json", *args)
        assert code == 0, err
        assert len(orjson.loads(out)) == 2
    code, out, _ = run_cli(capsys, "query", "stats", "--db", str(db), "--json", "--limit", "1")
    assert orjson.loads(out)["top_users"] == [{"user_id": "u_7", "alerts": 3}]
    code, out, _ = run_cli(capsys, "query", "user", "--limit", "1", "u_7", "--db", str(db), "--json")
    assert [r["user_id"] for r in orjson.loads(out)] == ["u_7"]


def test_global_options_after_the_command(tmp_path, capsys, monkeypatch):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[detectors]\nvelocity_threshold = 5\n")
    code, out, err = run_cli(
        capsys, "--set", "pipeline.parallelism=3", "config", "show", "--json",
        "--config", str(cfg), "--set", "pipeline.parallelism=2", "--data-dir", str(tmp_path / "d"),
        "--profile", "seed",
    )  # fmt: skip
    assert code == 0, err
    data = orjson.loads(out)
    assert data["detectors"]["velocity_threshold"] == 5
    assert data["pipeline"]["parallelism"] == 2  # the later --set wins
    assert data["data_dir"] == str(tmp_path / "d")
    # An option typed after the command beats the environment, as one typed before it does.
    monkeypatch.setenv("FRAUDSTREAM_CONFIG", str(tmp_path / "missing.toml"))
    code, out, err = run_cli(capsys, "config", "show", "--json", "--config", str(cfg))
    assert code == 0, err
    code, out, err = run_cli(capsys, "--config", str(cfg), "config", "show", "--json")
    assert code == 0, err
    code, _, err = run_cli(capsys, "config", "show", "--json")
    assert code == 2 and "config file not found" in err


def test_help_says_where_options_may_go(capsys):
    code, out, _ = run_cli(capsys, "query", "stats", "--help")
    assert code == 0
    assert "Options of 'query' (accepted before or after the subcommand's name)" in out
    assert "Global options (accepted before or after the command's name)" in out
    assert "--db" in out and "--json" in out and "--limit" in out and "--data-dir" in out
    code, out, _ = run_cli(capsys, "backtest", "--help")
    assert "the candidate's" in out and out.count("--set") >= 2  # its own --set, not the global copy
    assert "SECTION.KEY=VALUE   Override any setting" not in out


def test_every_command_accepts_the_global_options():
    from fraudstream.cli.main import cli
    from fraudstream.cli.options import Group

    def leaves(group, path):
        for name, cmd in group.commands.items():
            if isinstance(cmd, Group):
                yield from leaves(cmd, [*path, name])
            else:
                yield [*path, name], cmd

    found = list(leaves(cli, []))
    assert len(found) > 15
    for path, cmd in found:
        opts = {o for p in cmd.params for o in p.opts}
        assert {"--config", "--profile", "--data-dir", "--set"} <= opts, path
        if path[0] == "query":
            assert {"--db", "--json", "--limit"} <= opts, path


def test_a_failed_job_is_reported_by_its_innermost_python_error():
    from fraudstream.cli.main import first_line

    java = (
        "An error occurred while calling o470.hasNext.\n: java.lang.RuntimeException: Failed to fetch next result\n"
        "\tat org.apache.flink.Foo.bar(Foo.java:1)\n"
        "Caused by: java.lang.RuntimeException: Error received from SDK harness for instruction 15: "
        'Traceback (most recent call last):\n  File "x.py", line 3, in f\n    a, b = c\n'
        "ValueError: too many values to unpack (expected 2)\n\n\tat org.apache.beam.Baz(Baz.java:2)\n"
    )
    assert first_line(RuntimeError(java)) == "ValueError: too many values to unpack (expected 2)"
    assert first_line(RuntimeError("x\nCaused by: java.io.IOException: disk full\n\tat a.b")) == (
        "java.io.IOException: disk full"
    )
    assert first_line(RuntimeError("plain message")) == "plain message"


def test_a_failed_job_is_one_line_even_after_flink_is_gone(tmp_path, capsys, monkeypatch):
    """A py4j error cannot say what it is once the gateway has stopped; the runner reads
    the message first, so the user still gets it in one line."""
    import fraudstream.cli.runner as runner

    gone = {"flag": False}

    class JavaError(Exception):
        def __str__(self) -> str:
            if gone["flag"]:
                raise ConnectionError("Gateway is not connected.")
            return "An error occurred\nCaused by: java.lang.IllegalStateException: the sink is broken"

    def broken_job(settings, spec, **kwargs):
        raise JavaError()

    monkeypatch.setattr(runner, "build_job", broken_job)
    monkeypatch.setattr(runner, "stop_gateway", lambda: gone.update(flag=True))
    orders = tmp_path / "o.jsonl"
    orders.write_text("{}\n")
    code, out, err = run_cli(capsys, "--data-dir", str(tmp_path / "d"), "run", "--source", f"file:{orders}")
    assert code == 1
    assert gone["flag"]
    assert err.strip().splitlines()[-1] == (
        "fraudstream: error: java.lang.IllegalStateException: the sink is broken (details in the log)"
    )
    assert "Traceback" not in err
    log = (tmp_path / "d" / "app.log").read_text()
    assert "the job failed" in log and "the sink is broken" in log and "Traceback" in log  # details kept


@pytest.mark.parametrize(
    "args",
    [
        ["run", "--resume"],
        ["run", "--source", "FILE", "--resume"],
        ["run", "--source", "kafka", "--verbose", "--resume"],
        ["run", "--source", "kafka", "--resume", "--from-savepoint", "x"],
    ],
)
def test_runs_that_cannot_resume_are_refused_in_one_line(tmp_path, capsys, args):
    orders = tmp_path / "o.jsonl"
    orders.write_text("{}\n")
    args = [f"file:{orders}" if a == "FILE" else a for a in args]
    code, _, err = run_cli(capsys, "--data-dir", str(tmp_path / "d"), *args)
    assert code == 2
    assert "Traceback" not in err
    assert "resume" in err.splitlines()[-1] or "exclude each other" in err


def test_evaluate_scores_a_file_against_a_store_in_every_format(tmp_path, capsys):
    """Two fraud actors, one caught by one true alert, plus one false alert on an honest order."""
    events = [
        make_order(BASE, "u_1", "d_1", amount=2000.0, tx="h1").to_dict() | {"behavior": "normal"},
        make_order(BASE + 1_000, "u_2", "d_2", amount=5000.0, tx="f1").to_dict()
        | {"behavior": "high_value", "fraud_actor": "hv-1"},
        make_order(BASE + 2_000, "u_3", "d_3", tx="f2").to_dict()
        | {"behavior": "velocity_burst", "fraud_actor": "vb-1"},
    ]
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps(e) for e in events) + b"\n")
    store = AlertStore(tmp_path / "a.db")
    high = HighValueDetector(1000.0)
    alerts = [high.alert(parse_record(orjson.dumps(e))) for e in events[:2]]  # h1 is honest: a false alert
    store.write_batch(alerts, [])
    store.close()
    png, out_json = tmp_path / "q.png", tmp_path / "q.json"
    code, out, err = run_cli(
        capsys, "evaluate", "--events", str(path), "--alerts", str(tmp_path / "a.db"),
        "--chart", str(png), "--json-out", str(out_json),
    )  # fmt: skip
    assert code == 0, err
    assert "HIGH_VALUE_FRAUD" in out and "50.0%" in out  # precision 1/2, recall 1/2 overall
    data = orjson.loads(out_json.read_bytes())
    overall = next(r for r in data["detectors"] if r["detector"] == "all")
    assert (overall["alerts"], overall["true_alerts"], overall["actors_caught"], overall["actors"]) == (2, 1, 1, 2)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    code, out, _ = run_cli(capsys, "evaluate", "--events", str(path), "--alerts", str(tmp_path / "a.db"), "--json")
    assert code == 0 and orjson.loads(out)["counts"]["honest_orders"] == 1
