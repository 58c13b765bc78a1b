"""`fraudstream train` and `fraudstream model show|evaluate`: the learned risk model's commands."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import orjson
from tabulate import tabulate

from fraudstream.cli.app import UserError, resolve_settings
from fraudstream.cli.options import Command, Group
from fraudstream.cli.quality_cmds import _time

_ALGORITHMS = ("hgb", "forest", "logistic")


def _progress(started: float) -> Any:
    def say(message: str) -> None:
        click.echo(f"[{time.monotonic() - started:5.1f}s] {message}", err=True)

    return say


def writable_folder(path: Path, what: str) -> None:
    """Refuse, before any work, a file that cannot be written there: its nearest existing
    folder must be a folder we may write in (one line, not a traceback after minutes)."""
    import os

    if path.is_dir():
        raise UserError(f"{what} {path} is a folder, not a file")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(f"cannot write {what} {path}: {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"cannot write {what} {path}: {parent} is not writable")


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.1f} %"


def _num(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


@click.command(cls=Command)
@click.option(
    "--archive",
    type=click.Path(path_type=Path, file_okay=False),
    help="Raw-event archive to train on [archive.path, i.e. <data-dir>/archive].",
)
@click.option("--from", "start", metavar="TIME", help="Only orders at or after this ISO-8601 time (UTC).")
@click.option("--to", "end", metavar="TIME", help="Only orders before this ISO-8601 time (UTC).")
@click.option(
    "--labels",
    type=click.Choice(("generator", "reviews", "none")),
    default="generator",
    show_default=True,
    help="generator: the events' behavior labels; reviews: analysts' verdicts in the store (confirmed = fraud, "
    "false positive and never alerted = honest, alerted but unreviewed = left out); none: an isolation forest.",
)
@click.option(
    "--db",
    type=click.Path(path_type=Path, dir_okay=False),
    help="With --labels reviews: a SQLite store holding the verdicts [the store: store.url, else "
    "<data-dir>/fraud_alerts.db].",
)
@click.option("--algorithm", type=click.Choice(_ALGORITHMS), default="hgb", show_default=True,
              help="hgb: gradient-boosted trees (the default, docs/model.md); forest; logistic.")  # fmt: skip
@click.option("--holdout", type=click.FloatRange(0.05, 0.5), default=0.2, show_default=True,
              help="Share of the period, the newest orders, kept out of the fit to evaluate the model.")  # fmt: skip
@click.option(
    "-o", "--output", type=click.Path(path_type=Path, dir_okay=False),
    help="Model file to write [<data-dir>/models/<version>.zip].",
)  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the model's description as JSON.")
@click.pass_context
def train(ctx: click.Context, archive: Path | None, start: str | None, end: str | None, labels: str,
          db: Path | None, algorithm: str, holdout: float, output: Path | None, as_json: bool) -> None:  # fmt: skip
    """Train the risk model on an archived period and write a versioned model file.

    Replays the archived orders of the period through the behavioural features (the values
    the job computes), labels each order, fits, holds the newest orders out to evaluate the
    model, exports it to ONNX and checks that the written file scores those orders exactly
    as evaluated. Then: fraudstream run --model FILE (docs/model.md).

    \b
    Example:
      fraudstream train --from 2026-01-01T00:00 --to 2026-01-02T00:00
    """
    from fraudstream.features.spec import FeatureSpec
    from fraudstream.model.file import save
    from fraudstream.model.train import archived_orders, read_verdicts, verify
    from fraudstream.model.train import train as fit
    from fraudstream.store.db import Location

    if db is not None and labels != "reviews":
        raise UserError("--db goes with --labels reviews")
    settings = resolve_settings(ctx)
    started = time.monotonic()
    say = _progress(started)
    folder = (archive or Path(settings.archive.path or settings.data_dir / "archive")).expanduser()
    writable_folder(output or settings.data_dir / "models" / "m.zip", "the model file")
    # --db: a SQLite file; else the store of the settings (PostgreSQL with store.url).
    store = Location("sqlite", path=db) if db is not None else Location.of(settings)
    verdicts = read_verdicts(store) if labels == "reviews" else None
    orders = archived_orders(folder, _time(start, "--from"), _time(end, "--to"), say)
    trained = fit(
        orders,
        FeatureSpec.from_settings(settings.features),
        labels=labels,
        algorithm=algorithm,
        holdout=holdout,
        threshold=settings.model.takeover_risk,
        verdicts=verdicts,
        progress=say,
        source=str(folder),
    )
    path = output or settings.data_dir / "models" / f"{trained.model.version}.zip"
    save(path, trained.model)  # an OSError is one line (ModelFileError)
    verify(path, trained)
    say("the written file scores the held-out orders exactly as evaluated")
    if as_json:
        click.echo(orjson.dumps(trained.model.describe(), option=orjson.OPT_INDENT_2).decode())
    else:
        click.echo(describe(trained.model.describe()))
    click.echo(f"Model written to {path}", err=as_json)
    click.echo(f"Use it: fraudstream run --model {path}", err=as_json)


@click.group(cls=Group)
def model_group() -> None:
    """The learned risk model: show a model file, evaluate a model against the rules."""


model_group.name = "model"


@model_group.command("show")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print model.json as it is.")
def show(file: Path, as_json: bool) -> None:
    """What a model file holds: its version, when and on what it was trained, its features and
    their baselines, the libraries, and its own evaluation."""
    from fraudstream.model.file import load
    from fraudstream.model.score import Scorer

    model = load(file)  # a missing, corrupt or incompatible file: one line (ModelFileError)
    Scorer(model)  # ... and so is a graph ONNX Runtime cannot load, as when a job starts
    data = model.describe()
    click.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() if as_json else describe(data))


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _count(value: Any) -> str:
    """A count as 1,234; anything else as it is ('?' when missing): model.json may be odd."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:,}"
    return "?" if value is None else str(value)


def _number(value: Any, digits: int = 2) -> str:
    return _num(value, digits) if isinstance(value, int | float) and not isinstance(value, bool) else _count(value)


def _share(value: Any) -> str:
    return _pct(value) if isinstance(value, int | float) and not isinstance(value, bool) else _count(value)


def describe(data: dict[str, Any]) -> str:
    """model.json for a person: what is there, '?' for what is missing or odd (never a traceback)."""
    period, ev = _obj(data.get("period")), _obj(data.get("evaluation"))
    source = _obj(data.get("training_data"))
    fraud = period.get("fraud_orders")
    lines = [
        f"Model {data.get('version')} (file format {data.get('format')})",
        f"Trained at   {data.get('trained_at', 'n/a')}, {data.get('algorithm', '?')} "
        f"({_obj(data.get('params')).get('class', '?')}), labels: {data.get('labels', '?')}",
        f"Period       {period.get('from', '?')} .. {period.get('to', '?')}: {_count(period.get('orders'))} orders"
        + (f", {_count(fraud)} labelled fraud" if fraud is not None else "")
        + (f" (from {period['source']})" if period.get("source") else "")
        + (f", generator seed {source['generator_seed']}" if source.get("generator_seed") is not None else ""),
        f"Held out     {ev.get('from', '?')} .. {ev.get('to', '?')}: {_count(ev.get('orders'))} orders, "
        f"{_count(ev.get('fraud_orders'))} fraud",
        f"Evaluation   AUC {_number(ev.get('auc'), 4)}; at risk >= {_count(ev.get('threshold'))}: precision "
        f"{_share(ev.get('precision'))}, recall {_share(ev.get('recall'))}, "
        f"{_number(ev.get('false_per_1k_honest'))} false per 1,000 honest orders",
        "Libraries    " + ", ".join(f"{k} {v}" for k, v in _obj(data.get("libraries")).items()),
        "",
    ]
    features, baseline = data.get("features"), data.get("baseline")
    rows = [
        [str(name), _number(base)]
        for name, base in zip(features if isinstance(features, list) else [],
                              baseline if isinstance(baseline, list) else [], strict=False)
    ]  # fmt: skip
    lines.append(tabulate(rows, headers=["Feature", "Baseline (usual: median, honest returning customers)"], tablefmt="simple",
                          disable_numparse=True, colalign=("left", "right")))  # fmt: skip
    patterns = _obj(ev.get("patterns"))
    if patterns:
        prow = []
        for p, v in patterns.items():
            v = _obj(v)
            prow.append([p, f"{_count(v.get('flagged'))}/{_count(v.get('orders'))}", _share(v.get("recall"))])
        lines += ["", tabulate(prow, headers=["Pattern (held out)", "Orders flagged", "Recall"], tablefmt="simple",
                               disable_numparse=True, colalign=("left", "right", "right"))]  # fmt: skip
    return "\n".join(lines)


def _shares(text: str | None, defaults: dict[str, float]) -> dict[str, float]:
    """--shares: name=share,... or a JSON object, laid over `defaults` (a pattern not named keeps
    its share); the result is checked like generator.pattern_shares."""
    if text is None:
        return dict(defaults)
    from pydantic import ValidationError

    from fraudstream.config import GeneratorSettings

    value: Any = text
    if not text.lstrip().startswith("{"):
        value = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            name, sep, share = part.partition("=")
            try:
                value[name.strip()] = float(share)
            except ValueError:
                sep = ""
            if not sep:
                raise UserError(
                    f"--shares expects name=share,... such as account_takeover=3,velocity_burst=1, got '{part}'"
                )
    if not isinstance(value, str):
        value = {**defaults, **value}
    else:
        try:
            parsed = orjson.loads(value)
        except orjson.JSONDecodeError:
            raise UserError("--shares: not a JSON object") from None
        if not isinstance(parsed, dict):
            raise UserError("--shares: not a JSON object")
        value = {**defaults, **parsed}
    try:
        return GeneratorSettings(pattern_shares=value).pattern_shares
    except ValidationError as exc:
        raise UserError(f"--shares: {exc.errors()[0]['msg']}") from None


@model_group.command("evaluate")
@click.argument("model", required=False, type=click.Path(path_type=Path, dir_okay=False))
@click.option("--seed", type=int, help="Seed of the generated stream evaluated on [11].")
@click.option("--count", type=click.IntRange(1_000), help="Orders in that stream [100,000].")
@click.option("--shares", metavar="NAME=SHARE,...",
              help="Pattern shares laid over that stream's default mix (velocity_burst=0.1,account_farm=0.15,"
                   "high_value=0.15,city_hopping=0.1,account_takeover=0.3,promo_abuse=0.2): a pattern not "
                   "named keeps its default share; =0 leaves a pattern out.")  # fmt: skip
@click.option("--validation-seed", type=int,
              help="Seed of the stream (same count and mix) the min_risk sweep runs on, so the table reports "
                   "a min_risk chosen without seeing its stream [12; 13 when --seed is 12].")  # fmt: skip
@click.option("--train-seed", type=int, help="Without MODEL: seed of the stream a fresh model is trained on [7].")
@click.option("--train-count", type=click.IntRange(1_000), help="Without MODEL: orders it is trained on [100,000].")
@click.option(
    "--algorithm",
    type=click.Choice((*_ALGORITHMS, "isolation")),
    help="Without MODEL: what to train [hgb]; isolation: an isolation forest, without labels.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
@click.option("--json-out", type=click.Path(path_type=Path, dir_okay=False), help="Also write the JSON to this file.")
@click.pass_context
def evaluate_model(ctx: click.Context, model: Path | None, seed: int | None, count: int | None, shares: str | None,
                   validation_seed: int | None, train_seed: int | None, train_count: int | None, algorithm: str | None,
                   as_json: bool, json_out: Path | None) -> None:  # fmt: skip
    """Rules alone, the model alone and rules with the model, on a stream the model was not trained on.

    Offline (no cluster; the job's reference, fraudstream.model.offline) on a seeded generated
    stream with its own mix of patterns: precision, actor recall per pattern and overall,
    false alerts per 1,000 honest orders; the quiet takeovers no rule catches and the share
    the model catches; the issue's targets; and a sweep of alerts.min_risk. Without MODEL, a
    fresh model is trained first on another seed (the generator's default mix), so the
    command reproduces docs/model.md's table from nothing. Settings apply (--set
    model.takeover_risk=..., alerts.min_risk=...).
    """
    from fraudstream.model import evaluate as ev

    settings = resolve_settings(ctx)
    if json_out is not None:
        writable_folder(json_out, "--json-out")
    say = _progress(time.monotonic())
    mix = _shares(shares, ev.SHARES)
    seed = ev.SEED if seed is None else seed
    if validation_seed is None:  # 12, or the next seed when 12 is the evaluated one
        validation_seed = ev.VALIDATION_SEED if seed != ev.VALIDATION_SEED else seed + 1
    elif validation_seed == seed:
        raise UserError(f"--validation-seed {validation_seed} is the evaluated stream's seed: choose another")
    if model is not None:
        given = [n for n, v in (("--train-seed", train_seed), ("--train-count", train_count),
                                ("--algorithm", algorithm)) if v is not None]  # fmt: skip
        if given:
            raise UserError(f"{', '.join(given)}: only without MODEL (they train a fresh model)")
        model_file = ev.given_model(model, settings)  # missing, corrupt, other features.*: one line
    else:
        model_file = ev.train_on_stream(
            ev.TRAIN_SEED if train_seed is None else train_seed,
            train_count or ev.TRAIN_COUNT,
            settings,
            algorithm or "hgb",
            say,
        )
    count = count or ev.COUNT
    say(f"generating {count:,} orders, seed {seed}, mix {_mix_text(mix)}")
    events, orders = ev.stream(seed, count, mix)
    if model is not None and (why := ev.trained_on(model_file, seed, orders)):
        click.echo(f"fraudstream: warning: {why}", err=True)
    say(f"generating the validation stream for the min_risk sweep: {count:,} orders, seed {validation_seed}")
    validation = ev.stream(validation_seed, count, mix)
    say("replaying: rules alone, model alone, rules with the model, and the min_risk sweep (validation stream)")
    result = ev.evidence(events, orders, settings, model_file, validation=validation)
    data = {
        **result.to_json(),
        "stream": {"seed": seed, "count": count, "shares": mix},
        "validation_stream": {"seed": validation_seed, "count": count, "shares": mix},
        "takeover_risk": settings.model.takeover_risk,
        "best_min_risk": ev.best_min_risk(result),
        "evaluated_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if not model:
        data["training"] = {"seed": ev.TRAIN_SEED if train_seed is None else train_seed,
                            "count": train_count or ev.TRAIN_COUNT, "algorithm": algorithm or "hgb"}  # fmt: skip
    if json_out is not None:
        try:
            json_out.parent.mkdir(parents=True, exist_ok=True)
            json_out.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2))
        except OSError as exc:
            raise UserError(f"cannot write --json-out {json_out}: {exc.strerror or exc}") from None
        click.echo(f"JSON written to {json_out}", err=True)
    if as_json:
        click.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())
    else:
        click.echo(evidence_text(result, settings.model.takeover_risk, data["best_min_risk"], validation_seed))


def _mix_text(mix: dict[str, float]) -> str:
    return ",".join(f"{k}={v:g}" for k, v in mix.items())


def evidence_text(result: Any, takeover_risk: float, best: float | None, validation_seed: int | None = None) -> str:
    """The evidence table (Markdown, as docs/model.md shows it), the targets and the sweep."""
    names = list(result.configs)
    header = ["", *(f"{n} (min_risk {result.min_risk:g})" if n == "rules+model" else n for n in names)]
    figs = [result.configs[n] for n in names]
    rows = [
        ["alerts delivered", *(f"{f.alerts:,}" for f in figs)],
        ["held back", *(f"{f.held_back:,}" for f in figs)],
        ["precision", *(_pct(f.precision) for f in figs)],
        ["false alerts / 1,000 honest", *(_num(f.false_per_1k_honest) for f in figs)],
        ["actor recall, all patterns", *(_pct(f.actor_recall) for f in figs)],
    ]
    rows += [[f"actor recall, {p}", *(_pct(f.patterns[p]) for f in figs)] for p in figs[0].patterns]
    c = result.counts
    lines = [
        f"Model {result.model}; ACCOUNT_TAKEOVER at risk >= {takeover_risk:g}; {c['orders']:,} orders "
        f"({c['honest_orders']:,} honest, {c['fraud_orders']:,} fraud from {c['fraud_actors']:,} actors)",
        "",
        tabulate(
            rows, headers=header, tablefmt="github", disable_numparse=True, colalign=("left", *["right"] * len(names))
        ),  # fmt: skip
        "",
        f"Quiet takeovers: {result.quiet_actors:,}; no rule catches {result.quiet_unseen:,}; "
        f"the model catches {result.quiet_unseen_caught:,} of those ({_pct(result.quiet_share)})",
        "",
        tabulate(
            [
                [t, _num(m, 4) if m is not None and abs(m) < 1 else _num(m), g, "yes" if ok else "NO"]
                for t, m, g, ok in result.targets()
            ],
            headers=["Target", "Measured", "Goal", "Met"],
            tablefmt="simple",
            disable_numparse=True,
        ),  # fmt: skip
        "",
        f"alerts.min_risk sweep (rules with the model) on the validation stream, seed {validation_seed}:",
        tabulate(
            [
                [f"{m:g}", f"{f.held_back:,}", _pct(f.precision), _pct(f.actor_recall), _num(f.false_per_1k_honest)]
                for m, f in result.sweep
            ],
            headers=["min_risk", "Held back", "Precision", "Actor recall", "False/1k honest"],
            tablefmt="simple",
            disable_numparse=True,
            colalign=("right",) * 5,
        ),  # fmt: skip
        "Best min_risk by the sweep (the precision target met, false alerts at most half theirs; of the values "
        "within 2 points of the most recall, the fewest false alerts): "
        + ("none meets them" if best is None else f"{best:g}"),
    ]
    return "\n".join(lines)
