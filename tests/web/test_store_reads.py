"""The dashboard reads the store without writing it: read-only connections (no write lock
beside the copier, nothing created on a GET), an older store without alert_reviews, and
search pages that hold still while alerts arrive; a PostgreSQL store named without its
password, empty or unreachable."""

from __future__ import annotations

import socket
import sqlite3
import time

import pytest

from fraudstream.config import redact_url
from fraudstream.store import db, queries
from tests.conftest import BASE, MIN
from tests.web.conftest import LOCAL, TestClient, alert, csrf, sample, settings_for, write

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_gets_read_only_even_an_older_store_without_reviews(tmp_path):
    from fraudstream.web import create_app

    s = settings_for(tmp_path)
    write(s.db_path, sample())
    raw = sqlite3.connect(s.db_path)
    raw.execute("DROP TABLE alert_reviews")  # a store from before triage
    raw.commit()
    with TestClient(create_app(s), base_url=LOCAL) as c:
        assert c.get("/").status_code == 200
        writer = sqlite3.connect(s.db_path, timeout=0)
        writer.execute("BEGIN IMMEDIATE")  # the copier holds the write lock
        try:
            started = time.monotonic()
            assert c.get("/api/alerts").json()["total"] == 41
            assert c.get("/api/alerts?review=unreviewed").json()["total"] == 41
            assert c.get("/api/alerts?review=reviewed").json()["total"] == 0
            assert c.get("/api/alerts?review=confirmed_fraud").json()["total"] == 0
            target = c.get("/api/alerts?page_size=1").json()["items"][0]
            assert target["review"] is None
            one = c.get(f"/api/alerts/{target['alert_id']}").json()
            assert one["reviews"] == [] and one["alert"]["alert_id"] == target["alert_id"]
            assert c.get("/api/stats").status_code == 200
            assert c.get("/api/health").json()["store"]["alerts"] == 41
            assert time.monotonic() - started < 3  # none of them waited for the write lock
        finally:
            writer.rollback()
            writer.close()
        assert not queries.has_table(raw, "alert_reviews")  # the GETs created nothing
        raw.execute("DROP INDEX idx_alerts_device")  # a store from before the device index, too
        raw.commit()
        before = {r[0] for r in raw.execute("SELECT name FROM sqlite_master")}
        body = {"verdict": "false_positive", "reviewer": "ann"}
        r = c.post(f"/api/alerts/{target['alert_id']}/reviews", json=body, headers=csrf(c))
        assert r.status_code == 201  # a verdict makes its table
        assert c.get("/api/alerts?review=false_positive").json()["total"] == 1
    assert queries.has_table(raw, "alert_reviews")
    # the verdict added its table and index, and left the copier's schema work to the copier
    assert {r[0] for r in raw.execute("SELECT name FROM sqlite_master")} - before == {
        "alert_reviews",
        "idx_reviews_alert",
    }
    raw.close()


def test_a_read_only_connection_cannot_write(tmp_path, store_flags):
    s = settings_for(tmp_path, **store_flags)
    write(s, sample())
    conn = queries.open_read_only(s)
    try:
        with pytest.raises(db.ERRORS, match="readonly|read-only"):
            conn.execute("DELETE FROM fraud_alerts")
    finally:
        conn.close()
    with db.connect(s) as conn:
        assert queries.alert_count(conn) == 41  # nothing was deleted


def test_a_postgresql_store_named_without_its_password_empty_then_filled(tmp_path, postgres_url):
    from fraudstream.web import create_app

    s = settings_for(tmp_path, **{"store.url": postgres_url})
    password = postgres_url.split("@")[0].rsplit(":", 1)[1]
    app = create_app(s)
    with TestClient(app, base_url=LOCAL) as c:
        assert c.get("/").status_code == 200
        r = c.get("/api/alerts")  # a database the copier has not made its tables in yet
        assert r.status_code == 200 and r.json()["total"] == 0 and "no fraud_alerts table" in r.json()["store"]
        h = c.get("/api/health")
        store = h.json()["store"]
        assert store["present"] is False and store["kind"] == "postgresql"
        assert store["location"] == redact_url(postgres_url) and "***" in store["location"]
        assert password not in h.text and password not in r.text
        write(s, sample())  # the store appears: the same app now reads it
        assert c.get("/api/alerts").json()["total"] == 41
        store = app.state.dashboard.collector.collect()["store"]  # a snapshot now, not the one cached
        assert store["present"] is True and store["alerts"] == 41 and store["kind"] == "postgresql"


def test_an_unreachable_postgresql_server_is_a_503_and_said_in_health(tmp_path, caplog):
    from fraudstream.web import create_app

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    s = settings_for(tmp_path, **{"store.url": f"postgresql://fraud:s3cret-pw@127.0.0.1:{port}/alerts"})
    with TestClient(create_app(s), base_url=LOCAL) as c:
        assert c.get("/").status_code == 200
        for path in ("/api/alerts", "/api/stats", "/api/alerts/a1"):
            r = c.get(path)
            assert r.status_code == 503 and r.json() == {"error": "the store cannot be read now: try again shortly"}
        body = {"verdict": "false_positive", "reviewer": "ann"}
        assert c.post("/api/alerts/a1/reviews", json=body, headers=csrf(c)).status_code == 503
        h = c.get("/api/health").json()["store"]
        assert h["present"] is False and "does not answer" in h["message"] and h["kind"] == "postgresql"
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert f"127.0.0.1:{port}" in logged and "s3cret-pw" not in logged  # the log says where, not the password


def test_later_pages_do_not_shift_while_alerts_arrive(client, settings):
    first = client.get("/api/alerts?page_size=10").json()
    assert first["total"] == 41 and first["max_id"] == 41
    before = client.get(f"/api/alerts?page_size=10&page=2&before_id={first['max_id']}").json()
    # Newer alerts arrive (newest event time first in the order: they would push every page down).
    write(settings.db_path, [alert(BASE + (90 + i) * MIN, user=f"u_new{i}") for i in range(3)])
    after = client.get(f"/api/alerts?page_size=10&page=2&before_id={first['max_id']}").json()
    assert after["total"] == 41 and [a["alert_id"] for a in after["items"]] == [a["alert_id"] for a in before["items"]]
    assert after["max_id"] == first["max_id"]
    fresh = client.get("/api/alerts?page_size=10").json()  # a new search sees them
    assert fresh["total"] == 44 and fresh["max_id"] == 44
    assert client.get("/api/alerts?before_id=x").status_code == 400
