"""The dashboard's JSON API in-process (Starlette's TestClient over the ASGI app): filters,
paging, bad parameters, triage and its CSRF defence, metrics, and a store that is missing.
The search, an alert's record, triage and the stats run on SQLite and on PostgreSQL (`any_client`)."""

from __future__ import annotations

import sqlite3

import pytest

from fraudstream.store import db
from fraudstream.store.reviews import history
from tests.conftest import BASE, MIN
from tests.web.conftest import HOSTILE, LOCAL, TestClient, alert, csrf, settings_for, write

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_search_filters_and_pages(any_client):
    client = any_client
    everything = client.get("/api/alerts", params={"page_size": 500}).json()
    assert everything["total"] == 41 and len(everything["items"]) == 41
    times = [a["event_time"] for a in everything["items"]]
    assert times == sorted(times, reverse=True)  # newest first
    assert all(a["review"] is None for a in everything["items"])

    r = client.get("/api/alerts", params={"user": "u_0"}).json()
    assert r["total"] == 8 and {a["user_id"] for a in r["items"]} == {"u_0"}
    r = client.get("/api/alerts", params={"device": "d_1", "type": "VELOCITY_FRAUD"}).json()
    assert {(a["device_id"], a["alert_type"]) for a in r["items"]} == {("d_1", "VELOCITY_FRAUD")} and r["total"] == 3
    r = client.get("/api/alerts", params={"severity": "critical"}).json()  # any case
    assert r["total"] == 13 and {a["severity"] for a in r["items"]} == {"CRITICAL"}
    r = client.get("/api/alerts", params={"since": BASE + 10 * MIN, "until": BASE + 20 * MIN}).json()
    assert r["total"] == 10 and all(BASE + 10 * MIN <= a["event_time"] < BASE + 20 * MIN for a in r["items"])
    iso = client.get("/api/alerts", params={"since": "2026-01-01T00:10:00Z", "until": "2026-01-01T01:20:00+01:00"})
    assert iso.json()["total"] == 10
    r = client.get("/api/alerts", params={"user": "u_0' OR '1'='1"}).json()
    assert r["total"] == 0  # a bound parameter, not SQL

    pages = [client.get("/api/alerts", params={"page": p, "page_size": 15}).json() for p in (1, 2, 3, 4)]
    assert [len(p["items"]) for p in pages] == [15, 15, 11, 0]
    assert [a["alert_id"] for p in pages for a in p["items"]] == [a["alert_id"] for a in everything["items"]]
    assert pages[1]["page"] == 2 and pages[1]["page_size"] == 15 and pages[1]["total"] == 41


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("page=0", "page must be between"),
        ("page=two", "page must be a whole number"),
        ("page_size=501", "page_size must be between"),
        ("severity=URGENT", "severity must be one of"),
        ("type=drop table", "type must be an alert type"),
        ("review=maybe", "review must be one of"),
        ("since=yesterday", "since must be epoch milliseconds or an ISO 8601 time"),
        ("since=2026-01-01T00:00:00", "needs a time zone"),
        ("since=2000&until=1000", "since must be before until"),
        ("user=" + "x" * 201, "user longer than 200"),
        ("colour=red", "unknown parameter 'colour'"),
        ("user=a&user=b", "given more than once"),
    ],
)
def test_bad_parameters_are_400_with_a_reason(client, query, reason):
    r = client.get(f"/api/alerts?{query}")
    assert r.status_code == 400 and reason in r.json()["error"]


def test_other_bad_requests(client):
    assert client.get("/api/stats?bucket_ms=1000&since=0&until=99999999999").status_code == 400
    assert client.get("/api/stats?top=0").json()["error"] == "top must be between 1 and 100"
    assert client.get("/api/health?x=1").status_code == 400
    missing = client.get("/api/alerts/nope")
    assert missing.status_code == 404 and "no alert" in missing.json()["error"]
    assert client.get("/api/nothing").json() == {"error": "Not Found"}


def test_an_alerts_full_record(any_client):
    client = any_client
    ids = {a["transaction_id"]: a["alert_id"] for a in client.get("/api/alerts?page_size=500").json()["items"]}
    target = next(a for a in client.get("/api/alerts?user=u_0&type=VELOCITY_FRAUD").json()["items"])
    r = client.get(f"/api/alerts/{target['alert_id']}").json()
    assert r["alert"]["alert_id"] == target["alert_id"]
    assert r["details"] == {"order_count": 4}
    assert r["order"] == {k: target[k] for k in ("transaction_id", "user_id", "device_id", "amount", "event_time")}
    assert r["reviews"] == []
    assert r["archive"] == "no archive" and r["orders"]["items"] == []  # the store's summary only
    earlier_user = [a["event_time"] for a in r["same_user"]]
    assert earlier_user and all(t < target["event_time"] for t in earlier_user)
    assert {a["user_id"] for a in r["same_user"]} == {"u_0"} and len(earlier_user) == sum(
        1 for a in client.get("/api/alerts?user=u_0").json()["items"] if a["event_time"] < target["event_time"]
    )
    assert all(a["device_id"] == target["device_id"] for a in r["same_device"])
    related = {a["alert_id"] for a in r["same_user"] + r["same_device"]}
    assert related and related <= set(ids.values())  # every related alert is a real, stored one


def test_triage_stores_verdicts_newest_in_force(any_client, any_settings):
    client = any_client
    target = client.get("/api/alerts?page_size=1").json()["items"][0]["alert_id"]
    url = f"/api/alerts/{target}/reviews"
    first = client.post(
        url, json={"verdict": "confirmed_fraud", "note": "card reported", "reviewer": "ann"}, headers=csrf(client)
    )
    assert first.status_code == 201 and first.json()["review"]["verdict"] == "confirmed_fraud"
    second = client.post(url, json={"verdict": "false_positive", "reviewer": " bob "}, headers=csrf(client))
    assert second.status_code == 201
    conn = db.connect(any_settings)
    assert [(r.verdict, r.reviewer, r.note) for r in history(conn, target)] == [
        ("false_positive", "bob", None),
        ("confirmed_fraud", "ann", "card reported"),
    ]
    conn.close()
    item = client.get("/api/alerts?page_size=1").json()["items"][0]
    assert item["review"]["verdict"] == "false_positive"
    assert client.get("/api/alerts?review=false_positive").json()["total"] == 1
    assert client.get("/api/alerts?review=confirmed_fraud").json()["total"] == 0
    assert client.get("/api/alerts?review=unreviewed").json()["total"] == 40
    assert [r["reviewer"] for r in client.get(f"/api/alerts/{target}").json()["reviews"]] == ["bob", "ann"]


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        ({"verdict": "maybe", "reviewer": "ann"}, 400, "verdict must be one of"),
        ({"verdict": "false_positive", "reviewer": "  "}, 400, "a reviewer is required"),
        ({"verdict": "false_positive"}, 400, "must be text"),
        ({"verdict": "false_positive", "reviewer": "ann", "note": "n" * 2001}, 400, "note longer than"),
        (["false_positive"], 400, "must be a JSON object"),
    ],
)
def test_invalid_verdicts_are_400(client, body, status, reason):
    target = client.get("/api/alerts?page_size=1").json()["items"][0]["alert_id"]
    r = client.post(f"/api/alerts/{target}/reviews", json=body, headers=csrf(client))
    assert r.status_code == status and reason in r.json()["error"]


def test_a_verdict_on_an_unknown_alert_is_404(client):
    r = client.post(
        "/api/alerts/nope/reviews", json={"verdict": "false_positive", "reviewer": "a"}, headers=csrf(client)
    )
    assert r.status_code == 404


def test_writes_without_the_csrf_token_or_from_elsewhere_are_refused(client, settings):
    target = client.get("/api/alerts?page_size=1").json()["items"][0]["alert_id"]
    url, body = f"/api/alerts/{target}/reviews", {"verdict": "confirmed_fraud", "reviewer": "mallory"}
    assert client.post(url, json=body).status_code == 403  # no header
    assert client.post(url, json=body, headers={"X-CSRF-Token": "guess"}).status_code == 403
    other_site = {**csrf(client), "Origin": "https://evil.example"}
    assert client.post(url, json=body, headers=other_site).status_code == 403
    cross = {**csrf(client), "Sec-Fetch-Site": "cross-site"}
    assert client.post(url, json=body, headers=cross).status_code == 403
    form = client.post(url, content="verdict=confirmed_fraud", headers={**csrf(client), "Content-Type": "text/plain"})
    assert form.status_code == 415
    conn = sqlite3.connect(settings.db_path)
    assert conn.execute("SELECT COUNT(*) FROM alert_reviews").fetchone()[0] == 0
    conn.close()


def test_hostile_text_comes_back_as_data_and_the_page_holds_none(client):
    r = client.get("/api/alerts", params={"user": HOSTILE}).json()
    assert r["total"] == 1 and r["items"][0]["user_id"] == HOSTILE and r["items"][0]["device_id"] == HOSTILE
    page = client.get("/")
    assert "onerror" not in page.text and "<script>" not in page.text  # a static page: no data in it
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    js = client.get("/static/app.js").text
    assert "innerHTML" not in js and "insertAdjacentHTML" not in js and "eval(" not in js


def test_stats_count_by_type_and_severity_over_time(any_client):
    client = any_client
    s = client.get("/api/stats").json()
    assert s["bucket_ms"] == 60_000 and len(s["buckets"]) == 42
    assert sum(sum(v) for v in s["by_type"].values()) == 41
    assert {k: sum(v) for k, v in s["by_severity"].items()} == {"CRITICAL": 13, "HIGH": 14, "MEDIUM": 14}
    assert s["by_type"]["VELOCITY_FRAUD"][0] == 1 and s["by_type"]["VELOCITY_FRAUD"][1] == 0
    assert s["top_users"][0] == {"key": "u_0", "alerts": 8}
    assert len(s["top_devices"]) == 5 and sum(d["alerts"] for d in s["top_devices"]) == 41
    narrow = client.get("/api/stats", params={"since": BASE, "until": BASE + 10 * MIN, "bucket_ms": 300_000}).json()
    assert narrow["buckets"] == [BASE, BASE + 5 * MIN]
    assert sum(sum(v) for v in narrow["by_type"].values()) == 10


def test_metrics_of_the_dashboard_itself(client):
    client.get("/api/alerts")
    client.get("/api/alerts?page=x")
    client.get("/api/alerts/some-id")
    text = client.get("/metrics").text
    assert 'fraudstream_dashboard_requests_total{code="200",route="/api/alerts"}' in text
    assert 'fraudstream_dashboard_requests_total{code="400",route="/api/alerts"} 1.0' in text
    assert 'route="/api/alerts/{alert_id}"' in text and "some-id" not in text  # templates, not paths
    assert "fraudstream_dashboard_sse_clients 0.0" in text
    client.get("/api/health")
    assert "fraudstream_store_alerts 41.0" in client.get("/metrics").text


def test_without_a_store_the_page_loads_and_says_so(tmp_path):
    from fraudstream.web import create_app

    s = settings_for(tmp_path / "empty")
    with TestClient(create_app(s), base_url=LOCAL) as c:
        assert c.get("/").status_code == 200
        r = c.get("/api/alerts").json()
        assert r["total"] == 0 and "no alert database" in r["store"]
        assert c.get("/api/stats").json()["buckets"] == []
        h = c.get("/api/health").json()
        assert h["store"]["present"] is False and "no store yet" in h["store"]["message"]
        assert h["job"]["running"] is False and "no job is running" in h["job"]["message"]
        assert c.get("/api/alerts/x").status_code == 404
        write(s.db_path, [alert(BASE)])  # the store appears: the same app now reads it
        assert c.get("/api/alerts").json()["total"] == 1
