"""The issue's quality targets, computed on small seeded streams (never hard-coded).

For each pair of seeds, a model trained on the first with the generator's default mix is
evaluated on the second, whose mix has three times the quiet patterns, offline (the job's
reference), with the default settings. One 20,000-order stream's false alerts vary by a third
from seed to seed, so the pairs' counts are pooled (`evaluate.pooled`) and the targets judged
on the pool: the model must catch most quiet takeovers no rule catches, and the rules with it
must beat the rules alone (precision, false alerts, actor recall). `fraudstream model
evaluate` computes the same figures on the docs' larger stream.
"""

from __future__ import annotations

import pytest

from fraudstream.config import Settings
from fraudstream.model import evaluate as ev

PAIRS = ((3, 4), (5, 6))  # (training seed, evaluation seed)
COUNT = 20_000


@pytest.mark.slow
def test_rules_with_the_model_meet_the_targets_and_beat_the_rules_alone() -> None:
    settings = Settings()
    results = []
    for train_seed, seed in PAIRS:
        model = ev.train_on_stream(train_seed, COUNT, settings)
        events, orders = ev.stream(seed, COUNT, ev.SHARES)
        results.append(ev.evidence(events, orders, settings, model, sweep=()))
    result = ev.pooled(results)
    rules, both = result.configs["rules"], result.configs["rules+model"]
    assert result.quiet_unseen >= 100  # enough quiet takeovers the rules miss to judge by
    failed = [(target, measured, goal) for target, measured, goal, met in result.targets() if not met]
    assert not failed, failed
    assert both.precision > rules.precision
    assert both.false_per_1k_honest < rules.false_per_1k_honest
    assert both.actor_recall > rules.actor_recall
    assert both.patterns["account_takeover"] > rules.patterns["account_takeover"] + 0.5
    assert both.held_back > 0  # min_risk holds some rule alerts back at its default


def test_pooling_sums_the_counts_behind_each_ratio() -> None:
    a = ev.Figures(10, 1, 0.9, 0.5, 2.0, {"p": 0.5},
                   {"true_alerts": 9, "false_alerts": 1, "actors": 4, "actors_caught": 2, "honest_orders": 500},
                   {"p": (4, 2)})  # fmt: skip
    b = ev.Figures(30, 2, 1.0, 1.0, 0.0, {"p": 1.0},
                   {"true_alerts": 30, "false_alerts": 0, "actors": 6, "actors_caught": 6, "honest_orders": 1_500},
                   {"p": (6, 6)})  # fmt: skip
    pool = ev.Figures.pooled([a, b])
    assert (pool.alerts, pool.held_back) == (40, 3)
    assert pool.precision == 39 / 40 and pool.actor_recall == 8 / 10 and pool.patterns == {"p": 8 / 10}
    assert pool.false_per_1k_honest == 1000 * 1 / 2_000


def test_min_risk_is_chosen_for_false_alerts_among_values_of_about_the_most_recall() -> None:
    def at(recall: float, false: float) -> ev.Figures:
        return ev.Figures(100, 0, 0.99, recall, false, {})

    def best(*sweep: tuple[float, ev.Figures]) -> float | None:
        return ev.best_min_risk(ev.Evidence("m", {}, 0, 0, 0, list(sweep), 0.5))

    # 0.3 misses the false-alert headroom; 0.5 has 1.3 points less recall than 0.35, fewer false alerts
    assert best((0.3, at(0.89, 1.26)), (0.35, at(0.853, 0.64)), (0.5, at(0.84, 0.59)), (0.9, at(0.80, 0.41))) == 0.5
    assert best((0.35, at(0.853, 0.64)), (0.5, at(0.82, 0.59))) == 0.35  # 3.3 points: recall wins
    assert best((0.3, at(0.89, 1.26))) is None
