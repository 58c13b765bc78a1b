"""`fraudstream rules show | history | set | revert`: the versioned rules on the rules topic.

Thin glue: the model (fraudstream.rules.model) checks a change, the trial
(fraudstream.rules.trial) backtests it, the topic layer (fraudstream.rules.topic) reads and
publishes. A change is checked before anything slow runs, and published only when confirmed.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

import click
import orjson
from tabulate import tabulate

from fraudstream.cli.app import UserError, resolve_settings, sigterm_as_interrupt
from fraudstream.cli.options import Group
from fraudstream.config import Settings
from fraudstream.rules.model import Limits, NothingChanges, RuleError, RuleSet, show_value

# What a running job does with a published version (docs/rules.md, "In the running job").
APPLIED = "live jobs (sql engine, --source kafka) apply it from the event time their orders have reached"
APPLIED_AT = "live jobs (sql engine, --source kafka) apply it from event time {at}"


@click.group("rules", cls=Group)
def rules_group() -> None:
    """The detection rules as versions on the rules topic (rules.topic): each rule's switch,
    threshold, window, cooldown and severity, and the model's takeover_risk and min_risk.

    Version 0 is the settings' own rules; every change publishes the whole set as the next
    version, backtested first on the archive's last hours; a live job (sql engine, --source
    kafka) applies it from the event time its orders have reached (docs/rules.md).

    \b
    Examples:
      fraudstream rules show
      fraudstream rules set velocity.threshold=5 geo.window_minutes=30 --comment "fewer repeats"
      fraudstream rules set high_value.enabled=false --no-backtest --yes
      fraudstream rules history --limit 5
      fraudstream rules revert 2 --comment "back to Tuesday's rules"
    """


def _json(data: Any) -> str:
    return orjson.dumps(data, option=orjson.OPT_INDENT_2).decode()


def _ms(ms: int | None) -> str:
    from fraudstream.rules.topic import when

    return "-" if ms is None else when(ms)


def _describe(rules: RuleSet) -> str:
    made = "the settings' own rules" if rules.version == 0 else f"by {rules.author or '?'} at {_ms(rules.created_at)}"
    lines = [f"Version {rules.version} ({made})"]
    if rules.comment:
        lines.append(f"Comment: {rules.comment}")
    if rules.reverts is not None:
        lines.append(f"Reverts to version {rules.reverts}")
    if rules.effective_from is not None:
        lines.append(f"Effective from (event time): {_ms(rules.effective_from)}")
    return "\n".join(lines)


@rules_group.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print the version as its rules-topic message (JSON).")
@click.pass_context
def rules_show(ctx: click.Context, as_json: bool) -> None:
    """The rules in force: the rules topic's latest version, else the settings' own (version 0),
    each key with its value and the settings' value where they differ."""
    from fraudstream.rules.topic import read_history

    settings = resolve_settings(ctx)
    history = read_history(settings)
    own = RuleSet.from_settings(settings)
    rules = history.latest or own
    if as_json:
        click.echo(_json(rules.to_message()))
        return
    click.echo(_describe(rules))
    if not history.topic_exists:
        click.echo(f"(no rules topic '{settings.rules.topic}' yet)")
    settings_values = dict(own.items())
    rows = [
        [key, show_value(value), "" if value == settings_values[key] else show_value(settings_values[key])]
        for key, value in rules.items()
    ]
    click.echo(tabulate(rows, headers=["Key", "Value", "Settings' value (if other)"], tablefmt="simple"))
    if history.rejected:
        click.echo(f"{len(history.rejected)} message(s) on the topic were rejected: see 'fraudstream rules history'")


@rules_group.command("history")
@click.option("--json", "as_json", is_flag=True, help="Print the versions (and rejected messages) as JSON.")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True, help="Newest versions to show.")
@click.pass_context
def rules_history(ctx: click.Context, as_json: bool, limit: int) -> None:
    """The published versions, newest first: who, when, why and what changed; and the messages
    the job would reject (with their offset and reason)."""
    from fraudstream.rules.topic import read_history

    settings = resolve_settings(ctx)
    history = read_history(settings)
    versions = list(reversed(history.versions))[:limit]
    if as_json:
        click.echo(
            _json(
                {
                    "topic": settings.rules.topic,
                    "topic_exists": history.topic_exists,
                    "versions": [v.to_message() for v in versions],
                    "rejected": [{"offset": o, "reason": r} for o, r in history.rejected],
                }
            )
        )
        return
    if not history.versions:
        click.echo(
            f"No versions on the rules topic '{settings.rules.topic}': the settings' own rules (version 0) apply"
        )
    else:
        rows = [[v.version, _ms(v.created_at), v.author, "; ".join(v.changes) or "-", v.comment] for v in versions]
        click.echo(tabulate(rows, headers=["Version", "Published", "Author", "Changes", "Comment"], tablefmt="simple"))
    for offset, reason in history.rejected:
        click.echo(f"rejected at offset {offset}: {reason}")


def _effective_from(text: str | None) -> int | None:
    from fraudstream.cli.quality_cmds import _time

    if text is None:
        return None
    if text.strip().isdigit():
        return int(text)
    return _time(text, "--effective-from")


_PUBLISH_OPTIONS = [
    click.option("--comment", default="", help="Why: kept with the version in the history."),
    click.option(
        "--effective-from",
        metavar="ISO|MS",
        help="The event time the version asks to apply from (ISO-8601, UTC unless said, or epoch ms) "
        "[when the job's watermark reaches it].",
    ),
    click.option(
        "--hours",
        type=click.FloatRange(min=0, max=24 * 7),
        help="Backtest over the archive's last H hours [rules.backtest_hours]; 0: none.",
    ),
    click.option("--no-backtest", is_flag=True, help="Publish without backtesting the change."),
    click.option("--yes", "-y", is_flag=True, help="Publish without asking (needed when not on a terminal)."),
    click.option("--json", "as_json", is_flag=True, help="Print the result (version, changes, backtest) as JSON."),
]


def _publish_options(f: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(_PUBLISH_OPTIONS):
        f = option(f)
    return f


def _refuse(ctx: click.Context, exc: RuleError) -> None:
    """A change that is not valid: one line, exit 2 (as a usage mistake), nothing published."""
    click.echo(f"fraudstream: error: {exc}", err=True)
    ctx.exit(2)


@rules_group.command("set")
@click.argument("changes", nargs=-1, required=True, metavar="KEY=VALUE...")
@_publish_options
@click.pass_context
def rules_set(ctx: click.Context, changes: tuple[str, ...], comment: str, effective_from: str | None,
              hours: float | None, no_backtest: bool, yes: bool, as_json: bool) -> None:  # fmt: skip
    """Change rules: check the change, backtest it, ask, then publish it as the next version.

    Keys: <rule>.enabled|threshold|window_ms|window_minutes|cooldown_ms|cooldown_minutes|severity
    for the rules velocity, device_sharing, high_value, geo (not every rule has every knob), and
    model.takeover_risk, model.min_risk. See docs/rules.md for the ranges.

    \b
    Example:
      fraudstream rules set velocity.threshold=5 geo.severity=LOW --comment "calmer geo"
    """
    from fraudstream.rules.topic import current

    settings = resolve_settings(ctx)
    given: dict[str, str] = {}
    for part in changes:
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            _refuse(ctx, RuleError(f"say each change as KEY=VALUE, e.g. velocity.threshold=5 (not {part!r})"))
        given[key.strip()] = value.strip()
    limits = Limits.from_settings(settings)
    try:  # keys, types and ranges first, against the settings' own rules: no broker needed to refuse
        RuleSet.from_settings(settings).with_changes(given, limits, comment=comment)
    except NothingChanges:
        pass  # that one depends on the version in force, read next
    except RuleError as exc:
        _refuse(ctx, exc)
    base = current(settings)
    try:
        candidate = base.with_changes(given, limits, author=settings.rules.author, comment=comment)
    except RuleError as exc:
        _refuse(ctx, exc)
        return
    _go(ctx, settings, candidate, effective_from, hours, no_backtest, yes, as_json)


@rules_group.command("revert")
@click.argument("version", type=click.IntRange(min=0))
@_publish_options
@click.pass_context
def rules_revert(ctx: click.Context, version: int, comment: str, effective_from: str | None,
                 hours: float | None, no_backtest: bool, yes: bool, as_json: bool) -> None:  # fmt: skip
    """Publish the rules of an earlier VERSION again, as the next version (0: the settings' own).

    \b
    Example:
      fraudstream rules revert 3 --comment "version 4 raised too many alerts"
    """
    from fraudstream.rules.topic import read_history

    settings = resolve_settings(ctx)
    history = read_history(settings)
    own = RuleSet.from_settings(settings)
    base = history.latest or own
    found = {v.version: v for v in history.versions}
    found.setdefault(0, own)
    try:
        if version not in found:
            known = ", ".join(str(v) for v in sorted(found))
            raise RuleError(f"no version {version} on the rules topic (versions: {known})")
        if version == base.version:
            raise RuleError(f"version {version} is the one in force: nothing to revert")
        old = found[version]
        if dict(old.items()) == dict(base.items()):
            raise RuleError(f"version {version} has the rules in force already: nothing would change")
        candidate = base.reverted_to(old, Limits.from_settings(settings), author=settings.rules.author, comment=comment)
    except RuleError as exc:
        _refuse(ctx, exc)
        return
    _go(ctx, settings, candidate, effective_from, hours, no_backtest, yes, as_json)


def _go(ctx: click.Context, settings: Settings, candidate: RuleSet, effective_from: str | None,
        hours: float | None, no_backtest: bool, yes: bool, as_json: bool) -> None:  # fmt: skip
    """Shared end of set and revert: the change, the trial, the question, the publish."""
    import dataclasses

    from fraudstream.rules.topic import publish

    if no_backtest and hours is not None:
        raise click.UsageError("--hours and --no-backtest do not go together")
    if not yes and not sys.stdin.isatty():  # before the backtest: it would be minutes for nothing
        raise UserError(f"not publishing version {candidate.version}: not on a terminal, say --yes to publish")
    at = _effective_from(effective_from)
    if at is not None:
        candidate = dataclasses.replace(candidate, effective_from=at)
    out = click.echo if not as_json else (lambda s: click.echo(s, err=True))
    out(
        f"Version {candidate.version}"
        + (f" (reverts to version {candidate.reverts})" if candidate.reverts is not None else "")
    )
    for line in candidate.changes:
        out(f"  {line}")
    if at is not None:
        out(f"  effective from {_ms(at)} (event time)")
    result: dict[str, Any] = {"version": candidate.version, "changes": list(candidate.changes)}
    if not no_backtest:
        from fraudstream.rules.trial import trial

        started = time.monotonic()

        def echo(line: str) -> None:
            click.echo(f"[{time.monotonic() - started:5.1f}s] {line}", err=True)

        with sigterm_as_interrupt():
            found = trial(settings, candidate, hours, echo)
        out(found.table())
        result["backtest"] = found.to_dict()
    if not yes and not click.confirm(f"Publish version {candidate.version}?", default=False, err=as_json):
        out("Not published.")
        ctx.exit(1)
    publish(settings, candidate)
    result["published"] = True
    if as_json:
        click.echo(_json(result))
    applied = APPLIED if at is None else APPLIED_AT.format(at=_ms(at))
    click.echo(f"published version {candidate.version}; {applied}", err=as_json)
