"""`fraudstream notify test` and `notify status` as a user types them."""

from __future__ import annotations

from fraudstream.cli.main import main
from tests.notify.conftest import SMTP_PASSWORD, SMTP_USER, make_alert
from tests.notify.servers import wait_until
from tests.notify.test_notifier import running, settings_for


def test_notify_test_reaches_every_receiver_and_says_which_failed(tmp_path, webhook, smtp, capsys):
    common = ["--data-dir", str(tmp_path), "--set", f"notify.webhook_url={webhook.url()}",
              "--set", "notify.smtp_host=127.0.0.1", "--set", f"notify.smtp_port={smtp.port}",
              "--set", f"notify.smtp_username={SMTP_USER}", "--set", f"notify.smtp_password={SMTP_PASSWORD}",
              "--set", "notify.email_to=oncall@fraud.example", "--set", "notify.tls_verify=false",
              "--set", "notify.timeout_s=2"]  # fmt: skip
    assert main([*common, "notify", "test"]) == 0
    out = capsys.readouterr().out
    assert "webhook: sent" in out and "email: sent" in out
    assert webhook.texts[0].startswith("*fraudstream test message*")
    assert smtp.mails[0].subject == "fraudstream test message"
    webhook.fail(1)
    assert main([*common, "notify", "test"]) == 1
    assert "webhook: FAILED" in capsys.readouterr().out
    assert main(["--data-dir", str(tmp_path), "notify", "test"]) == 1
    assert "no receiver is set" in capsys.readouterr().err


def test_notify_status_shows_positions_and_recent_messages(tmp_path, store, webhook, capsys):
    with running(settings_for(tmp_path, webhook)):
        store.write_batch([make_alert(1), make_alert(2, severity="MEDIUM"), make_alert(3)])
        assert wait_until(lambda: len(webhook.texts) == 2)
    store.write_batch([make_alert(4)])
    assert main(["--data-dir", str(tmp_path), "notify", "status"]) == 0
    out = capsys.readouterr().out
    assert "webhook: up to store row 3, 1 waiting" in out
    assert out.count("CRITICAL DEVICE_SHARING_FRAUD") == 2
