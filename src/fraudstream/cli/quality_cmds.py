"""`fraudstream evaluate` and `fraudstream backtest`: how good the rules are, and would be."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import orjson

from fraudstream.cli.app import UserError, global_options, resolve_settings, sigterm_as_interrupt
from fraudstream.cli.options import Command
from fraudstream.config import PROFILES, Settings, load_settings, parse_set_option
from fraudstream.evaluation import MATCHING_RULE

if TYPE_CHECKING:
    from fraudstream.store.db import Location

_RULE_HELP = "\b\nMatching rule:\n" + MATCHING_RULE.replace("\n\n", "\n")


def _time(text: str | None, option: str) -> int | None:
    """Epoch ms from an ISO-8601 time (UTC unless it says otherwise)."""
    if text is None:
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UserError(f"{option} expects an ISO-8601 time such as 2026-01-01T06:00, got '{text}'") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


def _topic(spec: str, default: str) -> str | None:
    """`kafka` or `kafka:TOPIC` -> the topic; anything else -> None (a path)."""
    if spec == "kafka":
        return default
    if spec.startswith("kafka:"):
        return spec.removeprefix("kafka:") or default
    return None


def _load_events(settings: Settings, spec: str | None, start: int | None, end: int | None) -> tuple[list, Any]:
    from fraudstream.evaluation import LoadStats, iter_labelled, load_jsonl, load_parquet

    stats = LoadStats()
    spec = spec or str(settings.data_dir / "archive")
    topic = _topic(spec, settings.kafka.raw_topic)
    if topic is not None:
        from fraudstream.kafka.clients import read_topic

        return list(iter_labelled((_json(v) for v in read_topic(settings.kafka, topic)), start, end, stats)), stats
    path = Path(spec).expanduser()
    if path.is_dir():
        return load_parquet(path, start, end, stats), stats
    if path.is_file():
        return load_jsonl(path, start, end, stats), stats
    raise UserError(f"no events at {path}: give a JSON-lines file, an archive directory, or kafka[:TOPIC]")


def _load_alerts(settings: Settings, spec: str | None, start: int | None, end: int | None) -> list:
    from fraudstream.evaluation import load_alerts
    from fraudstream.evaluation.alerts import load_alerts_store
    from fraudstream.store.db import Location

    topic = _topic(spec, settings.kafka.alerts_topic) if spec else None
    if topic is not None:
        from fraudstream.kafka.clients import read_topic

        return load_alerts((_json(v) for v in read_topic(settings.kafka, topic)), start, end)
    if spec is None:
        store = Location.of(settings)  # SQLite at db_path, or PostgreSQL with store.url
    elif spec.startswith(("postgresql://", "postgres://")):
        store = Location("postgresql", url=spec)
    else:
        store = Location("sqlite", path=Path(spec).expanduser())
    return load_alerts_store(store, start, end)


def _json(value: bytes) -> Any:
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        return None  # counted as unreadable


def _write_outputs(
    data: dict[str, Any],
    json_out: Path | None,
    chart: Path | None,
    report: Any = None,
    title: str | None = None,
    err: bool = False,
) -> None:
    """Write the JSON and chart files asked for; `err`: say so on stderr (stdout holds --json's JSON)."""
    from fraudstream.evaluation import save_chart

    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2))
        click.echo(f"JSON written to {json_out}", err=err)
    if chart is not None and report is not None:
        chart.parent.mkdir(parents=True, exist_ok=True)
        save_chart(report, chart, **({"title": title} if title else {}))
        click.echo(f"Chart written to {chart}", err=err)


_PERIOD = [
    click.option("--from", "start", metavar="TIME", help="Only events at or after this ISO-8601 time (UTC)."),
    click.option("--to", "end", metavar="TIME", help="Only events before this ISO-8601 time (UTC)."),
]
_OUTPUTS = [
    click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table."),
    click.option(
        "--json-out", type=click.Path(path_type=Path, dir_okay=False), help="Also write the JSON to this file."
    ),
    click.option(
        "--chart",
        type=click.Path(path_type=Path, dir_okay=False),
        help="Write a PNG bar chart of precision and recall per detector (backtest: of the candidate).",
    ),
]


def _options(options: list) -> Any:
    def wrap(f: Any) -> Any:
        for option in reversed(options):
            f = option(f)
        return f

    return wrap


@click.command(cls=Command, epilog=_RULE_HELP)
@click.option(
    "--events",
    metavar="SOURCE",
    help="Labelled events: a JSON-lines file, a Parquet archive directory, or kafka[:TOPIC] [<data-dir>/archive].",
)
@click.option(
    "--alerts",
    metavar="SOURCE",
    help="Alerts of the run: a SQLite file, a postgresql:// URL or kafka[:TOPIC] [the store: store.url, else "
    "<data-dir>/fraud_alerts.db].",
)
@_options(_PERIOD + _OUTPUTS)
@click.option(
    "--reviews",
    is_flag=True,
    help="Score the rules from analysts' verdicts in the store instead of labels (precision only).",
)
@click.option(
    "--db",
    type=click.Path(path_type=Path, dir_okay=False),
    help="With --reviews: a SQLite store holding the verdicts [the store: store.url, else <data-dir>/fraud_alerts.db].",
)
@click.pass_context
def evaluate(ctx: click.Context, events: str | None, alerts: str | None, start: str | None, end: str | None,
             as_json: bool, json_out: Path | None, chart: Path | None, reviews: bool, db: Path | None) -> None:  # fmt: skip
    """Detection quality of a run: precision, recall, F1, false alerts and time to detect.

    Scores the alerts of a run against the ground-truth labels the generator puts on every
    event (`behavior`: the fraud pattern, `fraud_actor`: the ring, farm or account behind it),
    per detector and overall. The events and the alerts should cover the same period.

    With --reviews, where events carry no labels (production): precision per rule from the
    verdicts analysts gave in the dashboard (confirmed fraud or false positive), with how many
    of the rule's alerts were reviewed and a 95% confidence interval.
    """
    from fraudstream.evaluation import evaluate as score
    from fraudstream.evaluation import format_table, report_to_json

    if reviews:
        given = [name for name, value in (("--events", events), ("--alerts", alerts), ("--from", start),
                                          ("--to", end), ("--chart", chart)) if value is not None]  # fmt: skip
        if given:
            raise UserError(
                f"{', '.join(given)}: not used with --reviews, which scores every reviewed alert in the store"
            )
        from fraudstream.store.db import Location

        settings = resolve_settings(ctx)
        _evaluate_reviews(Location("sqlite", path=db) if db is not None else Location.of(settings), as_json, json_out)
        return
    if db is not None:
        raise UserError("--db goes with --reviews; give the alerts of a run to score against labels with --alerts")
    settings = resolve_settings(ctx)
    start_ms, end_ms = _time(start, "--from"), _time(end, "--to")
    labelled, stats = _load_events(settings, events, start_ms, end_ms)
    if not labelled:
        raise UserError("no labelled events in the period asked for: nothing to evaluate")
    report = score(labelled, _load_alerts(settings, alerts, start_ms, end_ms), event_stats=stats)
    data = report_to_json(report)
    click.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() if as_json else format_table(report))
    _write_outputs(data, json_out, chart, report, err=as_json)


def _evaluate_reviews(path: Location, as_json: bool, json_out: Path | None) -> None:
    """`evaluate --reviews`: the verdicts in force and the alert counts from the store, scored."""
    from fraudstream.evaluation.output import format_review_table, review_report_to_json
    from fraudstream.evaluation.reviews import score_reviews
    from fraudstream.store import db
    from fraudstream.store.queries import stats
    from fraudstream.store.reviews import reviewed_alerts

    conn = db.connect(path, read_only=True)  # a missing store is one line (main turns StoreMissingError into it)
    try:
        if not conn.has_table("fraud_alerts"):
            raise db.StoreMissingError(f"{path} has no fraud_alerts table: run 'fraudstream run' first")
        # One snapshot for verdicts and counts, while the dashboard writes (PostgreSQL's default
        # isolation takes one per statement).
        conn.execute("BEGIN" if conn.dialect == "sqlite" else "BEGIN ISOLATION LEVEL REPEATABLE READ")
        # A store written before triage existed has no verdicts table yet: no reviews, not an error.
        verdicts = reviewed_alerts(conn) if conn.has_table("alert_reviews") else []
        counts = {r["alert_type"]: r["alerts"] for r in stats(conn, int(time.time() * 1000))["by_type"]}
    finally:
        conn.close()
    report = score_reviews(verdicts, counts)
    data = review_report_to_json(report)
    # The JSON is printed either way (a script wants the shape); the person gets one line of help.
    if verdicts:
        click.echo(f"Precision from analysts' verdicts in {path}", err=as_json)
    else:
        click.echo(
            f"No reviewed alerts in {path} ({report.rows[-1].alerts:,} alerts stored): open the dashboard "
            "('fraudstream dashboard'), mark alerts as confirmed fraud or false positive, then run this again.",
            err=as_json,
        )
    if as_json:
        click.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())
    elif verdicts:
        click.echo(format_review_table(report))
    _write_outputs(data, json_out, None, err=as_json)


@click.command(cls=Command, epilog=_RULE_HELP)
@click.option(
    "--archive",
    type=click.Path(path_type=Path, file_okay=False),
    help="Raw-event archive to replay [archive.path, i.e. <data-dir>/archive].",
)
@_options(_PERIOD)
@click.option(
    "--set",
    "candidate_set",
    multiple=True,
    metavar="SECTION.KEY=VALUE",
    help="A change to try (repeatable), e.g. --set detectors.velocity_threshold=5 or --set velocity.threshold=5. "
    "After 'backtest', --set is the candidate's; a global --set before it applies to both runs.",
)
@click.option(
    "--candidate-config",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Try another settings file instead (with --set applied on top).",
)
@click.option(
    "--candidate-profile",
    type=click.Choice(sorted(PROFILES)),
    help="Try a named profile instead of the baseline's (with --set applied on top).",
)
@click.option(
    "--work-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Where the two runs keep their stores and logs [<data-dir>/backtests/<time>].",
)
@_options(_OUTPUTS)
@click.pass_context
def backtest(ctx: click.Context, archive: Path | None, start: str | None, end: str | None,
             candidate_set: tuple[str, ...], candidate_config: Path | None, candidate_profile: str | None,
             work_dir: Path | None,
             as_json: bool, json_out: Path | None, chart: Path | None) -> None:  # fmt: skip
    """Judge a settings change on history before it ships.

    Replays the archived orders of a period (--from/--to) through the same Flink job, bounded,
    twice: with the current settings (the baseline) and with the change (the candidate), each
    into its own store, then evaluates both against the events' labels and prints them side by
    side with the differences.

    \b
    Example:
      fraudstream backtest --from 2026-01-01T00:00 --to 2026-01-01T12:00 \\
          --set velocity.threshold=5 --set geo.window_minutes=15
    """
    from fraudstream.backtest import archived_period, run_replay
    from fraudstream.cli.logs import configure_logging
    from fraudstream.evaluation import (
        compare,
        compare_to_json,
        load_alerts_sqlite,
        load_jsonl,
        report_to_json,
    )
    from fraudstream.evaluation import evaluate as score

    baseline = resolve_settings(ctx)
    if not candidate_set and candidate_config is None and candidate_profile is None:
        raise click.UsageError(
            "nothing to try: give --set SECTION.KEY=VALUE, --candidate-config FILE or --candidate-profile NAME"
        )
    given = global_options(ctx)
    overrides = {**given.overrides(), **parse_set_option(candidate_set)}
    candidate = load_settings(candidate_config or given.config, overrides, profile=candidate_profile or given.profile)
    configure_logging(baseline)
    start_ms, end_ms = _time(start, "--from"), _time(end, "--to")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    work = (work_dir or baseline.data_dir / "backtests" / stamp).resolve()
    archive_dir = archive or Path(baseline.archive.path or baseline.data_dir / "archive")
    events = work / "events.jsonl"
    started = time.monotonic()
    count = archived_period(archive_dir.expanduser().resolve(), start_ms, end_ms, events)
    click.echo(f"Backtest over {count:,} archived orders from {archive_dir} (work directory {work})")
    changed = _changes(baseline, candidate)
    click.echo("Candidate: " + (", ".join(f"{k} {a} -> {b}" for k, a, b in changed) or "no change"))
    with sigterm_as_interrupt():  # SIGTERM stops the replay running, as Ctrl-C does
        runs = [
            run_replay(name, s, events, work, click.echo)
            for name, s in (("baseline", baseline), ("candidate", candidate))
        ]
    labelled = load_jsonl(events)
    reports = [score(labelled, load_alerts_sqlite(r.settings.db_path)) for r in runs]
    data = {
        "events": count,
        "from": start,
        "to": end,
        "changes": [{"setting": k, "baseline": a, "candidate": b} for k, a, b in changed],
        "baseline": report_to_json(reports[0]),
        "candidate": report_to_json(reports[1]),
        "comparison": compare_to_json(*reports),
    }
    (work / "backtest.json").write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2))
    click.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() if as_json else compare(*reports))
    click.echo(f"Backtest took {time.monotonic() - started:.0f}s; both runs' stores and logs are in {work}")
    _write_outputs(data, json_out, chart, reports[1], "Detection quality of the candidate settings")


def _changes(a: Settings, b: Settings) -> list[tuple[str, Any, Any]]:
    """The settings that differ between two runs, as dotted keys (the data directory aside)."""
    left, right = a.model_dump(mode="json"), b.model_dump(mode="json")
    out = []
    for section, values in left.items():
        if not isinstance(values, dict):
            continue
        for key, value in values.items():
            if right[section][key] != value:
                out.append((f"{section}.{key}", value, right[section][key]))
    return out
