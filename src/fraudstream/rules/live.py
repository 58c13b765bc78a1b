"""Which rules a job starts with, and whether it follows the rules topic while it runs.

Decided once in the driver, before the job graph is built (`plan`), from `rules.live`, the
engine and the source:

- off: the settings' rules (version 0), the topic is not read;
- auto: the sql engine on an unbounded Kafka source follows the topic (live); a bounded Kafka
  run takes the newest version on the topic as it starts, and keeps it; other sources (the
  generator, a file: replays and backtests) use the settings' rules;
- on: follow the topic whatever the source; an engine that cannot apply versions is refused.

A live job starts with the newest version on the topic and reads the topic from its end
offsets as read here, so a version published while the graph is built is not missed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from fraudstream.config import Settings
from fraudstream.errors import UserFacingError
from fraudstream.rules.model import RuleSet
from fraudstream.rules.topic import History, ensure_rules_topic, read_history

logger = logging.getLogger(__name__)

# The engine that applies versions in a running job (its keyed rule steps, jvm/src/.../rules).
LIVE_ENGINE = "sql"


class LiveRulesRefused(UserFacingError):
    """rules.live=on with an engine that cannot apply rule versions while it runs."""


@dataclass(frozen=True)
class RulesPlan:
    initial: RuleSet  # the version in force when the job starts (a restored job keeps its own)
    live: bool  # the job reads the rules topic while it runs
    start_offsets: dict[int, int] = field(default_factory=dict)  # where a live job's rules source starts
    note: str | None = None  # one line for the operator, when the rules are not what they may expect
    # How long the re-delivery check remembers an order's id: None, the settings' rules' longest
    # window; with rules from the topic, the longest window any version may have (rules.*_max_window_ms)
    redelivery_horizon_ms: int | None = None


def wanted(settings: Settings, source_kind: str) -> str:
    """'live', 'latest' (the topic's newest version, fixed) or 'settings' (version 0), before any IO."""
    mode, engine = settings.rules.live, settings.pipeline.engine
    if mode == "off":
        return "settings"
    if engine != LIVE_ENGINE:
        if mode == "on":
            raise LiveRulesRefused(
                f"rules.live=on needs --engine {LIVE_ENGINE}: the {engine} engine cannot change rules while it runs "
                "(use --engine sql, or rules.live=auto to run the settings' rules)"
            )
        return "settings"
    if mode == "on":
        return "latest" if source_kind == "kafka" and settings.kafka.bounded else "live"
    if source_kind != "kafka":
        return "settings"
    return "latest" if settings.kafka.bounded else "live"


def plan(settings: Settings, source_kind: str, read: Callable[[Settings], History] = read_history) -> RulesPlan:
    """The job's rules: see the module's docstring. Reads the topic (and creates it for a live job)."""
    how = wanted(settings, source_kind)
    base = RuleSet.from_settings(settings)
    if how == "settings":
        note = None
        if settings.rules.live == "auto" and source_kind == "kafka" and settings.pipeline.engine != LIVE_ENGINE:
            latest = read(settings).latest
            if latest is not None:
                note = (
                    f"the {settings.pipeline.engine} engine runs the settings' rules: version {latest.version} on "
                    f"{settings.rules.topic} is not applied (use --engine {LIVE_ENGINE} for live rules)"
                )
        return RulesPlan(base, live=False, note=note)
    if how == "live":
        ensure_rules_topic(settings)
    history = read(settings)
    initial = history.latest or base
    for offset, reason in history.rejected:
        logger.warning("rules topic %s offset %d refused: %s", settings.rules.topic, offset, reason)
    follows = how == "live" or history.latest is not None
    return RulesPlan(
        initial,
        live=how == "live",
        start_offsets=dict(history.end_offsets),
        redelivery_horizon_ms=longest_window_ms(settings) if follows else None,
    )


def longest_window_ms(settings: Settings) -> int:
    """The longest window a rules version may give any rule: within it, two copies of one order
    can fall in one window, so the re-delivery check remembers ids that long."""
    return max(settings.rules.max_window_of(rule) for rule in ("velocity", "device_sharing", "geo"))
