"""`fraudstream query`: the stored alerts and dead letters, as tables or JSON, from the store of
the settings (SQLite at store.db_path, or PostgreSQL at store.url; --db: a SQLite file).

The group's options (--db, --json, --limit) work before or after the subcommand's name:
`fraudstream query --json stats` and `fraudstream query stats --json` are the same.

Stored text may hold control characters (a store filled before the contract refused them, or
from another producer's topic): tables show them escaped, JSON as `\\uXXXX` escapes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import orjson

from fraudstream.cli.app import resolve_settings
from fraudstream.cli.options import Group, shared_value
from fraudstream.events.text import escape_controls as esc
from fraudstream.events.text import escape_json_controls

if TYPE_CHECKING:
    from fraudstream.store.db import Connection

_ROWS = 20  # rows a listing shows
_TOP_USERS = 5  # users `stats` ranks


def _db_option() -> click.Option:
    return click.Option(
        ["--db"],
        type=click.Path(path_type=Path, dir_okay=False),
        help="SQLite file [store.url if set, else <data-dir>/fraud_alerts.db].",
    )


def _json_option() -> click.Option:
    return click.Option(["--json", "as_json"], is_flag=True, default=None, help="Machine-readable JSON output.")


def _limit_option() -> click.Option:
    return click.Option(
        ["--limit"],
        type=click.IntRange(min=1),
        metavar="N",
        help=f"Rows to show [{_ROWS}]; for stats, the number of top users [{_TOP_USERS}].",
    )


@click.group(
    cls=Group,
    shares=(_db_option, _json_option, _limit_option),
    shares_title="Options of 'query' (accepted before or after the subcommand's name)",
)
def query() -> None:
    """Query stored alerts: stats, all, user ID, high, type TYPE, dead.

    --db, --json and --limit may be given before or after the subcommand:
    'fraudstream query stats --json --db F' is 'fraudstream query --json --db F stats'.
    """


def _fetch(ctx: click.Context, run: Callable[[Connection], Any]) -> Any:
    """Run one read-only query on the chosen database and close it again."""
    from fraudstream.store.db import Location, one_line
    from fraudstream.store.queries import open_read_only

    db_file = shared_value(ctx, "db")
    settings = resolve_settings(ctx, **{"store.db_path": db_file})
    where = Location("sqlite", path=settings.db_path) if db_file is not None else Location.of(settings)
    with one_line(where):
        conn = open_read_only(where, busy_timeout_ms=settings.store.busy_timeout_ms)
        try:
            return run(conn)
        finally:
            conn.close()


def _echo_json(data: Any) -> None:
    click.echo(escape_json_controls(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode()))


def _as_json(ctx: click.Context) -> bool:
    return bool(shared_value(ctx, "as_json"))


def _limit(ctx: click.Context, default: int = _ROWS) -> int:
    return shared_value(ctx, "limit", default)


def _risk_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """The listings' filters on the learned model's marks and the rule version (docs/commands.md)."""
    f = click.option(
        "--rule-version",
        type=click.IntRange(min=0),
        metavar="N",
        help="Only alerts raised by version N of the live rules (0: the settings' own; see 'fraudstream rules history').",
    )(f)
    f = click.option(
        "--min-risk",
        type=click.FloatRange(0, 1),
        metavar="R",
        help="Only alerts whose order's risk is at least R (alerts without a risk are left out).",
    )(f)
    return click.option(
        "--held-back/--no-held-back",
        default=None,
        help="Only the alerts held back as normal for their customer (risk under alerts.min_risk), or none of them.",
    )(f)


def _risk_filter(held_back: bool | None, min_risk: float | None, rule_version: int | None) -> dict[str, Any]:
    return {"held_back": held_back, "min_risk": min_risk, "rule_version": rule_version}


def _show(ctx: click.Context, title: str, run: Callable[[Connection, int], list[dict[str, Any]]]) -> None:
    from tabulate import tabulate

    from fraudstream.cli.format import iso

    rows = _fetch(ctx, lambda conn: run(conn, _limit(ctx)))
    if _as_json(ctx):
        _echo_json(rows)
        return
    click.echo(f"{esc(title)} ({len(rows)} shown)")
    if not rows:
        click.echo("   (none)")
        return
    # The model's columns only when a shown alert has a risk or is held back: a store without
    # a model lists as before.
    scored = any(r.get("risk") is not None or r.get("held_back") for r in rows)
    # The rules column ("v3") only when a shown alert names the rule version that raised it.
    versioned = any(r.get("rule_version") is not None for r in rows)
    shown = []
    for r in rows:
        r = dict(r)
        for k in ("event_time", "detected_at", "seen_at"):
            if k in r:
                r[k] = iso(r[k])
        if r.get("amount") is not None:
            r["amount"] = f"{r['amount']:,.2f}"
        r.pop("alert_id", None)
        risk, held = r.pop("risk", None), r.pop("held_back", None)
        version = r.pop("rule_version", None)
        if versioned:  # beside the type and severity it set, not after the long message
            placed: dict[str, Any] = {}
            for k, v in r.items():
                placed[k] = v
                if k == "severity":
                    placed["rules"] = "-" if version is None else f"v{version}"
            r = placed
        if scored:
            out: dict[str, Any] = {}
            for k, v in r.items():
                out[k] = v
                if k == "amount":
                    out["risk"] = "-" if risk is None else f"{risk:.3f}"
                    out["held back"] = "yes" if held else ""
            r = out
        shown.append({k: esc(v) if isinstance(v, str) else v for k, v in r.items()})
    click.echo(tabulate(shown, headers="keys", tablefmt="simple"))


@query.command("stats")
@click.pass_context
def query_stats(ctx: click.Context) -> None:
    """Totals, counts by type and severity, top users, alerts in the last hour."""
    from fraudstream.store import queries

    top = _limit(ctx, _TOP_USERS)
    data = _fetch(ctx, lambda conn: queries.stats(conn, int(time.time() * 1000), top=top))
    if _as_json(ctx):
        _echo_json(data)
        return
    click.echo("Fraud detection statistics")
    click.echo("=" * 60)
    click.echo(f"Total alerts: {data['total_alerts']}")
    sections = [
        ("Alerts by type", "by_type", "alert_type", "alerts"),
        ("Alerts by severity", "by_severity", "severity", "alerts"),
        ("Top users by alerts", "top_users", "user_id", "alerts"),
    ]
    for title, key, label, count in sections:
        click.echo(f"\n{title}:")
        for r in data[key]:
            click.echo(f"   {esc(str(r[label])):<22} {r[count]}")
    if data["held_back"]:
        click.echo(f"\nHeld back (looked normal for the customer, not notified): {data['held_back']}")
    click.echo(f"\nAlerts detected in the last hour: {data['alerts_last_hour']}")
    if data["dead_letters"]:
        click.echo("\nDead letters by reason:")
        for r in data["dead_letters"]:
            click.echo(f"   {esc(str(r['reason'])):<22} {r['records']}")
    click.echo("=" * 60)


@query.command("all")
@_risk_options
@click.pass_context
def query_all(ctx: click.Context, held_back: bool | None, min_risk: float | None, rule_version: int | None) -> None:
    """Most recent alerts (by event time)."""
    from fraudstream.store import queries

    risk = _risk_filter(held_back, min_risk, rule_version)
    _show(ctx, "Recent alerts", lambda conn, limit: queries.recent(conn, limit, **risk))


@query.command("user")
@click.argument("user_id")
@_risk_options
@click.pass_context
def query_user(
    ctx: click.Context, user_id: str, held_back: bool | None, min_risk: float | None, rule_version: int | None
) -> None:
    """Alerts of one user."""
    from fraudstream.store import queries

    risk = _risk_filter(held_back, min_risk, rule_version)
    _show(ctx, f"Alerts for user {user_id}", lambda conn, limit: queries.for_user(conn, user_id, limit, **risk))


@query.command("high")
@_risk_options
@click.pass_context
def query_high(ctx: click.Context, held_back: bool | None, min_risk: float | None, rule_version: int | None) -> None:
    """HIGH and CRITICAL alerts."""
    from fraudstream.store import queries

    risk = _risk_filter(held_back, min_risk, rule_version)
    _show(ctx, "HIGH and CRITICAL alerts", lambda conn, limit: queries.high_priority(conn, limit, **risk))


@query.command("type")
@click.argument("alert_type")
@_risk_options
@click.pass_context
def query_type(
    ctx: click.Context, alert_type: str, held_back: bool | None, min_risk: float | None, rule_version: int | None
) -> None:
    """Alerts of one type (VELOCITY_FRAUD, HIGH_VALUE_FRAUD, ACCOUNT_TAKEOVER, ...)."""
    from fraudstream.store import queries

    kind = alert_type.upper()
    risk = _risk_filter(held_back, min_risk, rule_version)
    _show(ctx, f"{kind} alerts", lambda conn, limit: queries.of_type(conn, kind, limit, **risk))


@query.command("dead")
@click.pass_context
def query_dead(ctx: click.Context) -> None:
    """Most recent dead letters with their reasons."""
    from fraudstream.store import queries

    _show(ctx, "Dead letters", queries.dead_letters)
