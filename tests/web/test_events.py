"""The live feed over a real server: alerts events carry their newest row's id, and a page
that reconnects with Last-Event-ID first gets what it missed (on SQLite and PostgreSQL);
connections are capped."""

from __future__ import annotations

import time

import httpx
import orjson
import pytest

from fraudstream.web import create_app
from tests.conftest import BASE, MIN
from tests.web.conftest import alert, sample, serving, settings_for, write

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def events(response: httpx.Response, wanted: int, timeout_s: float = 5.0) -> list[dict]:
    """The first `wanted` alerts events of a stream, each as {"id", "data"}."""
    found: list[dict] = []
    current: dict = {}
    deadline = time.monotonic() + timeout_s
    for line in response.iter_lines():
        assert time.monotonic() < deadline, f"only {len(found)} alerts events in {timeout_s} s"
        if not line:
            if current.get("event") == "alerts":
                found.append(current)
                if len(found) == wanted:
                    return found
            current = {}
            continue
        key, _, value = line.partition(":")
        current[key] = value.strip()
    raise AssertionError("the stream ended")


@pytest.mark.timeout(30)
def test_a_reconnecting_page_gets_what_it_missed_once(tmp_path, store_flags):
    s = settings_for(tmp_path, **{"dashboard.push_interval_ms": 100, **store_flags})
    write(s, sample())  # rows 1..41
    with serving(create_app(s)) as url, httpx.Client(base_url=url, timeout=5) as c:
        with c.stream("GET", "/api/events", headers={"Last-Event-ID": "38"}) as r:
            assert r.status_code == 200
            time.sleep(0.3)  # the feed has looked once (the alerts before it are not news)
            write(s, [alert(BASE + 50 * MIN, user="u_live")])  # row 42
            missed, live = events(r, 2)
        assert missed["id"] == "41" and [a["id"] for a in orjson.loads(missed["data"])] == [41, 40, 39]
        assert live["id"] == "42" and [a["user_id"] for a in orjson.loads(live["data"])] == ["u_live"]
        with c.stream("GET", "/api/events", headers={"Last-Event-ID": "42"}) as r:
            write(s, [alert(BASE + 51 * MIN, user="u_next")])  # row 43: nothing before it again
            (only,) = events(r, 1)
        assert only["id"] == "43" and [a["id"] for a in orjson.loads(only["data"])] == [43]


@pytest.mark.timeout(10)
def test_live_feed_connections_are_capped(tmp_path):
    from tests.web.conftest import LOCAL, TestClient

    s = settings_for(tmp_path, **{"dashboard.max_sse_clients": 2})
    app = create_app(s)
    with TestClient(app, base_url=LOCAL) as c:
        feed = app.state.dashboard.feed
        held = [feed.subscribe(), feed.subscribe()]  # two pages already connected
        r = c.get("/api/events")
        assert r.status_code == 503 and "too many" in r.json()["error"]
        for q in held:
            feed.unsubscribe(q)


@pytest.mark.timeout(30)
def test_a_new_event_source_asks_with_after_and_a_bad_one_is_a_400(tmp_path):
    """A browser's EventSource gives up for good on a 503 or 401; the page then makes a new one,
    which cannot send Last-Event-ID: `?after=` says the same."""
    s = settings_for(tmp_path, **{"dashboard.push_interval_ms": 100})
    write(s.db_path, sample())  # rows 1..41
    with serving(create_app(s)) as url, httpx.Client(base_url=url, timeout=5) as c:
        with c.stream("GET", "/api/events?after=39") as r:
            assert r.status_code == 200
            (missed,) = events(r, 1)
        assert missed["id"] == "41" and [a["id"] for a in orjson.loads(missed["data"])] == [41, 40]
        bad = c.get("/api/events?after=-1")
        assert bad.status_code == 400 and "after" in bad.json()["error"]
        assert c.get("/api/events?since=1").status_code == 400  # no other parameter
