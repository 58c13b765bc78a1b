"""The dashboard's rules panel and proposals, through the app (no browser): without a broker
the panel says so and the rest works; proposing needs the rules token (disabled without one) on
top of the CSRF rules, and a bad key is refused with its message; against the session broker,
the versions in force and their history (an invalid message listed as rejected), and one
proposal with a zero-hour trial ("no backtest ran") confirmed and published."""

from __future__ import annotations

import importlib.util
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from fraudstream.config import Settings
from fraudstream.rules.model import Limits, RuleSet
from fraudstream.sockets import free_port
from tests.web.conftest import HOSTILE, TestClient, _client, csrf, sample, settings_for, write

TOKEN = "rules-token-for-tests-0123456789"


def _settings(tmp_path: Path, **more: object) -> Settings:
    s = settings_for(tmp_path, **{"dashboard.push_interval_ms": 100, **more})
    write(s.db_path, sample())
    return s


@pytest.fixture
def no_broker(tmp_path: Path) -> Iterator[TestClient]:
    """A dashboard whose broker address answers nothing (a closed port), proposing enabled."""
    s = _settings(
        tmp_path,
        **{"dashboard.rules_token": TOKEN, "kafka.bootstrap_servers": f"127.0.0.1:{free_port('127.0.0.1')}"},
    )
    yield from _client(s)


@pytest.mark.slow  # a read that waits for the missing broker (3 s)
def test_without_a_broker_the_panel_says_so_and_proposals_are_guarded(no_broker, tmp_path):
    c = no_broker
    started = time.monotonic()
    r = c.get("/api/rules").json()
    assert r["state"] == "unavailable" and "cannot be read" in r["message"] and r["proposing"] is True
    assert time.monotonic() - started < 12
    assert [i["key"] for i in r["settings"]["items"]][:2] == ["velocity.enabled", "velocity.threshold"]
    assert c.get("/api/alerts").json()["total"] == len(sample())  # the rest of the dashboard works

    def post(body: dict, token: str | None = TOKEN, headers: dict | None = None):
        h = {**csrf(c), **(headers or {})}
        if token is not None:
            h["X-Rules-Token"] = token
        return c.post("/api/rules/proposals", json=body, headers=h)

    change = {"changes": "velocity.threshold=5", "comment": "tighter", "author": "Asha", "hours": 0}
    # No token, a wrong one (header or body): refused, nothing started.
    assert post(change, token=None).status_code == 403
    wrong = post(change, token="x" * len(TOKEN))
    assert wrong.status_code == 403 and "rules token" in wrong.json()["error"]
    assert post({**change, "rules_token": "nope"}, token=None).status_code == 403
    # The dashboard's own CSRF rule comes first.
    no_csrf = c.post("/api/rules/proposals", json=change, headers={"X-Rules-Token": TOKEN})
    assert no_csrf.status_code == 403 and "CSRF" in no_csrf.json()["error"]
    # A bad key, a bad value: refused with the model's message, before any broker is asked.
    bad = post({**change, "changes": "velocity.treshold=5"})
    assert bad.status_code == 400 and "unknown rule setting 'velocity.treshold'" in bad.json()["error"]
    too_wide = post({**change, "changes": "velocity.window_minutes=600"})
    assert too_wide.status_code == 400 and "wider than" in too_wide.json()["error"]
    assert post({**change, "changes": "velocity.threshold"}).json()["error"].startswith("say each change as KEY=VALUE")
    assert "your name" in post({**change, "author": " "}).json()["error"]
    # A valid change with the right token (in the body this time): the topic cannot be read, said in one line.
    down = post({**change, "rules_token": TOKEN}, token=None)
    assert down.status_code == 503 and "cannot be read" in down.json()["error"]
    assert (
        c.post("/api/rules/proposals/nothere/publish", json={}, headers={**csrf(c), "X-Rules-Token": TOKEN}).status_code
        == 404
    )

    # Without dashboard.rules_token, proposing is disabled, whatever is sent.
    off = settings_for(tmp_path / "off")
    for client in _client(off):
        r2 = client.post("/api/rules/proposals", json=change, headers={**csrf(client), "X-Rules-Token": TOKEN})
        assert r2.status_code == 403 and "disabled" in r2.json()["error"]


@pytest.mark.slow
@pytest.mark.skipif(
    not all(importlib.util.find_spec(f"fraudstream.rules.{m}") for m in ("topic", "trial")),
    reason="needs fraudstream.rules.topic and .trial",
)
def test_the_panel_reads_the_rules_topic_and_a_proposal_is_backtested_then_published(broker, kafka, tmp_path):
    from fraudstream.kafka.clients import connect_admin, ensure_topics
    from fraudstream.rules import topic
    from tests.kafka.conftest import send

    rules_topic = f"rules-{uuid.uuid4().hex[:8]}"
    s = _settings(tmp_path, **{"dashboard.rules_token": TOKEN, "rules.topic": rules_topic})
    s = s.model_copy(update={"kafka": kafka})
    ensure_topics(connect_admin(kafka), {rules_topic: 1})
    limits = Limits.from_settings(s)
    v1 = RuleSet.from_settings(s).with_changes({"velocity.threshold": "5"}, limits, author="ops", comment=HOSTILE)
    v2 = v1.with_changes({"geo.enabled": "false"}, limits, author="ops", comment="geo off")
    send(kafka, [(0, b"1", v1.to_bytes()), (0, b"x", b"{not json"), (0, b"2", v2.to_bytes())], topic=rules_topic)

    for c in _client(s):
        r = c.get("/api/rules").json()
        assert r["state"] == "ok", r
        cur = r["current"]
        assert cur["version"] == 2 and cur["author"] == "ops" and cur["comment"] == "geo off"
        changed = {i["key"]: (i["value"], i["settings"]) for i in cur["items"] if i["differs"]}
        assert changed == {"velocity.threshold": (5.0, 3.0), "geo.enabled": (False, True)}
        assert [v["version"] for v in r["history"]] == [2, 1]
        assert r["history"][1]["comment"] == HOSTILE and r["history"][1]["changes"] == ["velocity.threshold 3 -> 5"]
        assert [x["offset"] for x in r["rejected"]] == [1] and "JSON" in r["rejected"][0]["reason"]

        h = {**csrf(c), "X-Rules-Token": TOKEN}
        body = {"changes": "device_sharing.severity=LOW", "comment": "calmer", "author": "Asha", "hours": 0}
        made = c.post("/api/rules/proposals", json=body, headers=h)
        assert made.status_code == 202, made.json()
        p = made.json()["proposal"]
        assert p["candidate"]["version"] == 3 and p["candidate"]["changes"] == [
            "device_sharing.severity CRITICAL -> LOW"
        ]
        assert c.post(f"/api/rules/proposals/{p['id']}/publish", json={}, headers=csrf(c)).status_code == 403
        deadline = time.monotonic() + 60
        while p["state"] == "running":
            assert time.monotonic() < deadline, "the trial did not finish"
            time.sleep(0.2)
            p = c.get(f"/api/rules/proposals/{p['id']}").json()["proposal"]
        assert p["state"] == "done", p
        assert topic.current(s).version == 2  # nothing published before the confirmation
        done = c.post(f"/api/rules/proposals/{p['id']}/publish", json={}, headers=h)
        assert done.status_code == 200 and done.json()["proposal"]["state"] == "published"
        now = topic.current(s)
        assert (now.version, now.author, now.rules["device_sharing"].severity) == (3, "dashboard:Asha", "LOW")
        assert c.get("/api/rules").json()["current"]["version"] == 3  # the cache was dropped
        again = c.post(f"/api/rules/proposals/{p['id']}/publish", json={}, headers=h)
        assert again.status_code == 409


def test_changes_as_text_or_object_and_the_token_check():
    from fraudstream.rules.model import RuleError
    from fraudstream.web.rules import parse_changes, token_ok

    assert parse_changes("velocity.threshold=5\n geo.enabled=off, model.min_risk=0.3") == {
        "velocity.threshold": "5",
        "geo.enabled": "off",
        "model.min_risk": "0.3",
    }
    assert parse_changes({"velocity.threshold": 5}) == {"velocity.threshold": 5}
    for bad in ("", "velocity.threshold", "=5", {}, {"velocity.threshold": [5]}, [("a", 1)]):
        with pytest.raises(RuleError):
            parse_changes(bad)
    assert token_ok(TOKEN, TOKEN) and not token_ok(TOKEN[:-1], TOKEN) and not token_ok(None, TOKEN)
    assert not token_ok("", None) and not token_ok("", "")


def test_a_short_rules_token_is_refused_at_start(tmp_path):
    from fraudstream.web import create_app
    from fraudstream.web.security import DashboardRefused

    with pytest.raises(DashboardRefused, match="rules_token is too short"):
        create_app(settings_for(tmp_path, **{"dashboard.rules_token": "short"}))
