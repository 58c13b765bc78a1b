"""The rules and the model over a finished stream, exactly as the job runs them: re-deliveries
dropped, the rules' alerts, every order scored from its features, ACCOUNT_TAKEOVER for the risky
ones, rule alerts marked with their order's risk, then one cooldown over all of them.

The reference the job's output is held equal to, and what `fraudstream model evaluate` and the
quality tests score, without a cluster.
"""

from __future__ import annotations

from collections.abc import Sequence

from fraudstream.config import Settings
from fraudstream.detectors import AlertDeduplicator, build_detectors
from fraudstream.detectors.base import Alert
from fraudstream.detectors.replay import deduplicate, first_copies, run_detector
from fraudstream.detectors.risk import RiskAlerts
from fraudstream.events.model import Order
from fraudstream.events.redelivery import Redelivery, redelivery_horizon
from fraudstream.features.replay import feature_rows
from fraudstream.features.spec import FeatureSpec
from fraudstream.model.score import Scorer


def _order_key(a: Alert | Order) -> tuple[int, str, str, str]:
    return (a.event_time, a.transaction_id, a.user_id, a.device_id)


def scored_orders(
    orders: Sequence[Order], settings: Settings, scorer: Scorer
) -> list[tuple[Order, tuple[float, ...], float]]:
    """(order, features, risk) for the orders the rules see, in sort_key order."""
    rows = list(feature_rows(orders, FeatureSpec.from_settings(settings.features)))
    risks = scorer.score([f for _, f in rows]) if rows else []
    return [(o, f, float(r)) for (o, f), r in zip(rows, risks, strict=True)]


def replay_with_model(
    orders: Sequence[Order],
    settings: Settings,
    scorer: Scorer | None,
    rules: bool = True,
) -> list[Alert]:
    """The alerts the job gives for `orders`: the rules (unless `rules` is False: the model
    alone) and, with a scorer, the model's."""
    detectors = build_detectors(settings.detectors)
    firsts = first_copies(orders, Redelivery(redelivery_horizon(settings.rules)))
    raw = [a for d in detectors for a in run_detector(d, firsts)] if rules else []
    if scorer is not None:
        risk_alerts = RiskAlerts(settings.model, settings.alerts, scorer.model.version)
        risk_of = {}
        for order, features, risk in scored_orders(firsts, settings, scorer):
            risk_of[_order_key(order)] = risk
            if risk_alerts.raises(risk):
                raw.append(risk_alerts.takeover(order, risk, scorer.explain(features, risk)))
        raw = [
            a if a.alert_type == risk_alerts.alert_type else risk_alerts.mark(a, risk_of.get(_order_key(a)))
            for a in raw
        ]
    return deduplicate(raw, AlertDeduplicator.from_settings(settings.detectors))
