"""The evidence for the model (`fraudstream model evaluate`; docs/model.md, "Evidence").

On a seeded generator stream with a mix of patterns the model was not trained on, offline
(`fraudstream.model.offline.replay_with_model`, the job's reference), three configurations are
scored by `fraudstream.evaluation`: the rules alone, the model alone, and the rules with the
model (rule alerts whose order's risk is under `alerts.min_risk` held back, i.e. not among the
alerts scored). Plus the quiet takeovers no rule catches and the share of them the model
catches, the issue's targets, and a sweep of `alerts.min_risk`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from fraudstream.config import DEFAULT_PATTERN_SHARES, GeneratorSettings, Settings
from fraudstream.detectors.base import Alert
from fraudstream.detectors.risk import ALERT_TYPE
from fraudstream.evaluation import AlertRecord, LabelledEvent, Report, evaluate, iter_labelled
from fraudstream.evaluation.metrics import ActorKey, actor_key
from fraudstream.events import parse_record
from fraudstream.events.model import Order
from fraudstream.features.spec import FeatureSpec
from fraudstream.generator import generator_from_settings
from fraudstream.model.file import ModelFile, check_spec, load
from fraudstream.model.offline import replay_with_model
from fraudstream.model.score import Scorer
from fraudstream.model.train import id_hash, train

# The defaults the docs' table is made with: trained on one seed with the generator's default
# mix, evaluated on another seed where the quiet patterns are three times as common.
TRAIN_SEED, TRAIN_COUNT = 7, 100_000
SEED, COUNT = 11, 100_000
# min_risk's default is chosen by the sweep on a third seed (the validation stream, same count
# and mix), so the table on SEED reports a setting chosen without seeing it.
VALIDATION_SEED = 12
# 100,000 orders from 20,000 customers over about 28 hours of event time (docs/quality.md's
# stream). Another count keeps the period and each customer's pace, with fewer customers, so
# a small stream is a small town, not the first hours of a big one.
COUNT_USERS_GAP = (100_000, 20_000, 1_000)
SHARES: dict[str, float] = {
    "velocity_burst": 0.1,
    "account_farm": 0.15,
    "high_value": 0.15,
    "city_hopping": 0.1,
    "account_takeover": 0.3,
    "promo_abuse": 0.2,
}
QUIET = "account_takeover"
SWEEP = (0.0, 0.02, 0.1, 0.2, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8, 0.9)
CONFIGS = ("rules", "model", "rules+model")
# The targets.
MIN_QUIET_CAUGHT = 0.8
MIN_PRECISION = 0.95
MAX_FALSE_PER_1K = 1.5
HEADROOM = 0.5  # min_risk's default keeps false alerts at half the target: on other seeds they vary by half again
# ... and a value is not chosen for less than this much more actor recall than a higher one:
# other seeds and smaller training streams move false alerts between neighbouring values far
# more than the validation stream shows (docs/model.md, "min_risk").
RECALL_TIE = 0.02

Progress = Callable[[str], None]


def stream(seed: int, count: int, shares: Mapping[str, float] | None = None) -> tuple[list[LabelledEvent], list[Order]]:
    """A reproducible generator stream: its labelled events and its orders."""
    n, users, gap = COUNT_USERS_GAP
    users = max(100, users * count // n)
    cfg = GeneratorSettings(
        seed=seed,
        mean_gap_ms=COUNT_USERS_GAP[1] * gap // users,
        users=users,
        pattern_shares=dict(shares or DEFAULT_PATTERN_SHARES),
    )
    raw = list(generator_from_settings(cfg).orders(count))
    orders = [parse_record(orjson.dumps(r)) for r in raw]
    return list(iter_labelled(raw)), [o for o in orders if isinstance(o, Order)]


def train_on_stream(
    seed: int, count: int, settings: Settings, algorithm: str = "hgb", progress: Progress | None = None
) -> ModelFile:
    """A fresh model from a generated stream (the generator's default mix, its labels;
    "isolation": an isolation forest that ignores them)."""
    say = progress or (lambda _m: None)
    say(f"training a model ({algorithm}) on {count:,} generated orders, seed {seed}")
    _, orders = stream(seed, count)
    spec = FeatureSpec.from_settings(settings.features)
    labels, algorithm = ("none", "hgb") if algorithm == "isolation" else ("generator", algorithm)
    threshold = settings.model.takeover_risk
    return train(
        orders, spec, labels=labels, algorithm=algorithm, threshold=threshold, progress=progress, generator_seed=seed
    ).model


def given_model(path: Path, settings: Settings) -> ModelFile:
    """A model file to evaluate: loaded, and refused in one line when it was trained with other
    features.* than these settings' (its figures would be of features it never learned)."""
    model = load(path)
    check_spec(model, FeatureSpec.from_settings(settings.features))
    return model


def trained_on(model: ModelFile, seed: int, orders: Sequence[Order]) -> str | None:
    """Why the stream looks like the model's own training data (one line), or None: the same
    generator seed, or training orders (by the file's sample of their hashed ids) in it."""
    data = model.meta.get("training_data")
    data = data if isinstance(data, dict) else {}
    sample = data.get("id_sample")
    sample = {h for h in sample if isinstance(h, str)} if isinstance(sample, list) else set()
    found = len(sample & {id_hash(o.transaction_id) for o in orders}) if sample else 0
    same_seed = data.get("generator_seed") == seed and not isinstance(data.get("generator_seed"), bool)
    if not found and not same_seed:
        return None
    why = [f"generated with the same seed ({seed})"] if same_seed else []
    if found:
        why.append(f"{found} of the {len(sample)} sampled training orders are in it")
    return f"the model {model.version} may have been trained on this stream ({'; '.join(why)}): no evidence then"


def records(alerts: Iterable[Alert], min_risk: float | None = None) -> list[AlertRecord]:
    """Alerts as evaluation records; `min_risk` re-decides which rule alerts are held back."""
    out = []
    for a in alerts:
        held = a.held_back
        if min_risk is not None and a.alert_type != ALERT_TYPE and a.risk is not None:
            held = a.risk < min_risk
        out.append(AlertRecord(a.alert_type, a.transaction_id, a.alert_id, a.user_id, a.device_id,
                               a.event_time, risk=a.risk, held_back=held))  # fmt: skip
    return out


def caught(events: Sequence[LabelledEvent], alerts: Iterable[AlertRecord]) -> set[ActorKey]:
    """The actors the delivered (not held-back) alerts catch, by the matching rule."""
    by_tx = {e.transaction_id: e for e in events}
    out = set()
    for a in alerts:
        key = actor_key(by_tx.get(a.transaction_id or ""))
        if key is not None and not a.held_back:
            out.add(key)
    return out


@dataclass(frozen=True)
class Figures:
    """One configuration's figures (the parts of a Report the table shows), with the counts
    they are ratios of, so that streams can be pooled (`pooled`)."""

    alerts: int
    held_back: int
    precision: float | None
    actor_recall: float | None
    false_per_1k_honest: float | None
    patterns: dict[str, float | None]
    counts: dict[str, int] = field(default_factory=dict)  # true/false alerts, actors (caught), honest orders
    pattern_actors: dict[str, tuple[int, int]] = field(default_factory=dict)  # pattern -> (actors, caught)

    @classmethod
    def of(cls, report: Report, patterns: Sequence[str]) -> Figures:
        recall = {p.pattern: p.actor_recall for p in report.patterns}
        o = report.overall
        counts = {"true_alerts": o.true_alerts, "false_alerts": o.false_alerts, "actors": o.actors or 0,
                  "actors_caught": o.actors_caught or 0, "honest_orders": report.counts.honest_orders}  # fmt: skip
        return cls(o.alerts, report.counts.held_back_alerts, o.precision, o.actor_recall, o.false_per_1k_honest,
                   {p: recall.get(p) for p in patterns}, counts,
                   {p.pattern: (p.actors, p.actors_caught) for p in report.patterns})  # fmt: skip

    @classmethod
    def pooled(cls, figures: Sequence[Figures]) -> Figures:
        """The figures of several streams' alerts, actors and honest orders counted together."""

        def total(key: str) -> int:
            return sum(f.counts.get(key, 0) for f in figures)

        alerts, honest = sum(f.alerts for f in figures), total("honest_orders")
        names = list(dict.fromkeys(p for f in figures for p in f.patterns))
        actors = {p: tuple(sum(f.pattern_actors.get(p, (0, 0))[i] for f in figures) for i in (0, 1)) for p in names}
        return cls(
            alerts,
            sum(f.held_back for f in figures),
            total("true_alerts") / alerts if alerts else None,
            total("actors_caught") / total("actors") if total("actors") else None,
            1000 * total("false_alerts") / honest if honest else None,
            {p: (c / a if a else None) for p, (a, c) in actors.items()},
            {k: total(k) for k in ("true_alerts", "false_alerts", "actors", "actors_caught", "honest_orders")},
            {p: (a, c) for p, (a, c) in actors.items()},
        )


@dataclass(frozen=True)
class Evidence:
    model: str
    configs: dict[str, Figures]
    quiet_actors: int  # quiet takeovers in the stream
    quiet_unseen: int  # ... that no rule catches
    quiet_unseen_caught: int  # ... of which the model catches
    sweep: list[tuple[float, Figures]]
    min_risk: float
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def quiet_share(self) -> float | None:
        return self.quiet_unseen_caught / self.quiet_unseen if self.quiet_unseen else None

    def targets(self) -> list[tuple[str, float | None, str, bool]]:
        """(target, measured, goal, met) for each of the issue's targets."""
        rules, both = self.configs["rules"], self.configs["rules+model"]
        share = self.quiet_share
        return [
            ("quiet takeovers no rule catches, share the model catches", share, f">= {MIN_QUIET_CAUGHT:.0%}",
             share is not None and share >= MIN_QUIET_CAUGHT),
            ("rules+model precision", both.precision, f">= {MIN_PRECISION}",
             both.precision is not None and both.precision >= MIN_PRECISION),
            ("rules+model false alerts per 1,000 honest orders", both.false_per_1k_honest, f"<= {MAX_FALSE_PER_1K}",
             both.false_per_1k_honest is not None and both.false_per_1k_honest <= MAX_FALSE_PER_1K),
            ("rules+model actor recall minus rules alone", _diff(both.actor_recall, rules.actor_recall), ">= 0",
             (both.actor_recall or 0) >= (rules.actor_recall or 0)),
        ]  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "counts": self.counts,
            "min_risk": self.min_risk,
            "configurations": {name: f.__dict__ for name, f in self.configs.items()},
            "quiet_takeovers": {
                "actors": self.quiet_actors,
                "no_rule_catches": self.quiet_unseen,
                "model_catches": self.quiet_unseen_caught,
                "share": self.quiet_share,
            },
            "targets": [{"target": t, "measured": m, "goal": g, "met": ok} for t, m, g, ok in self.targets()],
            "min_risk_sweep": [{"min_risk": m, **f.__dict__} for m, f in self.sweep],
        }


def pooled(results: Sequence[Evidence]) -> Evidence:
    """Several streams' evidence as one: every count summed, every ratio of the sums (one
    small stream's false alerts vary by a third from seed to seed; a pool of them less)."""
    first = results[0]
    return Evidence(
        model=", ".join(dict.fromkeys(r.model for r in results)),
        configs={name: Figures.pooled([r.configs[name] for r in results]) for name in first.configs},
        quiet_actors=sum(r.quiet_actors for r in results),
        quiet_unseen=sum(r.quiet_unseen for r in results),
        quiet_unseen_caught=sum(r.quiet_unseen_caught for r in results),
        sweep=[],
        min_risk=first.min_risk,
        counts={k: sum(r.counts.get(k, 0) for r in results) for k in first.counts},
    )


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def pattern_names(events: Iterable[LabelledEvent]) -> list[str]:
    """The generator's patterns, then any other the events hold."""
    from fraudstream.generator.orders import PATTERNS

    seen = {e.pattern for e in events if e.pattern}
    return [*PATTERNS, *sorted(seen - set(PATTERNS))]


def evidence(
    events: Sequence[LabelledEvent],
    orders: Sequence[Order],
    settings: Settings,
    model: ModelFile,
    sweep: Sequence[float] = SWEEP,
    validation: tuple[Sequence[LabelledEvent], Sequence[Order]] | None = None,
) -> Evidence:
    """The three configurations on one stream, the quiet takeovers, and the min_risk sweep
    (on the `validation` stream's events and orders if given, else on this one)."""
    scorer = Scorer(model, settings.model.explain_top)
    patterns = pattern_names(events)
    rules = records(replay_with_model(orders, settings, None))
    alone = records(replay_with_model(orders, settings, scorer, rules=False))
    both = replay_with_model(orders, settings, scorer)
    figures = {
        "rules": Figures.of(evaluate(events, rules), patterns),
        "model": Figures.of(evaluate(events, alone), patterns),
        "rules+model": Figures.of(evaluate(events, records(both)), patterns),
    }
    swept_events, swept = events, both
    if validation is not None and sweep:
        swept_events = validation[0]
        swept = replay_with_model(validation[1], settings, scorer)
    swept_patterns = pattern_names(swept_events)
    sweep_figures = [(m, Figures.of(evaluate(swept_events, records(swept, m)), swept_patterns)) for m in sweep]
    quiet = {key for e in events if (key := actor_key(e)) is not None and key[0] == QUIET}
    unseen = quiet - caught(events, rules)
    model_caught = caught(events, alone) & unseen
    honest = sum(1 for e in events if not e.is_fraud)
    return Evidence(
        model=model.version,
        configs=figures,
        quiet_actors=len(quiet),
        quiet_unseen=len(unseen),
        quiet_unseen_caught=len(model_caught),
        sweep=sweep_figures,
        min_risk=settings.alerts.min_risk,
        counts={
            "orders": len(orders),
            "honest_orders": honest,
            "fraud_orders": len(events) - honest,
            "fraud_actors": len({actor_key(e) for e in events if e.is_fraud}),
        },  # fmt: skip
    )


def best_min_risk(ev: Evidence) -> float | None:
    """The sweep's value (on the validation stream) that meets the precision and false-alert
    targets, the latter with HEADROOM: of those within RECALL_TIE of the most actor recall,
    the one with the fewest false alerts (then the highest); None when none meets them."""
    ok = [
        (m, f) for m, f in ev.sweep
        if (f.precision or 0) >= MIN_PRECISION and (f.false_per_1k_honest or 0) <= MAX_FALSE_PER_1K * HEADROOM
    ]  # fmt: skip
    if not ok:
        return None
    most = max(f.actor_recall or 0 for _, f in ok)
    near = [(m, f) for m, f in ok if (f.actor_recall or 0) >= most - RECALL_TIE]
    return min(near, key=lambda mf: (mf[1].false_per_1k_honest or 0, -mf[0]))[0]
