"""Messages as a phone shows them, and untrusted alert text that must stay text."""

from __future__ import annotations

import re

from fraudstream.notify.message import StoredAlert, alert_link, render_alert, render_summary

DASH = "http://127.0.0.1:8050"


def stored(n: int, **kw) -> StoredAlert:
    base = dict(
        id=n, alert_id=f"a{n}", alert_type="DEVICE_SHARING_FRAUD", severity="CRITICAL", user_id=f"u_{n}",
        device_id="d_8", amount=1850.5, message="Device d_8 used by 3 users in 30 minutes",
        event_time=1_767_225_600_000 + n, details={},
    )  # fmt: skip
    return StoredAlert(**{**base, **kw})


def test_an_alert_reads_on_a_phone_and_links_to_the_dashboard():
    m = render_alert(stored(1, details={"city": "Pune"}), DASH)
    assert m.title == "CRITICAL DEVICE_SHARING_FRAUD · device d_8"
    lines = m.body.splitlines()
    assert "Amount: ₹1,850.50" in lines
    assert "City: Pune" in lines
    assert "Time: 2026-01-01T00:00:00.001Z" in lines
    assert "Rule: Device d_8 used by 3 users in 30 minutes" in lines
    assert lines[-1] == "Open: http://127.0.0.1:8050/#/alerts/a1"
    assert (m.kind, m.first_id, m.last_id, m.count) == ("alert", 1, 1, 1)
    user = render_alert(stored(2, alert_type="VELOCITY_FRAUD", severity="HIGH"), DASH + "/")
    assert user.title == "HIGH VELOCITY_FRAUD · user u_2"
    assert user.body.endswith("http://127.0.0.1:8050/#/alerts/a2")


def test_slack_style_puts_the_title_first_and_links_with_a_label():
    m = render_alert(stored(1), DASH, "slack")
    assert m.title == ""
    first, *rest = m.body.splitlines()
    assert first == "*CRITICAL DEVICE_SHARING_FRAUD* · device `d_8`"
    assert rest[-1] == "Open: <http://127.0.0.1:8050/#/alerts/a1|the alert in the dashboard>"


HOSTILE = [
    "<!channel>",
    "<http://evil.example|click to verify>",
    "<@U024BE7LH>",
    "a`<!here>`b",
    "*bold* _it_ ~s~",
    "x\n<!everyone>\x1b]0;pwn\x07",
]


def _slack_controls(text: str) -> list[str]:
    """Slack's special sequences: anything in angle brackets (mentions, links, commands)."""
    return re.findall(r"<[^>]*>", text)


def test_hostile_ids_do_not_become_mentions_links_or_lines():
    for bad in HOSTILE:
        alert = stored(3, user_id=bad, device_id=bad, message=f"User {bad} ordered", alert_id=bad,
                       details={"city": bad})  # fmt: skip
        slack = render_alert(alert, DASH, "slack")
        # the only angle-bracket sequence is our own dashboard link
        controls = _slack_controls(slack.body)
        assert len(controls) == 1 and controls[0].startswith("<http://127.0.0.1:8050/#/alerts/"), controls
        assert "|" not in controls[0][: controls[0].index("|the alert")]  # the id cannot relabel the link
        for line in slack.body.splitlines()[1:-1]:
            # every alert value sits in a code span with its brackets as entities
            assert "&lt;" in line or "<" not in line
        assert slack.body.count("\n") == 6  # title, amount, city, time, user/device, rule, link: no forged line
        plain = render_alert(alert, DASH)
        assert "\n" not in plain.title and "\x1b" not in plain.title + plain.body
        assert plain.body.count("\n") == 5
    link = alert_link(DASH, "<http://evil|x>/../?")
    assert link == "http://127.0.0.1:8050/#/alerts/%3Chttp%3A%2F%2Fevil%7Cx%3E%2F..%2F%3F"


def test_a_burst_summary_counts_and_names_the_top_device():
    alerts = [stored(i, device_id="d_8" if i < 9 else f"d_{i}") for i in range(14)]
    m = render_summary(alerts, 60_000, DASH)
    assert m.title == "14 more CRITICAL alerts in the last minute, 9 on device d_8"
    assert (m.kind, m.first_id, m.last_id, m.count) == ("summary", 0, 13, 14)
    assert m.body.splitlines()[-1] == "Newest: http://127.0.0.1:8050/#/alerts/a13"
    mixed = render_summary([stored(1), stored(2, severity="HIGH", user_id="u_1")], 300_000, DASH, "slack")
    assert mixed.body.splitlines()[0] == (
        "*2 more alerts (1 CRITICAL, 1 HIGH)* in the last 5 minutes, 2 on device `d_8`, 2 on user `u_1`"
    )


def test_the_models_risk_is_said_when_it_scored_the_order():
    assert "Risk: 0.912 (the model's, for this order)" in render_alert(stored(1, risk=0.9123), DASH).body
    assert "Risk" not in render_alert(stored(2), DASH).body  # no model: as before
