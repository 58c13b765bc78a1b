"""`fraudstream query` and `fraudstream store` on a PostgreSQL store (FRAUDSTREAM_STORE__URL),
and their one-line errors: no server, a wrong password, an unknown database."""

from __future__ import annotations

import socket
import time

import orjson
import pytest

from fraudstream.cli.main import main
from fraudstream.detectors import HighValueDetector, VelocityDetector
from fraudstream.events import parse_record
from fraudstream.store import AlertStore, schema
from fraudstream.store.db import Location
from tests.conftest import BASE, make_order


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def filled(postgres_url, monkeypatch, tmp_path) -> str:
    """A PostgreSQL store with 3 velocity alerts of u_7, one high-value of u_8, a dead letter;
    the environment points the commands at it."""
    monkeypatch.setenv("FRAUDSTREAM_STORE__URL", postgres_url)
    monkeypatch.setenv("FRAUDSTREAM_DATA_DIR", str(tmp_path / "data"))
    store = AlertStore(Location("postgresql", url=postgres_url))
    now = int(time.time() * 1000)
    v, h = VelocityDetector(threshold=0), HighValueDetector(threshold=0)
    alerts = [v.make_alert(make_order(BASE + i, user="u_7"), f"m{i}", {}) for i in range(3)]
    alerts.append(h.make_alert(make_order(BASE + 9, user="u_8", amount=2000.0), "big", {}))
    store.write_batch([a.__class__(**{**a.to_dict(), "detected_at": now}) for a in alerts], {("alerts", 0): (None, 4)})
    store.write_batch([parse_record(b"{bad")])
    store.close()
    return postgres_url


def test_query_reads_a_postgresql_store(filled, capsys):
    code, out, _ = run(capsys, "query", "stats")
    assert code == 0 and "Total alerts: 4" in out and "VELOCITY_FRAUD" in out and "invalid_json" in out
    code, out, _ = run(capsys, "query", "--json", "stats")
    data = orjson.loads(out)
    assert data["by_severity"] == [{"severity": "HIGH", "alerts": 3}, {"severity": "MEDIUM", "alerts": 1}]
    assert data["alerts_last_hour"] == 4 and data["held_back"] == 0
    code, out, _ = run(capsys, "query", "--json", "user", "u_7")
    assert [r["user_id"] for r in orjson.loads(out)] == ["u_7"] * 3
    code, out, _ = run(capsys, "query", "--json", "all", "--limit", "2", "--no-held-back")
    assert [r["event_time"] for r in orjson.loads(out)] == [BASE + 9, BASE + 2]
    code, out, _ = run(capsys, "query", "--json", "type", "high_value_fraud")
    assert [r["user_id"] for r in orjson.loads(out)] == ["u_8"]
    code, out, _ = run(capsys, "query", "--json", "all", "--held-back")
    assert orjson.loads(out) == []
    code, out, _ = run(capsys, "query", "dead")
    assert code == 0 and "invalid_json" in out


def test_store_status_and_migrate(filled, capsys):
    code, out, _ = run(capsys, "store", "status", "--json")
    data = orjson.loads(out)
    assert code == 0 and data["kind"] == "postgresql" and data["version"] == schema.LATEST
    assert data["rows"]["fraud_alerts"] == 4 and data["rows"]["dead_letters"] == 1
    assert data["positions"] == [{"topic": "alerts", "partition": 0, "next_offset": 4}]
    assert "***" in data["store"] and data["copier"] is None
    code, out, _ = run(capsys, "store", "migrate")
    assert code == 0 and f"schema version {schema.LATEST}, up to date" in out


def test_store_migrate_creates_a_new_store_of_either_kind(store_flags, monkeypatch, capsys):
    for key, value in store_flags.items():
        monkeypatch.setenv("FRAUDSTREAM_" + key.upper().replace(".", "__"), value)
    code, out, _ = run(capsys, "store", "status")
    assert code == 0 and "'fraudstream store migrate' creates it" in out
    code, out, _ = run(capsys, "store", "migrate")
    assert code == 0 and f"schema version 0 -> {schema.LATEST}" in out
    code, out, _ = run(capsys, "store", "status")
    assert f"Schema version: {schema.LATEST}" in out and "fraud_alerts 0" in out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_one_line_errors(postgres_server, postgres_url, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("FRAUDSTREAM_DATA_DIR", str(tmp_path))
    host = f"127.0.0.1:{postgres_server.port}"
    cases = {
        "password authentication failed": postgres_url.replace(postgres_server.password, "wrong"),
        "does not exist: create the database": postgres_url.rsplit("/", 1)[0] + "/no_such_db",
        "Connection refused": postgres_url.replace(host, f"127.0.0.1:{_free_port()}"),
    }
    for why, url in cases.items():
        monkeypatch.setenv("FRAUDSTREAM_STORE__URL", url)
        for command in (("query", "stats"), ("store", "status"), ("store", "migrate")):
            code, out, err = run(capsys, *command)
            assert code == 1 and why in err and len(err.strip().splitlines()) == 1, (command, err)
            assert "wrong" not in err and postgres_server.password not in err  # passwords masked
