"""Hostile text on an analyst's screen: ids holding escape sequences, newlines and bidi overrides
(stored before the contract refused them, or from another producer) are shown escaped, on the
console, in `query` tables and JSON, and in app.log (no Flink needed)."""

from __future__ import annotations

import logging
import re

import orjson
import pytest

from fraudstream.cli.format import alert_line, dead_letter_line, order_line
from fraudstream.cli.logs import configure_logging
from fraudstream.cli.main import main
from fraudstream.cli.runner import RunSummary, _route
from fraudstream.config import Settings
from fraudstream.detectors import GeoAnomalyDetector, HighValueDetector
from fraudstream.events import DeadLetter
from fraudstream.events.text import CONTROL_CLASS, escape_controls
from fraudstream.store import AlertStore
from tests.conftest import BASE, make_order

# Retitles an xterm, then a newline that starts a forged line, then a right-to-left override.
HOSTILE = "u_9\x1b]0;pwned\x07\n2026-01-01 00:00:00,000 INFO fraudstream.alerts: ALERT CRITICAL\u202e"
RAW_CONTROL = re.compile(f"[{CONTROL_CLASS}]")


def hostile_alert():
    order = make_order(BASE, user=HOSTILE, device="d\x9b2J", city="Pune\x1b[2J", amount=2000.0)
    return HighValueDetector(threshold=0).make_alert(order, f"order from {order.city}", {})


def hostile_dead_letter() -> DeadLetter:
    # The Java parser's details quote values as they are: "'event_time' is not ...: \"<value>\"".
    return DeadLetter(
        reason="invalid_value",
        detail=f"'event_time' is not an RFC 3339 timestamp: \"{HOSTILE}\"",
        raw=f'{{"user_id": "{HOSTILE}"}}',
        seen_at=BASE,
    )


def test_escape_controls_makes_every_control_visible():
    assert escape_controls("u_15") == "u_15"
    assert escape_controls("é \u00a0 \U0001f600") == "é \u00a0 \U0001f600"
    assert escape_controls("a\x1b]0;x\x07\n\t\r\x7f\x85\u202e\u2066\u2028") == (
        "a\\x1b]0;x\\x07\\n\\t\\r\\x7f\\x85\\u202e\\u2066\\u2028"
    )


def test_console_lines_hold_no_control_character():
    alert = hostile_alert()
    line = alert_line(alert)
    assert not RAW_CONTROL.search(line), repr(line)
    assert "user=u_9\\x1b]0;pwned\\x07\\n2026-01-01" in line and "Pune\\x1b[2J" in line
    assert not RAW_CONTROL.search(dead_letter_line(hostile_dead_letter()))
    order = make_order(BASE, user=HOSTILE, device="d\u202e", city="x\ny")
    assert not RAW_CONTROL.search(order_line(order))


@pytest.fixture
def hostile_db(tmp_path):
    path = tmp_path / "alerts.db"
    store = AlertStore(path)
    geo = GeoAnomalyDetector()
    alerts = [hostile_alert(), geo.make_alert(make_order(BASE + 1, user=HOSTILE), "Pune\u202e -> Delhi", {})]
    store.write_batch([*alerts, hostile_dead_letter()])
    store.close()
    return path


@pytest.mark.parametrize(
    "args", [["all"], ["high"], ["user", HOSTILE], ["type", "high_value_fraud"], ["dead"], ["stats"]]
)
def test_query_tables_hold_no_control_character(hostile_db, capsys, args):
    assert main(["query", "--db", str(hostile_db), *args]) == 0
    out = capsys.readouterr().out
    assert "u_9\\x1b]0;pwned\\x07\\n" in out
    assert not RAW_CONTROL.search(out.replace("\n", "")), repr(out)


def test_query_json_escapes_controls_and_keeps_the_data(hostile_db, capsys):
    assert main(["query", "--db", str(hostile_db), "--json", "all"]) == 0
    out = capsys.readouterr().out
    assert not RAW_CONTROL.search(out.replace("\n", "")), repr(out)
    assert {r["user_id"] for r in orjson.loads(out)} == {HOSTILE}


def test_app_log_has_one_line_per_record_and_no_control_character(tmp_path):
    settings = Settings(data_dir=tmp_path)
    root = logging.getLogger()
    saved = list(root.handlers), root.level
    try:
        configure_logging(settings)
        logging.getLogger("fraudstream").setLevel(logging.INFO)
        _route("alert", hostile_alert(), settings, RunSummary(), None, lambda line: None)
        # A message quoting data directly, not through alert_line: still one record, escaped.
        logging.getLogger("fraudstream.test").warning("bad record: %s", HOSTILE)
        try:
            raise ValueError(HOSTILE)
        except ValueError:
            logging.getLogger("fraudstream.test").exception("failed")
        for handler in root.handlers:
            handler.flush()
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
            handler.close()
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])
        logging.captureWarnings(False)
    text = settings.log_file.read_text(encoding="utf-8")
    assert not RAW_CONTROL.search(text.replace("\n", "")), repr(text)
    lines = text.splitlines()
    assert len(lines) == len(text.split("\n")) - 1  # no other line breaks (\x1c, \x85, U+2028...)
    # Every line that does not start with a space starts a record: the three logged above.
    starts = [line for line in lines if not line.startswith(" ")]
    assert len(starts) == 3, starts
    assert "fraudstream.alerts: ALERT MEDIUM" in starts[0] and "user=u_9\\x1b]0;pwned\\x07\\n2026" in starts[0]
    assert all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ", line) for line in starts)
    assert any("Traceback" in line for line in lines)
