"""What a notification says: pure formatting over plain alert objects, no IO.

Every text field of an alert is untrusted (a foreign producer on the alerts topic, an id the
contract admitted): control characters are escaped (`fraudstream.events.text`), long values are
cut, and for Slack-style chat each value is entity-escaped (`&`, `<`, `>`: the only characters
that make Slack read `<!channel>` as a mention or `<http://x|click>` as a link) and set as
inline code, where Slack and Markdown renderers neither format nor link it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import quote

from fraudstream.events.text import escape_controls

Style = Literal["plain", "slack"]
VALUE_MAX_CHARS = 120
MESSAGE_MAX_CHARS = 400


@dataclass(frozen=True)
class StoredAlert:
    """An alert as the store holds it (`fraud_alerts` row): what a message is built from."""

    id: int  # the store's row id: the notifier's position
    alert_id: str
    alert_type: str
    severity: str
    user_id: str | None
    device_id: str | None
    amount: float | None
    message: str | None
    event_time: int | None
    details: Mapping[str, Any] = field(default_factory=dict)
    risk: float | None = None  # the learned model's risk for the order (None: no model scored it)

    @property
    def subject(self) -> tuple[str, str | None]:
        """Who the alert is about: the device for device sharing, otherwise the user."""
        if self.alert_type == "DEVICE_SHARING_FRAUD":
            return "device", self.device_id
        return "user", self.user_id


@dataclass(frozen=True)
class Message:
    """One message to one receiver, covering store rows first_id..last_id (`count` alerts)."""

    title: str
    body: str
    kind: Literal["alert", "summary", "test"]
    first_id: int
    last_id: int
    count: int


def clean(value: object, limit: int = VALUE_MAX_CHARS) -> str:
    """Untrusted text as a visible, bounded line: controls escaped, long values cut."""
    text = escape_controls("" if value is None else str(value))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def slack_escape(text: str) -> str:
    """Slack's three control characters as entities (https://api.slack.com/reference/surfaces/formatting)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _value(value: object, style: Style, limit: int = VALUE_MAX_CHARS) -> str:
    text = clean(value, limit)
    if style == "plain":
        return text
    # A backtick would end the code span early: a look-alike keeps the value readable.
    return "`" + slack_escape(text.replace("`", "ˋ")) + "`"


def utc_iso(epoch_ms: int | None) -> str:
    if epoch_ms is None:
        return "unknown"
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def alert_link(dashboard_url: str, alert_id: str) -> str:
    """The dashboard opens an alert from the fragment `#/alerts/<alert_id>`."""
    return f"{dashboard_url.rstrip('/')}/#/alerts/{quote(alert_id, safe='')}"


def _link(url: str, label: str, style: Style) -> str:
    if style == "plain":
        return url
    return f"<{slack_escape(url)}|{label}>"


def _title(text: str, style: Style) -> str:
    return text if style == "plain" else f"*{text}*"


def _word(value: object, style: Style, limit: int) -> str:
    """A short label from an alert (severity, type) in a title: escaped, no format marks."""
    text = clean(value, limit)
    return text if style == "plain" else slack_escape(text.replace("*", "∗").replace("`", "ˋ"))


def render_alert(alert: StoredAlert, dashboard_url: str, style: Style = "plain") -> Message:
    """One alert as a message that reads on a phone: who and what in the title, then amount,
    city, time, the model's risk (when it scored the order), the rule's words and the link."""
    who, key = alert.subject
    head = f"{_word(alert.severity, style, 20)} {_word(alert.alert_type, style, 40)}"
    title = f"{_title(head, style)} · {who} {_value(key, style, 60)}"
    lines = []
    if alert.amount is not None:
        lines.append(f"Amount: ₹{alert.amount:,.2f}")
    city = alert.details.get("city") if isinstance(alert.details, Mapping) else None
    if city:
        lines.append(f"City: {_value(city, style)}")
    lines.append(f"Time: {utc_iso(alert.event_time)}")
    if isinstance(alert.risk, int | float) and not isinstance(alert.risk, bool):
        lines.append(f"Risk: {alert.risk:.3f} (the model's, for this order)")
    lines.append(f"User: {_value(alert.user_id, style)} · Device: {_value(alert.device_id, style)}")
    if alert.message:
        lines.append(f"Rule: {_value(alert.message, style, MESSAGE_MAX_CHARS)}")
    lines.append(f"Open: {_link(alert_link(dashboard_url, alert.alert_id), 'the alert in the dashboard', style)}")
    return _message(title, lines, style, "alert", [alert])


def _window_words(window_ms: int) -> str:
    seconds = window_ms / 1000
    if seconds == 60:
        return "the last minute"
    if seconds % 60 == 0:
        return f"the last {seconds / 60:g} minutes"
    return f"the last {seconds:g} s"


def render_summary(
    alerts: Sequence[StoredAlert], window_ms: int, dashboard_url: str, style: Style = "plain"
) -> Message:
    """Alerts held back in a burst, as one message: how many of each severity, and the device
    and the user they concentrate on ("14 more CRITICAL alerts in the last minute, 9 on device d_8")."""
    if not alerts:
        raise ValueError("a summary needs alerts")
    severities = Counter(_word(a.severity, style, 20) for a in alerts)
    noun = "alert" if len(alerts) == 1 else "alerts"
    if len(severities) == 1:
        head = f"{len(alerts)} more {next(iter(severities))} {noun}"
    else:
        head = f"{len(alerts)} more {noun} (" + ", ".join(f"{n} {sev}" for sev, n in severities.most_common()) + ")"
    title = f"{_title(head, style)} in {_window_words(window_ms)}{_top(alerts, style)}"
    types = Counter(clean(a.alert_type, 40) for a in alerts)
    lines = ["Types: " + ", ".join(f"{_value(t, style)} {n}" for t, n in types.most_common(3))]
    first = min(alerts, key=lambda a: a.id)
    last = max(alerts, key=lambda a: a.id)
    lines.append(f"From {utc_iso(first.event_time)} to {utc_iso(last.event_time)}")
    lines.append(f"Newest: {_link(alert_link(dashboard_url, last.alert_id), 'open it in the dashboard', style)}")
    return _message(title, lines, style, "summary", alerts)


def _top(alerts: Sequence[StoredAlert], style: Style) -> str:
    parts = []
    for what, attr in (("device", "device_id"), ("user", "user_id")):
        ranked = Counter(getattr(a, attr) for a in alerts if getattr(a, attr)).most_common(1)
        if ranked and ranked[0][1] > 1:
            parts.append(f"{ranked[0][1]} on {what} {_value(ranked[0][0], style, 60)}")
    return (", " + ", ".join(parts)) if parts else ""


def render_test(dashboard_url: str, receiver: str, style: Style = "plain") -> Message:
    """`fraudstream notify test`: proves a receiver is reachable, names no alert."""
    title = _title("fraudstream test message", style)
    lines = [
        f"Receiver {receiver} is set up: alerts will arrive here.",
        f"Dashboard: {_link(dashboard_url, 'open it', style)}",
    ]
    return _message(title, lines, style, "test", [])


def _message(
    title: str, lines: list[str], style: Style, kind: Literal["alert", "summary", "test"], alerts: Sequence[StoredAlert]
) -> Message:
    ids = [a.id for a in alerts] or [0]
    if style == "slack":  # a Slack-compatible webhook shows one text: the title is its first line
        return Message("", "\n".join([title, *lines]), kind, min(ids), max(ids), len(alerts))
    return Message(title, "\n".join(lines), kind, min(ids), max(ids), len(alerts))
