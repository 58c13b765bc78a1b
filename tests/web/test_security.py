"""Safe by default: loopback unless told, a token beyond it on every request, and the command
that refuses to start without one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from fraudstream.web.security import DashboardRefused, allowed_hosts, check_bind, session_value
from tests.sockets import listening
from tests.web.conftest import TestClient, csrf, sample, settings_for, write

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
TOKEN = "s3cret-token-for-tests-0123"


def test_check_bind():
    check_bind("127.0.0.1", None)
    check_bind("::1", None)
    check_bind("localhost", None)
    for wide in ("0.0.0.0", "::", "192.168.1.20", "dashboard.example"):
        with pytest.raises(DashboardRefused, match="without an access token"):
            check_bind(wide, None)
        check_bind(wide, TOKEN)
    with pytest.raises(DashboardRefused, match="too short"):
        check_bind("0.0.0.0", "short")


def test_the_app_refuses_a_wide_address_without_a_token(tmp_path):
    from fraudstream.web import create_app

    with pytest.raises(DashboardRefused):
        create_app(settings_for(tmp_path, **{"dashboard.host": "0.0.0.0"}))


ROUTES = ["/", "/static/app.js", "/static/uplot.iife.min.js", "/api/alerts", "/api/alerts/x", "/api/stats",
          "/api/health", "/api/events", "/metrics"]  # fmt: skip


def test_with_a_token_every_request_needs_it(tmp_path):
    from fraudstream.web import create_app

    s = settings_for(
        tmp_path, **{"dashboard.host": "0.0.0.0", "dashboard.token": TOKEN, "dashboard.allowed_hosts": "10.0.0.5"}
    )
    write(s.db_path, sample())
    with TestClient(create_app(s), base_url="http://10.0.0.5:8050") as c:
        for path in ROUTES:
            r = c.get(path)
            assert r.status_code == 401, path
            assert "u_0" not in r.text and "fraudstream_dashboard" not in r.text  # nothing leaks
        assert c.post("/api/alerts/x/reviews", json={}).status_code == 401
        assert c.get("/api/alerts", headers={"Authorization": "Bearer wrong-token-wrong-token"}).status_code == 401
        assert c.get("/api/alerts", headers={"Authorization": f"Basic {TOKEN}"}).status_code == 401
        assert c.get("/api/alerts", cookies={"fraudstream_session": TOKEN}).status_code == 401  # not the token
        assert c.get("/?token=wrong", follow_redirects=False).status_code == 401

        bearer = {"Authorization": f"Bearer {TOKEN}"}
        assert c.get("/api/alerts", headers=bearer).json()["total"] == 41
        assert c.get("/metrics", headers=bearer).status_code == 200

        entry = c.get(f"/?token={TOKEN}", follow_redirects=False)
        assert entry.status_code == 303 and entry.headers["location"] == "/"  # the token leaves the address
        cookie = entry.headers["set-cookie"]
        # Lax: a notification's link (a cross-site navigation) arrives with the session.
        assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and TOKEN not in cookie
        assert c.cookies.get("fraudstream_session") == session_value(TOKEN)
        expected = {"/api/alerts/x": 404}  # no such alert; everything else opens
        for path in ROUTES[:-2]:  # the cookie now opens everything (but the endless event stream)
            assert c.get(path).status_code == expected.get(path, 200), path
        c.cookies.delete("fraudstream_csrf")
        page = c.get("/")
        assert "fraudstream_csrf=" in page.headers["set-cookie"] and "SameSite=Strict" in page.headers["set-cookie"]

        # An API client's Bearer header needs no CSRF token: another site's page cannot send it.
        target = c.get("/api/alerts?page_size=1", headers=bearer).json()["items"][0]["alert_id"]
        c.cookies.clear()
        verdict = {"verdict": "false_positive", "reviewer": "api"}
        r = c.post(f"/api/alerts/{target}/reviews", json=verdict, headers=bearer)
        assert r.status_code == 201, r.text


EVIL = {"Host": "evil.example"}


def test_a_request_for_another_host_is_refused(client, settings):
    """DNS rebinding: a site that points its own name at 127.0.0.1 gets nothing, writes nothing."""
    target = client.get("/api/alerts?page_size=1").json()["items"][0]["alert_id"]
    for path in ("/", "/api/alerts", "/api/alerts/" + target, "/static/app.js", "/metrics"):
        r = client.get(path, headers=EVIL)
        assert r.status_code == 400 and "u_0" not in r.text, path
    body = {"verdict": "confirmed_fraud", "reviewer": "mallory"}
    url = f"/api/alerts/{target}/reviews"
    forged = client.post(url, json=body, headers={**csrf(client), **EVIL, "Origin": "http://evil.example"})
    assert forged.status_code == 400
    assert client.get(f"/api/alerts/{target}").json()["reviews"] == []
    for host in ("127.0.0.1:8050", "localhost:8050", "[::1]:8050", "LOCALHOST"):
        assert client.get("/api/alerts", headers={"Host": host}).status_code == 200, host


def test_the_hosts_a_dashboard_answers_to(tmp_path):
    from fraudstream.web import create_app

    s = settings_for(
        tmp_path,
        **{"dashboard.public_url": "https://fraud.example.com/", "dashboard.allowed_hosts": '["proxy.internal"]'},
    )
    with TestClient(create_app(s), base_url="http://127.0.0.1:8050") as c:
        for host, status in [("fraud.example.com", 200), ("proxy.internal:443", 200), ("other.example.com", 400),
                             ("fraud.example.com.evil.example", 400), ("", 400)]:  # fmt: skip
            assert c.get("/", headers={"Host": host}).status_code == status, host
    assert allowed_hosts("::1", None) == {"127.0.0.1", "localhost", "::1"}
    assert "dash.lan" in allowed_hosts("dash.lan", None, ["a.b"]) and "a.b" in allowed_hosts("dash.lan", None, ["a.b"])
    assert "0.0.0.0" not in allowed_hosts("0.0.0.0", None)
    assert settings_for(tmp_path, **{"dashboard.allowed_hosts": "a.example, b.example"}).dashboard.allowed_hosts == [
        "a.example",
        "b.example",
    ]


def test_links_bracket_an_ipv6_address(tmp_path):
    assert settings_for(tmp_path, **{"dashboard.host": "::1", "dashboard.port": 8050}).dashboard.url == (
        "http://[::1]:8050"
    )
    assert settings_for(tmp_path, **{"dashboard.host": "::"}).dashboard.url == "http://127.0.0.1:8050"


def test_a_store_error_is_logged_not_shown(tmp_path, caplog):
    import sqlite3

    from fraudstream.web import create_app

    s = settings_for(tmp_path)
    s.db_path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(s.db_path)
    conn.execute("CREATE TABLE fraud_alerts (id INTEGER PRIMARY KEY)")  # not the store's columns
    conn.close()
    with TestClient(create_app(s), base_url="http://127.0.0.1:8050") as c:
        r = c.get("/api/alerts")
    assert r.status_code == 503 and r.json() == {"error": "the store cannot be read now: try again shortly"}
    assert "no such column" in caplog.text


def _wait_for_url(proc: subprocess.Popen) -> str:
    assert proc.stdout is not None
    line = proc.stdout.readline()  # "Dashboard: http://127.0.0.1:PORT/"
    assert line.startswith("Dashboard: "), line
    return line.split()[1]


@pytest.mark.timeout(60)
def test_the_command_refuses_without_a_token_in_one_line(tmp_path):
    env = {**os.environ, "FRAUDSTREAM_DATA_DIR": str(tmp_path)}
    env.pop("FRAUDSTREAM_DASHBOARD__TOKEN", None)
    done = subprocess.run(
        [sys.executable, "-m", "fraudstream", "dashboard", "--host", "0.0.0.0", "--port", "0"],
        capture_output=True, text=True, env=env, timeout=30,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0 and "without an access token" in done.stderr
    assert done.stdout == ""


@pytest.mark.timeout(60)
def test_the_command_serves_on_loopback_and_stops_cleanly_on_sigterm(tmp_path):
    write(tmp_path / "fraud_alerts.db", sample())
    env = {**os.environ, "FRAUDSTREAM_DATA_DIR": str(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "fraudstream", "dashboard", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        url = _wait_for_url(proc)
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(url + "api/alerts?page_size=1", timeout=5) as r:
            assert b'"total":41' in r.read()
        assert {a for a, _ in listening(proc.pid)} == {"127.0.0.1"}
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert time.monotonic() - started < 5
        assert "Dashboard stopped" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
