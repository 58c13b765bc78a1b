"""The issue's quality targets, computed on a small seeded stream (never hard-coded).

A model trained on one seed with the generator's default mix is evaluated on another seed
whose mix has three times the quiet patterns, offline (the job's reference), with the default
settings: it must catch most quiet takeovers no rule catches, and the rules with it must beat
the rules alone (precision, false alerts, actor recall). `fraudstream model evaluate` computes
the same figures on the docs' larger stream.
"""

from __future__ import annotations

import pytest

from fraudstream.config import Settings
from fraudstream.model import evaluate as ev


@pytest.mark.slow
def test_rules_with_the_model_meet_the_targets_and_beat_the_rules_alone() -> None:
    settings = Settings()
    model = ev.train_on_stream(3, 20_000, settings)
    events, orders = ev.stream(4, 20_000, ev.SHARES)
    result = ev.evidence(events, orders, settings, model, sweep=())
    rules, both = result.configs["rules"], result.configs["rules+model"]
    assert result.quiet_unseen >= 50  # enough quiet takeovers the rules miss to judge by
    failed = [(target, measured, goal) for target, measured, goal, met in result.targets() if not met]
    assert not failed, failed
    assert both.precision > rules.precision
    assert both.false_per_1k_honest < rules.false_per_1k_honest
    assert both.actor_recall > rules.actor_recall
    assert both.patterns["account_takeover"] > rules.patterns["account_takeover"] + 0.5
    assert both.held_back > 0  # min_risk holds some rule alerts back at its default
