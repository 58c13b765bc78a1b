"""`fraudstream notify test|status`: try the receivers, and see what they were sent."""

from __future__ import annotations

import click

from fraudstream.cli.app import UserError, resolve_settings
from fraudstream.cli.options import Group
from fraudstream.notify import ledger
from fraudstream.notify.message import clean, render_test, utc_iso
from fraudstream.notify.receivers import Sender, receivers
from fraudstream.store import db


@click.group("notify", cls=Group)
def notify_group() -> None:
    """Notifications of committed alerts to chat and email (settings: notify.*)."""


@notify_group.command("test")
@click.pass_context
def notify_test(ctx: click.Context) -> None:
    """Send a test message to every configured receiver (nothing is recorded in the store)."""
    from fraudstream.cli.logs import configure_logging

    settings = resolve_settings(ctx)
    configure_logging(settings)
    found = receivers(settings.notify)
    if not found:
        raise UserError("no receiver is set: set notify.webhook_url, notify.smtp_host or notify.urls")
    failed = 0
    for receiver in found:
        sender = Sender(receiver)
        try:
            ok = sender.send(render_test(settings.dashboard.url, receiver.name, receiver.style))
        finally:
            sender.close()
        click.echo(f"{receiver.name} ({receiver.where}): {'sent' if ok else 'FAILED (details in the log)'}")
        failed += not ok
    if failed:
        ctx.exit(1)


@notify_group.command("status")
@click.option("--last", default=10, show_default=True, type=click.IntRange(0, 1000), help="Recent messages to list.")
@click.pass_context
def notify_status(ctx: click.Context, last: int) -> None:
    """Each receiver's position in the store, what waits for it, and the latest messages sent."""
    settings = resolve_settings(ctx)
    configured = {r.name for r in receivers(settings.notify)}
    # Read-only: a store no notifier ever ran on has no notify tables, and gets none here.
    conn = db.connect(settings, read_only=True)  # SQLite, or PostgreSQL with store.url
    try:
        states = ledger.receiver_states(conn) if ledger.has_schema(conn) else {}
        if not states:
            click.echo("no notifications sent from this store yet")
            return
        for name, state in states.items():
            waiting = ledger.count_pending(conn, state.position, settings.notify.severities)
            w = state.window
            window = f", window since {utc_iso(w.start_ms)}: {w.sent} sent" if w.start_ms is not None else ""
            gone = "" if name in configured else " (not configured)"
            click.echo(f"{name}{gone}: up to store row {state.position}, {waiting} waiting{window}")
        held = ledger.count_held_back(conn, settings.notify.severities)
        if held:
            click.echo(f"held back as normal for their customer (stored, never notified): {held} alert(s)")
        rows = ledger.recent_sent(conn, last)
        if rows:
            click.echo("")
        for r in rows:
            click.echo(f"{utc_iso(r.sent_at)}  {r.receiver:<16} {r.kind:<7} {r.alerts:>5}  {clean(r.headline, 100)}")
    finally:
        conn.close()
