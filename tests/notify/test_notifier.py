"""The notifier against real receivers: a local webhook and a local SMTP server (STARTTLS, login)."""

from __future__ import annotations

import logging
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from fraudstream.config import Settings, load_settings
from fraudstream.metrics.process import REGISTRY
from fraudstream.notify import Notifier
from fraudstream.store import AlertStore
from tests.notify.conftest import SMTP_PASSWORD, SMTP_USER, make_alert
from tests.notify.servers import Smtp, Webhook, wait_until


def settings_for(tmp_path: Path, webhook: Webhook | None = None, smtp: Smtp | None = None, **more) -> Settings:
    flags: dict[str, object] = {
        "data_dir": str(tmp_path),
        "dashboard.public_url": "https://dash.example/",
        "notify.timeout_s": 2,
        "notify.retry_max_backoff_ms": 400,
        "notify.tls_verify": False,  # the test server's certificate is self-signed
        **more,
    }
    if webhook is not None:
        flags["notify.webhook_url"] = webhook.url()
    if smtp is not None:
        flags.update({
            "notify.smtp_host": "127.0.0.1", "notify.smtp_port": smtp.port, "notify.smtp_username": SMTP_USER,
            "notify.smtp_password": SMTP_PASSWORD, "notify.email_to": "oncall@fraud.example,second@fraud.example",
        })  # fmt: skip
    return load_settings(flags=flags, environ={})


@contextmanager
def running(settings: Settings, stop_s: float = 10.0) -> Iterator[Notifier]:
    notifier = Notifier(settings, poll_s=0.05).start()
    try:
        yield notifier
    finally:
        notifier.stop(stop_s)


def sample(receiver: str, result: str) -> float:
    return REGISTRY.get_sample_value("fraudstream_notifications_total", {"receiver": receiver, "result": result}) or 0


def sent_rows(db: Path) -> list[tuple[str, str, int, int, int]]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT receiver, kind, first_id, last_id, alerts FROM notify_sent ORDER BY id").fetchall()


def test_critical_alerts_reach_chat_and_email_with_their_content_medium_ones_do_not(tmp_path, store, webhook, smtp):
    settings = settings_for(tmp_path, webhook, smtp)
    with running(settings):
        store.write_batch([make_alert(1), make_alert(2, severity="MEDIUM"), make_alert(3, device="d_9")])
        assert wait_until(lambda: len(webhook.texts) >= 2 and len(smtp.mails) >= 4)
        time.sleep(0.3)  # nothing else comes
    assert len(webhook.texts) == 2 and len(smtp.mails) == 4  # apprise mails each recipient on its own
    first = webhook.texts[0].splitlines()
    assert first[0] == "*CRITICAL DEVICE_SHARING_FRAUD* · device `d_8`"
    assert "Amount: ₹1,850.50" in first and "Time: 2026-01-01T00:00:01.000Z" in first
    assert first[-1] == "Open: <https://dash.example/#/alerts/a00001|the alert in the dashboard>"
    assert webhook.requests[0].path == "/services/T000/B000/hooksecretXYZ"
    mail = smtp.mails[0]
    assert mail.subject == "CRITICAL DEVICE_SHARING_FRAUD · device d_8"
    assert mail.tls and mail.authenticated and smtp.logins[0] == SMTP_USER  # STARTTLS, then the login
    assert mail.sender == SMTP_USER
    assert sorted(m.to[0] for m in smtp.mails[:2]) == ["oncall@fraud.example", "second@fraud.example"]
    assert "Amount: ₹1,850.50" in mail.body and "https://dash.example/#/alerts/a00001" in mail.body
    assert "device `d_9`" in webhook.texts[1] and "d_9" in smtp.mails[3].subject
    assert not any("HIGH_VALUE" in t or "MEDIUM" in t for t in webhook.texts + [m.subject for m in smtp.mails])
    assert Counter(r[0] for r in sent_rows(tmp_path / "fraud_alerts.db")) == {"webhook": 2, "email": 2}


def test_a_receiver_that_fails_twice_gets_the_message_once(tmp_path, store, webhook):
    failed_before = sample("webhook", "failed")
    webhook.fail(2)
    with running(settings_for(tmp_path, webhook)):
        store.write_batch([make_alert(1)])
        assert wait_until(lambda: len(webhook.texts) == 1)
        time.sleep(0.5)
    assert len(webhook.texts) == 1 and "a00001" in webhook.texts[0]
    assert webhook.answered == 3  # two refusals, then the one that was taken
    assert sample("webhook", "failed") - failed_before == 2


def test_a_burst_of_100_becomes_a_bounded_number_of_messages(tmp_path, store, webhook):
    settings = settings_for(tmp_path, webhook, **{"notify.burst_window_ms": 1_500, "notify.burst_max": 5})
    suppressed_before = sample("webhook", "suppressed")
    with running(settings):
        for i in range(0, 100, 10):
            store.write_batch([make_alert(n, device="d_8" if n % 3 else f"d_{n}") for n in range(i + 1, i + 11)])
        assert wait_until(lambda: len(webhook.texts) >= 6, timeout=8)
        time.sleep(0.3)
    texts = webhook.texts
    assert len(texts) == 6, texts
    assert texts[-1].startswith("*95 more CRITICAL alerts* in the last 1.5 s, 63 on device `d_8`")
    rows = sent_rows(tmp_path / "fraud_alerts.db")
    assert sum(r[4] for r in rows) == 100 and rows[-1][1:] == ("summary", 6, 100, 95)
    assert sample("webhook", "suppressed") - suppressed_before == 95


def test_a_stopped_and_restarted_notifier_sends_nothing_twice_and_loses_nothing(tmp_path, store, webhook):
    settings = settings_for(tmp_path, webhook)
    with running(settings):
        store.write_batch([make_alert(1), make_alert(2)])
        assert wait_until(lambda: len(webhook.texts) == 2)
    store.write_batch([make_alert(3)])  # while no notifier runs
    with running(settings):
        store.write_batch([make_alert(4)])
        assert wait_until(lambda: len(webhook.texts) == 4)
        time.sleep(0.3)
    ids = [t.split("#/alerts/")[1].split("|")[0] for t in webhook.texts]
    assert ids == ["a00001", "a00002", "a00003", "a00004"]


KILLABLE = """
import sys, time
from fraudstream.config import load_settings
from fraudstream.notify import Notifier
settings = load_settings(flags={"data_dir": sys.argv[1], "notify.webhook_url": sys.argv[2], "notify.timeout_s": 5,
                                "notify.burst_max": 1000}, environ={})
Notifier(settings, poll_s=0.05).start()
print("started", flush=True)
time.sleep(60)
"""


@pytest.mark.slow  # two Python processes
def test_a_notifier_killed_mid_send_repeats_at_most_that_one_message_and_loses_none(tmp_path, store, webhook):
    def start() -> subprocess.Popen:
        proc = subprocess.Popen(
            [sys.executable, "-c", KILLABLE, str(tmp_path), webhook.url()], stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout is not None and proc.stdout.readline().strip() == "started"
        return proc

    webhook.delay_s = 0.3  # a slow receiver: the kill lands while a message is on its way
    proc = start()
    try:
        store.write_batch([make_alert(n) for n in range(1, 11)])
        assert wait_until(lambda: len(webhook.requests) >= 3, timeout=10)
        proc.kill()  # SIGKILL: no clean-up at all
        proc.wait(10)
    finally:
        proc.kill()
    webhook.delay_s = 0.0
    before = len(webhook.texts)
    proc = start()
    try:
        assert wait_until(lambda: len({_alert_id(t) for t in webhook.texts}) == 10, timeout=10)
        time.sleep(0.3)
    finally:
        proc.kill()
        proc.wait(10)
    ids = [_alert_id(t) for t in webhook.texts]
    assert sorted(set(ids)) == [f"a{n:05d}" for n in range(1, 11)]  # nothing lost
    assert len(ids) - 10 <= 1  # at most the message the kill interrupted came twice
    assert 3 <= before < 10


def _alert_id(text: str) -> str:
    return text.split("#/alerts/")[1].split("|")[0]


def test_a_hanging_receiver_holds_up_neither_the_store_nor_the_other_receiver(tmp_path, store, webhook, smtp):
    webhook.hang()
    settings = settings_for(tmp_path, webhook, smtp, **{"notify.timeout_s": 1})
    with running(settings, stop_s=3):
        writes = []
        for n in range(1, 6):
            started = time.monotonic()
            store.write_batch([make_alert(n, device=f"d_{n}")])
            writes.append(time.monotonic() - started)
            time.sleep(0.1)
        assert wait_until(lambda: len(smtp.mails) == 10, timeout=5)  # email goes on while chat hangs
        assert max(writes) < 0.5, writes  # a write never waits for a receiver (timeout 1 s, hanging 30 s)
        assert webhook.answered == 0
        webhook.release()
        assert wait_until(lambda: len({_alert_id(t) for t in webhook.texts}) == 5, timeout=10)


def test_no_secret_reaches_logs_messages_or_config_show(tmp_path, store, webhook, smtp, caplog, capsys):
    from fraudstream.cli.main import main

    caplog.set_level(logging.DEBUG)
    webhook.fail(1)
    settings = settings_for(tmp_path, webhook, smtp)
    with running(settings):
        store.write_batch([make_alert(1)])
        assert wait_until(lambda: len(webhook.texts) == 1 and len(smtp.mails) == 2)
    secrets = ["hooksecretXYZ", SMTP_PASSWORD, "pw-SECRET-42"]
    ours = [r for r in caplog.records if not r.name.startswith("mail.log")]  # all but the test's SMTP server
    assert {"apprise", "urllib3.connectionpool"} <= {r.name for r in ours}  # they did log, at debug level too
    logged = "\n".join(caplog.handler.format(r) for r in ours)
    assert "sending failed" in logged or "did not take" in logged
    shown = webhook.texts[0] + smtp.mails[0].body + smtp.mails[0].subject
    flags = ["--set", f"notify.webhook_url={webhook.url()}", "--set", f"notify.smtp_password={SMTP_PASSWORD}",
             "--set", "notify.urls=json://127.0.0.1:1/hooksecretXYZ", "config", "show"]  # fmt: skip
    assert main(flags) == 0
    out = capsys.readouterr().out
    assert "notify" in out and "***" in out
    for secret in secrets:
        assert secret not in logged and secret not in shown and secret not in out


def test_a_wrong_receiver_setting_is_one_line_without_its_secret(tmp_path):
    from fraudstream.notify.receivers import ReceiverError

    AlertStore(tmp_path / "fraud_alerts.db").close()
    with pytest.raises(ReceiverError, match="http") as bad:
        Notifier(settings_for(tmp_path, **{"notify.webhook_url": "ftp://x/hooksecretXYZ"}))
    assert "hooksecretXYZ" not in str(bad.value)
    with pytest.raises(ReceiverError, match="email_to"):
        Notifier(settings_for(tmp_path, **{"notify.smtp_host": "127.0.0.1", "notify.email_from": "a@b.example"}))
    with pytest.raises(ReceiverError, match="apprise-1") as bad:
        Notifier(settings_for(tmp_path, **{"notify.urls": "nosuchservice://hooksecretXYZ"}))
    assert "hooksecretXYZ" not in str(bad.value)


def test_a_locked_store_delays_the_record_of_a_sent_message_but_never_sends_it_twice(tmp_path, store, webhook):
    settings = settings_for(tmp_path, webhook, **{"store.busy_timeout_ms": 100})
    with running(settings):
        store.write_batch([make_alert(1)])
        assert wait_until(lambda: len(webhook.texts) == 1)
        other = sqlite3.connect(tmp_path / "fraud_alerts.db", isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")  # another writer holds the lock for a while
            other.execute("INSERT INTO fraud_alerts (alert_id, alert_type, severity) VALUES ('a2', 'X', 'CRITICAL')")
            other.execute("COMMIT")
            other.execute("BEGIN IMMEDIATE")
            assert wait_until(lambda: len(webhook.texts) == 2)  # sent, but not recordable yet
            time.sleep(0.8)
            assert len(sent_rows(tmp_path / "fraud_alerts.db")) == 1 and len(webhook.texts) == 2
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert wait_until(lambda: [r[3] for r in sent_rows(tmp_path / "fraud_alerts.db")] == [1, 2])
        time.sleep(0.3)
    assert len(webhook.texts) == 2
