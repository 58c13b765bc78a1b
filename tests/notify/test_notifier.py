"""The notifier against real receivers: a local webhook and a local SMTP server (STARTTLS, login);
a restart, the held-back alerts and a dropped connection on a PostgreSQL store too."""

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
from fraudstream.notify.receivers import receiver_name
from fraudstream.store import AlertStore, db
from tests.notify.conftest import SMTP_PASSWORD, SMTP_USER, make_alert
from tests.notify.servers import Smtp, Webhook, alert_id, free_port, wait_until

ONCALL, SECOND = "oncall@fraud.example", "second@fraud.example"


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
            "notify.smtp_password": SMTP_PASSWORD, "notify.email_to": f"{ONCALL},{SECOND}",
        })  # fmt: skip
    return load_settings(flags=flags, environ={})


@contextmanager
def running(settings: Settings, stop_s: float = 10.0, said: list[str] | None = None) -> Iterator[Notifier]:
    """A started notifier, stopped on the way out; `said` collects what its stop announces."""
    notifier = Notifier(settings, poll_s=0.05).start()
    try:
        yield notifier
    finally:
        notifier.stop(stop_s, announce=None if said is None else said.append)


def hook_name(webhook: Webhook) -> str:
    return receiver_name("webhook", webhook.url())


def sample(receiver: str, result: str) -> float:
    return REGISTRY.get_sample_value("fraudstream_notifications_total", {"receiver": receiver, "result": result}) or 0


def sent_rows(where: Path | Settings) -> list[tuple[str, str, int, int, int]]:
    """The ledger's log of messages, from a SQLite file or the store of `settings`."""
    with db.connect(where if isinstance(where, Settings) else db.Location("sqlite", path=where)) as conn:
        rows = conn.execute("SELECT receiver, kind, first_id, last_id, alerts FROM notify_sent ORDER BY id")
        return [tuple(r) for r in rows]  # type: ignore[misc]


@pytest.fixture
def any_store(tmp_path: Path, store_flags: dict[str, str]) -> Iterator[tuple[AlertStore, dict[str, str]]]:
    """A store, once SQLite and once PostgreSQL, and the settings flags that name it."""
    s = AlertStore.open(load_settings(flags={"data_dir": str(tmp_path), **store_flags}, environ={}))
    yield s, store_flags
    s.close()


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
    # each recipient is a receiver of its own, so their mails interleave: judge them one by one
    by_recipient: dict[str, list] = {}
    for m in smtp.mails:
        by_recipient.setdefault(m.to[0], []).append(m)
    assert sorted(by_recipient) == ["oncall@fraud.example", "second@fraud.example"]
    for mails in by_recipient.values():
        mail, later = mails
        assert mail.subject == "CRITICAL DEVICE_SHARING_FRAUD · device d_8"
        assert mail.tls and mail.authenticated  # STARTTLS, then the login
        assert mail.sender == SMTP_USER
        assert "Amount: ₹1,850.50" in mail.body and "https://dash.example/#/alerts/a00001" in mail.body
        assert "d_9" in later.subject
    assert smtp.logins and set(smtp.logins) == {SMTP_USER}
    assert "device `d_9`" in webhook.texts[1]
    assert not any("HIGH_VALUE" in t or "MEDIUM" in t for t in webhook.texts + [m.subject for m in smtp.mails])
    rows = Counter(r[0] for r in sent_rows(tmp_path / "fraud_alerts.db"))
    assert rows == {hook_name(webhook): 2, receiver_name("email", ONCALL): 2, receiver_name("email", SECOND): 2}


def test_a_receiver_that_fails_twice_gets_the_message_once(tmp_path, store, webhook):
    name = hook_name(webhook)
    failed_before = sample(name, "failed")
    webhook.fail(2)
    said: list[str] = []
    with running(settings_for(tmp_path, webhook), said=said):
        store.write_batch([make_alert(1)])
        assert wait_until(lambda: len(webhook.texts) == 1)
        time.sleep(0.5)
    assert len(webhook.texts) == 1 and "a00001" in webhook.texts[0]
    assert webhook.answered == 3  # two refusals, then the one that was taken
    assert sample(name, "failed") - failed_before == 2
    assert said == []  # nothing pending at the stop: no "sending N pending" line


def test_a_burst_of_100_becomes_a_bounded_number_of_messages(tmp_path, store, webhook):
    settings = settings_for(tmp_path, webhook, **{"notify.burst_window_ms": 1_500, "notify.burst_max": 5})
    suppressed_before = sample(hook_name(webhook), "suppressed")
    with running(settings):
        store.write_batch([make_alert(n, device="d_8" if n % 3 else f"d_{n}") for n in range(1, 101)])
        assert wait_until(lambda: len(webhook.texts) >= 6, timeout=8)
        time.sleep(0.3)
    texts = webhook.texts
    assert len(texts) == 6, texts
    assert texts[-1].startswith("*95 more CRITICAL alerts* in the last 1.5 s, 63 on device `d_8`")
    rows = sent_rows(tmp_path / "fraud_alerts.db")
    assert sum(r[4] for r in rows) == 100 and rows[-1][1:] == ("summary", 6, 100, 95)
    assert sample(hook_name(webhook), "suppressed") - suppressed_before == 95


def test_a_stopped_and_restarted_notifier_sends_nothing_twice_and_loses_nothing(tmp_path, any_store, webhook):
    store, flags = any_store
    settings = settings_for(tmp_path, webhook, **flags)
    with running(settings):
        store.write_batch([make_alert(1), make_alert(2)])
        assert wait_until(lambda: len(webhook.texts) == 2)
    store.write_batch([make_alert(3)])  # while no notifier runs
    with running(settings):
        store.write_batch([make_alert(4)])
        assert wait_until(lambda: len(webhook.texts) == 4)
        time.sleep(0.3)
    ids = [alert_id(t) for t in webhook.texts]
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
        assert wait_until(lambda: len({alert_id(t) for t in webhook.texts}) == 10, timeout=10)
        time.sleep(0.3)
    finally:
        proc.kill()
        proc.wait(10)
    ids = [alert_id(t) for t in webhook.texts]
    assert sorted(set(ids)) == [f"a{n:05d}" for n in range(1, 11)]  # nothing lost
    assert len(ids) - 10 <= 1  # at most the message the kill interrupted came twice
    assert 3 <= before < 10


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
        assert max(writes) < 5.0, writes  # a write never waits for a receiver (hanging 30 s); slack for a busy CI
        assert webhook.answered == 0
        webhook.release()
        assert wait_until(lambda: len({alert_id(t) for t in webhook.texts}) == 5, timeout=10)


def test_no_secret_reaches_logs_messages_or_config_show(tmp_path, store, webhook, smtp, caplog, capsys):
    from fraudstream.cli.main import main

    caplog.set_level(logging.DEBUG)
    webhook.fail(1)
    other = Webhook()  # a receiver given as an apprise URL: its path is its key too
    try:
        apprise_url = f"json://127.0.0.1:{other.port}/services/T1/B1/applesecret77"
        settings = settings_for(tmp_path, webhook, smtp, **{"notify.urls": apprise_url})
        with running(settings):
            store.write_batch([make_alert(1)])
            assert wait_until(lambda: len(webhook.texts) == 1 and len(smtp.mails) == 2 and len(other.requests) == 1)
    finally:
        other.stop()
    assert other.requests[0].path == "/services/T1/B1/applesecret77"
    secrets = ["hooksecretXYZ", SMTP_PASSWORD, "pw-SECRET-42", "applesecret77"]
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
    with pytest.raises(ReceiverError, match=r"apprise-[0-9a-f]{8} \(notify.urls item 1\)") as bad:
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


def test_a_refused_email_recipient_is_dropped_after_max_attempts_and_blocks_no_one(tmp_path, store, smtp, caplog):
    smtp.handler.refuse.add(SECOND)
    settings = settings_for(tmp_path, smtp=smtp, **{"notify.max_attempts": 3, "notify.retry_max_backoff_ms": 100})
    bad = receiver_name("email", SECOND)
    failed_before, dropped_before = sample(bad, "failed"), sample(bad, "dropped")
    with running(settings):
        store.write_batch([make_alert(1)])
        assert wait_until(lambda: smtp.handler.refused >= 3, timeout=8)
        store.write_batch([make_alert(2, device="d_9")])
        assert wait_until(lambda: smtp.handler.refused >= 6, timeout=8)
        time.sleep(0.3)
    to_oncall = [m.subject for m in smtp.mails if m.to == [ONCALL]]
    assert to_oncall == ["CRITICAL DEVICE_SHARING_FRAUD · device d_8", "CRITICAL DEVICE_SHARING_FRAUD · device d_9"]
    assert len(smtp.mails) == 2  # once each, however often the other address is refused
    rows = [r for r in sent_rows(tmp_path / "fraud_alerts.db") if r[0] == bad]
    assert [(kind, last) for _, kind, _, last, _ in rows] == [("dropped", 1), ("dropped", 2)]  # and moved on
    assert sample(bad, "failed") - failed_before == 6
    assert sample(bad, "dropped") - dropped_before == 2  # the alerts of the two dropped messages
    dropped = [r for r in caplog.records if "dropped" in r.getMessage()]
    assert len(dropped) == 2 and all(
        r.levelno == logging.WARNING and SMTP_PASSWORD not in r.getMessage() for r in dropped
    )


def test_a_stop_does_not_wait_out_an_unreachable_receiver(tmp_path, store):
    closed = f"http://127.0.0.1:{free_port()}/services/T000/B000/hooksecretXYZ"  # nothing listens there
    settings = settings_for(tmp_path, **{"notify.webhook_url": closed, "notify.timeout_s": 1})
    name = receiver_name("webhook", closed)
    failed_before = sample(name, "failed")
    notifier = Notifier(settings, poll_s=0.05).start()
    said: list[str] = []
    try:
        store.write_batch([make_alert(1), make_alert(2)])
        assert wait_until(lambda: sample(name, "failed") > failed_before, timeout=5)
    finally:
        began = time.monotonic()
        finished = notifier.stop(settings.notify.timeout_s + 5, announce=said.append)
        took = time.monotonic() - began
    assert finished and took < settings.notify.timeout_s + 2, took  # not the whole 6 s budget
    assert said == ["sending 2 pending notifications (up to 6 s; Ctrl-C again skips)"]
    assert sent_rows(tmp_path / "fraud_alerts.db") == []  # the next run sends them


def test_a_dead_receiver_is_said_once_loudly_and_its_gauge_drops(tmp_path, store, webhook, caplog):
    name = hook_name(webhook)
    with running(settings_for(tmp_path, webhook)) as notifier:
        assert REGISTRY.get_sample_value("fraudstream_notify_receiver_up", {"receiver": name}) == 1
        with sqlite3.connect(tmp_path / "fraud_alerts.db") as conn:  # a second notifier moved its position
            conn.execute("UPDATE notify_receivers SET position = position + 7 WHERE receiver = ?", (name,))
        store.write_batch([make_alert(n) for n in range(1, 10)])
        assert wait_until(lambda: notifier.workers[0].dead, timeout=5)
        assert notifier.check() == [name] and notifier.check() == []
    loud = [r for r in caplog.records if r.levelno == logging.ERROR and name in r.getMessage()]
    assert len(loud) == 1 and "STOPPED" in loud[0].getMessage() and "another notifier" in loud[0].getMessage()
    assert REGISTRY.get_sample_value("fraudstream_notify_receiver_up", {"receiver": name}) == 0


def test_a_worker_that_cannot_start_leaves_no_log_filter_behind(tmp_path, webhook):
    def filters() -> int:
        return sum(len(logging.getLogger(n).filters) for n in ("apprise", "urllib3.connectionpool"))

    before = filters()
    settings = settings_for(tmp_path, webhook)  # no store at tmp_path: the worker's connection fails
    with pytest.raises(Exception, match="no alert database"):
        Notifier(settings)
    assert filters() == before


def test_held_back_alerts_are_not_notified_and_takeovers_are_with_their_risk(tmp_path, any_store, webhook):
    """A rule alert the model held back (its order looked normal for the customer) is stored and
    never sent, nor counted as waiting; an ACCOUNT_TAKEOVER is sent like any alert of its
    severity, its risk in the message; the position moves past what was held back."""
    store, flags = any_store
    settings = settings_for(tmp_path, webhook, **{"notify.severities": "HIGH,CRITICAL", **flags})
    store.write_batch([make_alert(1)])  # before the notifier: history, not news
    takeover = make_alert(
        3, severity="HIGH", alert_type="ACCOUNT_TAKEOVER", device="d_new", risk=0.9712,
        message="Risk 0.971 for user u_3's order, unlike their history: a device new to them",
        details={"risk": 0.9712, "reasons": [], "threshold": 0.9},
    )  # fmt: skip
    with running(settings) as notifier:
        store.write_batch([make_alert(2, risk=0.004, held_back=True), takeover, make_alert(4, risk=0.6)])
        assert wait_until(lambda: len(webhook.texts) >= 2)
        time.sleep(0.3)  # nothing else comes
        assert notifier.pending() == 0
    first, second = (t.splitlines() for t in webhook.texts)
    assert len(webhook.texts) == 2 and first[0] == "*HIGH ACCOUNT_TAKEOVER* · user `u_3`"
    assert "Risk: 0.971 (the model's, for this order)" in first
    assert "Risk: 0.600 (the model's, for this order)" in second and "a00004" in second[-1]
    assert not any("a00002" in t for t in webhook.texts)
    assert [r[2:] for r in sent_rows(settings)] == [(3, 3, 1), (4, 4, 1)]


def test_on_postgresql_a_dropped_connection_is_opened_again_and_nothing_is_lost(
    tmp_path, postgres_url, webhook, capsys
):
    """The server drops every connection of the notifier (as a restart or a failover does): it
    connects again and goes on from its stored position; `notify status` reads the same store."""
    from fraudstream.cli.main import main

    settings = settings_for(tmp_path, webhook, **{"store.url": postgres_url})

    def write(*alerts) -> None:
        store = AlertStore.open(settings)
        try:
            store.write_batch(list(alerts))
        finally:
            store.close()

    write(make_alert(1))  # before the notifier: history, not news
    with running(settings) as notifier:
        write(make_alert(2))
        assert wait_until(lambda: len(webhook.texts) == 1)
        # This notifier's own backends only: the database is shared by the session's tests.
        pids = [w._conn.raw.info.backend_pid for w in notifier.workers if w._conn is not None]
        with db.connect(settings) as admin:
            dropped = admin.execute(
                "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE pid = ANY(?)", (pids,)
            ).fetchone()[0]
        assert dropped == len(pids) >= 1  # the worker's connection
        write(make_alert(3), make_alert(4, risk=0.004, held_back=True), make_alert(5))
        assert wait_until(lambda: len(webhook.texts) == 3, timeout=8)
        time.sleep(0.3)  # nothing else comes
        assert notifier.check() == [] and notifier.pending() == 0
    assert [alert_id(t) for t in webhook.texts] == ["a00002", "a00003", "a00005"]
    assert [r[2:] for r in sent_rows(settings)] == [(2, 2, 1), (3, 3, 1), (5, 5, 1)]
    flags = ["--data-dir", str(tmp_path), "--set", f"store.url={postgres_url}"]
    assert main([*flags, "--set", f"notify.webhook_url={webhook.url()}", "notify", "status"]) == 0
    out = capsys.readouterr().out
    assert f"{hook_name(webhook)}: up to store row 5, 0 waiting" in out
    assert "held back as normal for their customer (stored, never notified): 1 alert(s)" in out


def test_a_lost_commit_reply_of_the_ledger_is_not_another_notifier(any_store):
    """The server committed a sent message's record, the reply was lost: the retry finds the
    receiver already at the new position, which is no second notifier."""
    from fraudstream.notify import ledger
    from fraudstream.notify.burst import Window
    from fraudstream.notify.message import Message

    store, _ = any_store
    store.write_batch([make_alert(1), make_alert(2)])
    conn = store.conn
    start = ledger.load_state(conn, "hook", 0)
    message = Message("t", "b", "alert", 1, 2, 2)
    new = ledger.ReceiverState(start.position + 2, Window(5, 1))
    ledger.record_sent(conn, "hook", start.position, new, message, 10)  # committed; say its reply was lost
    ledger.record_sent(conn, "hook", start.position, new, message, 10, retry=True)  # the retry: no conflict
    assert ledger.receiver_states(conn)["hook"].position == new.position
    with pytest.raises(ledger.LedgerConflict):  # not a retry: another notifier moved it
        ledger.record_sent(conn, "hook", start.position, new, message, 10)
    moved = ledger.ReceiverState(new.position + 5, Window(5, 2))
    with pytest.raises(ledger.LedgerConflict):  # a retry, but the store is elsewhere
        ledger.record_sent(conn, "hook", start.position, moved, message, 11, retry=True)
