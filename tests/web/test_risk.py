"""The learned model's marks in the dashboard's API: every alert's risk and held_back, the
search's minimum risk, held-back filter and sort by risk, an ACCOUNT_TAKEOVER's reasons in
words, and the live feed's items."""

from __future__ import annotations

import time
from dataclasses import replace

import httpx
import orjson
import pytest

from fraudstream.web import create_app
from tests.conftest import BASE, MIN, make_order
from tests.web.conftest import (
    HOSTILE,
    LOCAL,
    TestClient,
    alert,
    sample,
    scored,
    serving,
    settings_for,
    takeover,
    write,
    write_archive,
)
from tests.web.test_events import events

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def risky_sample() -> list:
    """The sample's 41 alerts, the first ten scored (risk 0.005, 0.105, ...: the first held back),
    then two takeovers."""
    out = [scored(a, 0.005 + 0.1 * i) if i < 10 else a for i, a in enumerate(sample())]
    return [*out, takeover(BASE + 45 * MIN), takeover(BASE + 46 * MIN, user="u_ato2", risk=0.995)]


@pytest.fixture
def client(tmp_path):
    s = settings_for(tmp_path)
    write(s.db_path, risky_sample())
    with TestClient(create_app(s), base_url=LOCAL) as c:
        yield c


def test_every_alert_carries_risk_and_held_back_and_the_search_uses_them(client):
    items = client.get("/api/alerts", params={"page_size": 500}).json()["items"]
    assert len(items) == 43 and all(isinstance(a["held_back"], bool) for a in items)
    want = {a.alert_id: (a.risk, a.held_back) for a in risky_sample()}
    assert {a["alert_id"]: (a["risk"], a["held_back"]) for a in items} == want
    held = client.get("/api/alerts", params={"held_back": "only"}).json()
    assert held["total"] == 1 and held["items"][0]["risk"] == 0.005
    assert client.get("/api/alerts", params={"held_back": "hide"}).json()["total"] == 42
    high = client.get("/api/alerts", params={"min_risk": "0.9"}).json()
    assert high["total"] == 3 and all(a["risk"] >= 0.9 for a in high["items"])
    ranked = client.get("/api/alerts", params={"sort": "risk", "page_size": 13}).json()["items"]
    risks = [a["risk"] for a in ranked]
    assert risks[:12] == sorted(risks[:12], reverse=True) and risks[0] == 0.995 and risks[12] is None
    takeovers = client.get("/api/alerts", params={"type": "ACCOUNT_TAKEOVER", "min_risk": 0.99}).json()
    assert [a["user_id"] for a in takeovers["items"]] == ["u_ato2"] and takeovers["items"][0]["severity"] == "CRITICAL"


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("min_risk=2", "min_risk must be a number from 0 to 1"),
        ("min_risk=nan", "min_risk must be a number from 0 to 1"),
        ("min_risk=high", "min_risk must be a number from 0 to 1, not 'high'"),
        ("held_back=yes", "held_back must be one of hide, only"),
        ("sort=amount", "sort must be one of time, risk"),
    ],
)
def test_bad_risk_parameters_are_400_with_a_reason(client, query, reason):
    r = client.get(f"/api/alerts?{query}")
    assert r.status_code == 400 and reason in r.json()["error"]


def test_a_takeovers_record_says_why_in_words(client):
    target = client.get("/api/alerts", params={"user": "u_ato"}).json()["items"][0]
    r = client.get(f"/api/alerts/{target['alert_id']}").json()
    assert r["alert"]["risk"] == 0.97 and r["alert"]["held_back"] is False
    assert [x["text"] for x in r["reasons"]] == [
        "a device new to them",
        "3.5x their usual amount",
        "a city new to them",
    ]
    assert r["reasons"][0] == {
        "feature": "device_orders", "value": 0.0, "usual": 14.0, "raised_by": 0.41, "text": "a device new to them",
    }  # fmt: skip
    assert r["details"]["threshold"] == 0.9 and r["details"]["model"] == "test-1"
    rule = client.get("/api/alerts", params={"user": "u_0", "page_size": 500}).json()["items"]
    plain = client.get(f"/api/alerts/{rule[0]['alert_id']}").json()
    assert plain["reasons"] == [] and "risk" in plain["alert"]


def test_foreign_reasons_are_kept_as_data_or_left_out(tmp_path):
    s = settings_for(tmp_path)
    reasons = [
        {"feature": HOSTILE + "{0.__class__}", "value": 2, "usual": 1, "raised_by": 0.1},  # not a format string
        {"feature": "amount", "value": "lots", "usual": 1, "raised_by": 0.1},  # left out
        "not a reason",
    ]
    good = takeover(BASE)  # a foreign producer's details, not detectors.risk's
    write(s.db_path, [replace(good, details={**good.details, "reasons": reasons})])
    with TestClient(create_app(s), base_url=LOCAL) as c:
        target = c.get("/api/alerts").json()["items"][0]["alert_id"]
        r = c.get(f"/api/alerts/{target}").json()
    assert [x["text"] for x in r["reasons"]] == [HOSTILE + "{0.__class__} 2"]


@pytest.mark.timeout(30)
def test_the_live_feed_carries_the_marks(tmp_path):
    s = settings_for(tmp_path, **{"dashboard.push_interval_ms": 100})
    write(s.db_path, sample())  # rows 1..41
    with (
        serving(create_app(s)) as url,
        httpx.Client(base_url=url, timeout=5) as c,
        c.stream("GET", "/api/events", headers={"Last-Event-ID": "41"}) as r,
    ):
        time.sleep(0.3)  # the feed has looked once
        write(s.db_path, [scored(alert(BASE + 50 * MIN, user="u_live"), 0.01), takeover(BASE + 51 * MIN)])
        (live,) = events(r, 1)
    got = {a["user_id"]: (a["alert_type"], a["risk"], a["held_back"]) for a in orjson.loads(live["data"])}
    assert got == {"u_live": ("VELOCITY_FRAUD", 0.01, True), "u_ato": ("ACCOUNT_TAKEOVER", 0.97, False)}


def test_a_takeover_lists_the_users_orders_of_the_two_days_before(tmp_path):
    """What was usual for the customer: their own devices and cities, from the archive."""
    hour = 3_600_000
    t = BASE + 50 * hour
    usual = [make_order(t - k * 6 * hour, user="u_ato", device="d_own", amount=400.0) for k in range(1, 10)]
    trigger = make_order(t, user="u_ato", device="d_new", amount=1400.0)
    s = settings_for(tmp_path)
    write(s.db_path, [takeover(t)])
    write_archive(tmp_path, [trigger, *usual, make_order(t - hour, user="u_other")])
    with TestClient(create_app(s), base_url=LOCAL) as c:
        r = c.get(f"/api/alerts/{c.get('/api/alerts').json()['items'][0]['alert_id']}").json()
    got = r["orders"]
    assert (got["key"], got["value"], got["after"], got["until"]) == ("user_id", "u_ato", t - 48 * hour, t)
    # 6 h apart: the ones 6..42 h before and the trigger; 48 h before is outside (t - 48 h, t]
    assert [o["device_id"] for o in got["items"]] == ["d_new"] + ["d_own"] * 7 and got["total"] == 8
