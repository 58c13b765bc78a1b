"""The dashboard in a real headless Chromium (Debian's, driven by Playwright): it loads without
console errors, draws its charts, shows a stored alert live, searches and pages, stores a
verdict, and shows a script-like user id as text that runs nothing (and, on a PostgreSQL
store, names it, shows a new alert live and stores a verdict there). Keeps a screenshot."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import pytest
from playwright.sync_api import expect

from fraudstream.cli.main import main
from fraudstream.config import Settings
from fraudstream.store import AlertStore, db
from fraudstream.store.reviews import reviewed_alerts
from fraudstream.store.sqlite import connect
from tests.conftest import BASE, MIN, make_order
from tests.web.conftest import HOSTILE, alert, sample, scored, serving, settings_for, takeover, write, write_archive

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "build" / "artifacts"
PAGE_SIZE = 15

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium"),
]


def archived_orders():
    """The orders of the sample's alerts, as the job would have archived them."""
    return [make_order(a.event_time, user=a.user_id, device=a.device_id, amount=a.amount) for a in sample()]


@dataclass
class Served:
    url: str
    settings: Settings

    def add(self, *alerts) -> None:
        store = AlertStore(self.settings.db_path)
        try:
            store.write_batch(list(alerts))
        finally:
            store.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[Served]:
    """The dashboard served by uvicorn from a thread, on a free loopback port."""
    from fraudstream.web import create_app

    data = tmp_path_factory.mktemp("dashboard")
    s = settings_for(data, **{"dashboard.push_interval_ms": 200, "dashboard.page_size": PAGE_SIZE})
    write(s.db_path, sample())
    write_archive(data, archived_orders())
    with serving(create_app(s)) as url:
        yield Served(url, s)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


@dataclass
class Page:
    page: object
    errors: list[str]
    dialogs: list[str]


@pytest.fixture
def page(browser, served) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    p = context.new_page()
    seen = Page(p, [], [])
    p.on("console", lambda m: seen.errors.append(m.text) if m.type == "error" else None)
    p.on("pageerror", lambda e: seen.errors.append(str(e)))

    def dialog(d) -> None:
        seen.dialogs.append(d.message)
        with contextlib.suppress(Exception):
            d.dismiss()

    p.on("dialog", dialog)
    p.goto(served.url + "/")
    p.wait_for_selector("#conn.up", timeout=5_000)  # the event stream is open
    p.wait_for_selector("#results tbody tr", timeout=5_000)
    try:
        yield seen
    finally:
        context.close()


def painted(p, selector: str) -> int:
    """Pixels of the chart's canvas that are not blank."""
    return p.evaluate(
        """(sel) => { const c = document.querySelector(sel); if (!c) return 0;
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0;
        for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n; }""",
        selector,
    )


def test_loads_draws_charts_and_shows_a_new_alert_live(page, served):
    p = page.page
    p.wait_for_selector("#chart-type canvas")
    assert painted(p, "#chart-type canvas") > 500 and painted(p, "#chart-severity canvas") > 500
    legend = p.locator("#chart-severity .u-legend").inner_text()
    assert "CRITICAL" in legend and "MEDIUM" in legend
    assert p.locator("#top-users li").first.inner_text().startswith("u_0")
    assert "not running" in p.locator("#h-job").inner_text()  # no job: said plainly
    assert p.locator("#h-dead .v").inner_text() == "0"

    fresh = alert(BASE + 50 * MIN, user="u_live", device="d_live", kind="device")
    started = time.monotonic()
    served.add(fresh)
    p.locator("#feed li", has_text="u_live").wait_for(timeout=2_000)
    shown_after = time.monotonic() - started
    item = p.locator("#feed li").first
    assert "u_live" in item.inner_text() and "sev-CRITICAL" in item.get_attribute("class")
    print(f"stored -> on the page: {shown_after:.2f} s")
    assert page.errors == [] and page.dialogs == []
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    served.add(*[
        scored(alert(BASE + (51 + i) * MIN, user=f"u_{i}", device="d_9", kind="velocity"), 0.4 + 0.25 * i)
        for i in range(3)
    ])  # fmt: skip
    # The model's marks: a rule alert held back as normal for its customer, a takeover with its risk.
    served.add(scored(alert(BASE + 55 * MIN, user="u_party", kind="high_value", amount=2000.0), 0.004))
    served.add(takeover(BASE + 56 * MIN))
    p.locator("#feed li").nth(5).wait_for(timeout=2_000)
    held = p.locator("#feed li", has_text="u_party")
    assert "held" in held.get_attribute("class") and "held back: looked normal for this customer" in held.inner_text()
    assert "0.97" in p.locator("#feed li", has_text="u_ato").locator(".risk").inner_text()
    assert p.locator("#feed li", has_text="u_live").locator(".risk").inner_text() == "risk —"
    # The charts catch up (at most every 3 s): the new device is among the top ones.
    expect(p.locator("#top-devices li", has_text="d_9")).to_have_count(1, timeout=6_000)
    assert "ACCOUNT_TAKEOVER" in p.locator("#chart-type .u-legend").inner_text()
    p.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
    p.uncheck("#feed-held")
    expect(held).to_be_hidden()
    p.check("#feed-held")
    p.locator("#feed li", has_text="u_ato").click()
    p.wait_for_selector("#detail:not([hidden])")
    reasons = p.locator("#d-reasons tbody tr").all_inner_texts()
    assert [r.split("\t")[0] for r in reasons] == [
        "a device new to them",
        "3.5x their usual amount",
        "a city new to them",
    ]
    assert "0.97" in p.locator("#d-risk").inner_text() and "reasons" not in p.locator("#d-details").inner_text()
    p.click("#detail-close")
    assert page.errors == []


def test_search_and_paging(page, served):
    p = page.page
    api = p.request  # the page's own cookies
    total = api.get(served.url + "/api/alerts").json()["total"]
    pages = -(-total // PAGE_SIZE)
    assert p.locator("#page-info").inner_text() == f"page 1 of {pages} · {total} alerts"
    assert p.locator("#results tbody tr").count() == PAGE_SIZE
    p.click("#next")
    expect(p.locator("#page-info")).to_have_text(re.compile(r"^page 2 "))
    want = [a["alert_id"] for a in api.get(served.url + "/api/alerts?page=2").json()["items"]]
    rows = p.locator("#results tbody tr")
    assert [rows.nth(i).get_attribute("data-alert") for i in range(rows.count())] == want
    assert p.locator("#prev").is_enabled()

    p.fill("#search input[name=user]", "u_0")
    p.select_option("#search select[name=type]", "VELOCITY_FRAUD")
    p.click("#search button[type=submit]")
    expect(p.locator("#page-info")).to_have_text(re.compile(r"^page 1 of 1 "))
    cells = p.locator("#results tbody tr td:nth-child(4)").all_inner_texts()
    types = p.locator("#results tbody tr td:nth-child(3)").all_inner_texts()
    assert cells and set(cells) == {"u_0"} and set(types) == {"VELOCITY_FRAUD"}
    assert len(cells) == api.get(served.url + "/api/alerts?user=u_0&type=VELOCITY_FRAUD").json()["total"]
    assert page.errors == []


def test_a_triage_click_stores_a_verdict_that_evaluate_counts(page, served, capsys):
    p = page.page
    p.fill("#search input[name=user]", "u_3")
    p.click("#search button[type=submit]")
    total = p.request.get(served.url + "/api/alerts?user=u_3").json()["total"]
    # (no wait_for_function: Playwright evaluates its text with eval, which the page's CSP forbids)
    expect(p.locator("#page-info")).to_have_text(f"page 1 of 1 · {total} alerts")
    first = p.locator("#results tbody tr", has_text="u_3").first
    alert_id = first.get_attribute("data-alert")
    first.click()
    p.wait_for_selector("#detail:not([hidden])")
    shown = p.locator("#d-orders tbody tr td:nth-child(2)")  # the device's orders in the rule's window
    opened = p.request.get(served.url + f"/api/alerts/{alert_id}").json()["alert"]
    t, window = opened["event_time"], served.settings.detectors.device_sharing_window_ms
    counted = [o for o in archived_orders() if o.device_id == opened["device_id"] and t - window < o.event_time <= t]
    assert (
        "user\nu_3\n" in p.locator("#d-order").inner_text()
        and len(counted) > 1
        and shown.all_inner_texts() == [o.transaction_id for o in sorted(counted, key=lambda o: -o.event_time)]
    )
    p.click("#confirm")
    assert "reviewer" in p.locator("#d-triage-msg").inner_text()  # a name first
    p.fill("#reviewer", "Asha")
    p.dispatch_event("#reviewer", "change")
    p.fill("#d-note", "customer confirmed the card was stolen")
    p.click("#confirm")
    p.locator("#d-triage-msg", has_text="Stored").wait_for(timeout=3_000)
    assert "confirmed fraud by Asha" in p.locator("#d-reviews").inner_text()
    conn = connect(served.settings.db_path)
    try:
        row = conn.execute(
            "SELECT verdict, reviewer, note FROM alert_reviews WHERE alert_id = ?", (alert_id,)
        ).fetchone()
        assert tuple(row) == ("confirmed_fraud", "Asha", "customer confirmed the card was stolen")
        assert [v for t, v in reviewed_alerts(conn)] == ["confirmed_fraud"]  # what `evaluate --reviews` scores
    finally:
        conn.close()
    capsys.readouterr()
    assert main(["--data-dir", str(served.settings.data_dir), "evaluate", "--reviews", "--json"]) == 0
    scored = {d["detector"]: d for d in json.loads(capsys.readouterr().out)["detectors"]}
    assert scored["pooled"]["reviewed"] == 1 and scored["pooled"]["confirmed"] == 1
    assert scored["DEVICE_SHARING_FRAUD"]["confirmed"] == 1  # u_3's newest alert: a shared device
    p.click("#detail-close")
    p.locator(f"#results tbody tr[data-alert='{alert_id}'] .badge.confirmed_fraud").wait_for(timeout=3_000)
    p.reload()
    assert p.input_value("#reviewer") == "Asha"  # remembered
    assert page.errors == [] and page.dialogs == []


def test_a_script_in_a_user_id_is_shown_as_text_and_runs_nothing(page, served):
    p = page.page
    served.add(alert(BASE + 60 * MIN, user=HOSTILE, device="d_x" + HOSTILE, kind="device"))
    p.locator("#feed li", has_text=HOSTILE).wait_for(timeout=2_000)  # literally, as text
    p.fill("#search input[name=user]", HOSTILE)
    p.click("#search button[type=submit]")
    p.locator("#results tbody td", has_text=HOSTILE).first.wait_for(timeout=3_000)
    p.locator("#results tbody tr").first.click()
    p.wait_for_selector("#detail:not([hidden])")
    assert HOSTILE in p.locator("#d-order").inner_text()
    assert HOSTILE in p.locator("#d-message").inner_text()  # "Device d_x<img ...> shared", as text
    p.wait_for_timeout(500)
    assert p.locator("img").count() == 0  # no element was made from the text
    assert page.dialogs == [] and page.errors == []


def test_a_notification_link_opens_its_alert_and_the_time_filter_is_utc(browser, served):
    """A link `<url>/#/alerts/<alert id>` opens that alert, at start and on a hash change; in
    a browser far from UTC (Asia/Kolkata, +05:30) the From box still means UTC, as shown."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, timezone_id="Asia/Kolkata")
    errors: list[str] = []
    try:
        p = context.new_page()
        p.on("pageerror", lambda e: errors.append(str(e)))
        items = p.request.get(served.url + "/api/alerts?user=u_2&page_size=2").json()["items"]
        first, second = items[0]["alert_id"], items[1]["alert_id"]
        p.goto(served.url + "/#/alerts/" + quote(first, safe=""))
        p.wait_for_selector("#detail:not([hidden])", timeout=5_000)
        expect(p.locator("#d-order")).to_contain_text(first)
        p.evaluate("(h) => { location.hash = h; }", "#/alerts/" + quote(second, safe=""))
        expect(p.locator("#d-order")).to_contain_text(second)
        p.click("#detail-close")

        assert p.evaluate("() => new Date(0).getTimezoneOffset()") == -330  # the page runs at +05:30
        assert "UTC" in p.locator("#search label", has=p.locator("input[name=since]")).inner_text()
        since = BASE + 30 * MIN
        p.fill("#search input[name=since]", datetime.fromtimestamp(since / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S"))
        p.click("#search button[type=submit]")
        want = p.request.get(served.url + f"/api/alerts?since={since}").json()["total"]
        assert 0 < want < p.request.get(served.url + "/api/alerts").json()["total"]
        expect(p.locator("#page-info")).to_have_text(re.compile(rf"· {want} alerts$"))
        times = p.locator("#results tbody tr td:nth-child(1)").all_inner_texts()
        assert times and min(times) >= "2026-01-01 00:30:00Z"  # shown in UTC, from the filter's UTC time
        assert errors == []
    finally:
        context.close()


def test_on_a_postgresql_store_the_page_names_it_shows_alerts_live_and_stores_a_verdict(
    browser, tmp_path, postgres_url
):
    from fraudstream.web import create_app

    s = settings_for(tmp_path, **{"dashboard.push_interval_ms": 200, "store.url": postgres_url})
    write(s, sample())
    password = postgres_url.split("@")[0].rsplit(":", 1)[1]
    with serving(create_app(s)) as url:
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        errors: list[str] = []
        try:
            p = context.new_page()
            p.on("pageerror", lambda e: errors.append(str(e)))
            p.goto(url + "/")
            p.wait_for_selector("#conn.up", timeout=5_000)
            expect(p.locator("#store-state")).to_have_text("41 alerts stored in PostgreSQL", timeout=5_000)
            where = p.locator("#store-state").get_attribute("title") or ""
            assert "postgresql://" in where and "***" in where and password not in where
            write(s, [alert(BASE + 50 * MIN, user="u_live", device="d_live", kind="device")])
            p.locator("#feed li", has_text="u_live").click(timeout=3_000)
            p.wait_for_selector("#detail:not([hidden])")
            p.fill("#reviewer", "Asha")
            p.dispatch_event("#reviewer", "change")
            p.click("#confirm")
            p.locator("#d-triage-msg", has_text="Stored").wait_for(timeout=3_000)
            assert errors == []
        finally:
            context.close()
    with db.connect(s) as conn:
        assert reviewed_alerts(conn) == [("DEVICE_SHARING_FRAUD", "confirmed_fraud")]


def test_each_alert_shows_its_rule_version_and_the_rules_panel_says_when_it_cannot_read(page, served):
    from dataclasses import replace

    p = page.page
    assert p.locator("#results tbody tr").first.locator(".rv.none").inner_text() == "rules –"  # before versions
    served.add(replace(alert(BASE + 70 * MIN, user="u_v4", device="d_v4", kind="velocity"), rule_version=4))
    fed = p.locator("#feed li", has_text="u_v4")
    fed.wait_for(timeout=3_000)
    assert fed.locator(".rv").inner_text() == "v4"
    p.fill("#search input[name=rule_version]", "4")
    p.click("#search button[type=submit]")
    expect(p.locator("#page-info")).to_have_text(re.compile(r"· 1 alerts$"))
    row = p.locator("#results tbody tr").first
    assert "u_v4" in row.inner_text() and row.locator(".rv").inner_text() == "v4"
    row.click()
    p.wait_for_selector("#detail:not([hidden])")
    assert "rules version\nv4" in p.locator("#d-order").inner_text()
    p.click("#detail-close")
    # No broker answers this dashboard's settings: the panel says so.
    expect(p.locator("#rules-error")).to_contain_text("cannot be read", timeout=15_000)
    assert p.locator("#propose-disabled").is_visible() and not p.locator("#propose").is_visible()
    assert page.errors == [] and page.dialogs == []


@pytest.mark.skipif(
    not all(importlib.util.find_spec(f"fraudstream.rules.{m}") for m in ("topic", "trial")),
    reason="needs fraudstream.rules.topic and .trial",
)
def test_the_rules_panel_shows_the_version_in_force_and_a_proposal_is_published(browser, broker, kafka, tmp_path):
    import uuid
    from dataclasses import replace

    from fraudstream.kafka.clients import connect_admin, ensure_topics
    from fraudstream.rules import topic
    from fraudstream.rules.model import Limits, RuleSet
    from fraudstream.web import create_app
    from tests.kafka.conftest import send

    token = "rules-token-for-the-browser-test"
    rules_topic = f"rules-{uuid.uuid4().hex[:8]}"
    s = settings_for(tmp_path, **{"dashboard.push_interval_ms": 200, "dashboard.rules_token": token,
                                  "rules.topic": rules_topic})  # fmt: skip
    s = s.model_copy(update={"kafka": kafka})
    ensure_topics(connect_admin(kafka), {rules_topic: 1})
    limits = Limits.from_settings(s)
    v1 = RuleSet.from_settings(s).with_changes({"velocity.threshold": "5"}, limits, author="ops", comment=HOSTILE)
    send(kafka, [(0, b"1", v1.to_bytes())], topic=rules_topic)
    write(s, [*sample(), replace(alert(BASE + 45 * MIN, user="u_v1", kind="velocity"), rule_version=1)])
    with serving(create_app(s)) as url:
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        errors: list[str] = []
        try:
            p = context.new_page()
            p.on("pageerror", lambda e: errors.append(str(e)))  # (the console logs the bad key's 400 on purpose)
            p.goto(url + "/")
            expect(p.locator("#rules-meta")).to_contain_text("version 1 in force", timeout=10_000)
            assert HOSTILE in p.locator("#rules-meta").inner_text()  # the comment, as text
            assert HOSTILE in p.locator("#rules-history").inner_text()
            differs = p.locator("#rules-table tr.differs").all_inner_texts()
            assert [d.split("\t")[:3] for d in differs] == [["velocity.threshold", "5", "3"]]
            assert p.locator("#results tbody tr", has_text="u_v1").locator(".rv").inner_text() == "v1"
            p.fill("#reviewer", "Asha")
            p.dispatch_event("#reviewer", "change")
            p.fill("#propose textarea[name=changes]", "velocity.treshold=4")
            p.fill("#propose input[name=rules_token]", token)
            p.click("#propose button[type=submit]")
            expect(p.locator("#propose-error")).to_contain_text("unknown rule setting 'velocity.treshold'")
            p.fill("#propose textarea[name=changes]", "velocity.threshold=4")
            p.fill("#propose input[name=comment]", "between the two")
            p.fill("#propose input[name=hours]", "0")
            p.click("#propose button[type=submit]")
            expect(p.locator("#proposal-publish")).to_be_visible(timeout=60_000)
            assert "velocity.threshold 5 -> 4" in p.locator("#proposal-changes").inner_text()
            assert topic.current(s).version == 1
            p.locator("#rules-panel").screenshot(path=str(ARTIFACTS / "rules.png"))
            p.click("#proposal-publish")
            expect(p.locator("#proposal-state")).to_have_text("Published version 2.", timeout=10_000)
            expect(p.locator("#rules-meta")).to_contain_text("version 2 in force", timeout=10_000)
            assert topic.current(s).author == "dashboard:Asha"
            assert p.locator("img").count() == 0 and errors == []
        finally:
            context.close()
