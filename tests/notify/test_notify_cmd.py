"""`fraudstream notify test` and `notify status` as a user types them."""

from __future__ import annotations

import logging
import sqlite3

from fraudstream.cli.main import main
from fraudstream.notify.receivers import receiver_name
from tests.notify.conftest import SMTP_PASSWORD, SMTP_USER, make_alert
from tests.notify.servers import wait_until
from tests.notify.test_notifier import hook_name, running, settings_for


def test_notify_test_reaches_every_receiver_and_says_which_failed(tmp_path, webhook, smtp, capsys):
    common = ["--data-dir", str(tmp_path), "--set", f"notify.webhook_url={webhook.url()}",
              "--set", "notify.smtp_host=127.0.0.1", "--set", f"notify.smtp_port={smtp.port}",
              "--set", f"notify.smtp_username={SMTP_USER}", "--set", f"notify.smtp_password={SMTP_PASSWORD}",
              "--set", "notify.email_to=oncall@fraud.example", "--set", "notify.tls_verify=false",
              "--set", "notify.timeout_s=2"]  # fmt: skip
    assert main([*common, "notify", "test"]) == 0
    out = capsys.readouterr().out
    hook, mail = hook_name(webhook), receiver_name("email", "oncall@fraud.example")
    assert f"{hook} (notify.webhook_url): sent" in out and f"{mail} (notify.email_to oncall@fraud.example): sent" in out
    assert webhook.texts[0].startswith("*fraudstream test message*")
    assert smtp.mails[0].subject == "fraudstream test message"
    webhook.fail(1)
    assert main([*common, "notify", "test"]) == 1
    assert f"{hook} (notify.webhook_url): FAILED" in capsys.readouterr().out
    assert main(["--data-dir", str(tmp_path), "notify", "test"]) == 1
    assert "no receiver is set" in capsys.readouterr().err


def test_notify_status_shows_positions_recent_messages_and_receivers_no_longer_set(
    tmp_path, store, webhook, capsys, caplog
):
    with running(settings_for(tmp_path, webhook)):
        store.write_batch([make_alert(1), make_alert(2, severity="MEDIUM"), make_alert(3)])
        assert wait_until(lambda: len(webhook.texts) == 2)
    store.write_batch([make_alert(4), make_alert(5, risk=0.003, held_back=True)])
    flags = ["--data-dir", str(tmp_path), "--set", f"notify.webhook_url={webhook.url()}"]
    assert main([*flags, "notify", "status"]) == 0
    out = capsys.readouterr().out
    assert f"{hook_name(webhook)}: up to store row 3, 1 waiting" in out  # the held-back one never waits
    assert "held back as normal for their customer (stored, never notified): 1 alert(s)" in out
    assert out.count("CRITICAL DEVICE_SHARING_FRAUD") == 2
    assert main(["--data-dir", str(tmp_path), "notify", "status"]) == 0  # the webhook no longer set
    assert f"{hook_name(webhook)} (not configured): up to store row 3" in capsys.readouterr().out
    moved = webhook.url("/services/T000/B000/othersecret")  # its address changed: a new receiver
    with running(settings_for(tmp_path, **{"notify.webhook_url": moved})):
        pass
    gone = [r for r in caplog.records if r.levelno == logging.WARNING and "no longer configured" in r.getMessage()]
    assert len(gone) == 1 and hook_name(webhook) in gone[0].getMessage()


def test_notify_status_creates_no_table(tmp_path, store, capsys):
    # A store from before the notification ledger (migration 3): status reads, never creates.
    with sqlite3.connect(tmp_path / "fraud_alerts.db") as conn:
        conn.execute("DROP TABLE notify_sent")
        conn.execute("DROP TABLE notify_receivers")
    assert main(["--data-dir", str(tmp_path), "notify", "status"]) == 0
    assert "no notifications sent" in capsys.readouterr().out
    with sqlite3.connect(tmp_path / "fraud_alerts.db") as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "fraud_alerts" in tables and not any(t.startswith("notify") for t in tables), tables
