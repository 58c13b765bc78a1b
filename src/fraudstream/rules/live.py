"""Which rules a job starts with, and whether it follows the rules topic while it runs.

Decided once in the driver, before the job graph is built (`plan`), from `rules.live`, the
engine and the source:

- off: the settings' rules (version 0), the topic is not read;
- auto: the sql engine on a Kafka source follows the topic; other sources (the generator, a
  file: replays and backtests) and other engines use the settings' rules;
- on: the sql engine follows the topic whatever the source; other engines are refused.

A job that follows the topic starts with the newest version on it and reads on from the end
offsets read here, so a version published while the graph is built is not missed; a bounded run
reads the topic up to those offsets, then ends with its input (`job._rule_versions`). Whether a
run followed the topic is in its run record: its checkpoints have the rules steps' state.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from fraudstream.config import Settings
from fraudstream.errors import UserFacingError
from fraudstream.kafka.clients import KafkaUnavailable
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


def wanted(settings: Settings, source_kind: str) -> str:
    """'live' (follow the topic) or 'settings' (version 0), before any IO; LiveRulesRefused for
    rules.live=on with an engine that cannot apply versions."""
    mode, engine = settings.rules.live, settings.pipeline.engine
    if mode == "on" and engine != LIVE_ENGINE:
        raise LiveRulesRefused(
            f"rules.live=on needs --engine {LIVE_ENGINE}: the {engine} engine cannot change rules while it runs "
            "(use --engine sql, or rules.live=auto to run the settings' rules)"
        )
    return "live" if follows_topic(settings, source_kind) else "settings"


def follows_topic(settings: Settings, source_kind: str) -> bool:
    """Whether a run of these settings reads the rules topic (and has the rule steps' state for it)."""
    mode = settings.rules.live
    if settings.pipeline.engine != LIVE_ENGINE or mode == "off":
        return False
    return mode == "on" or source_kind == "kafka"


def plan(settings: Settings, source_kind: str, read: Callable[[Settings], History] = read_history) -> RulesPlan:
    """The job's rules: see the module's docstring. Reads the topic (and creates it for a live job)."""
    how = wanted(settings, source_kind)
    base = RuleSet.from_settings(settings)
    if how == "settings":
        note = None
        if settings.rules.live == "auto" and source_kind == "kafka" and settings.pipeline.engine != LIVE_ENGINE:
            try:
                latest = read(settings).latest
            except KafkaUnavailable:
                latest = None  # the job says so itself, in its own words
            if latest is not None:
                note = (
                    f"the {settings.pipeline.engine} engine runs the settings' rules: version {latest.version} on "
                    f"{settings.rules.topic} is not applied (use --engine {LIVE_ENGINE} for live rules)"
                )
        return RulesPlan(base, live=False, note=note)
    ensure_rules_topic(settings)
    history = read(settings)
    for offset, reason in history.rejected:
        logger.warning("rules topic %s offset %d refused: %s", settings.rules.topic, offset, reason)
    return RulesPlan(
        history.latest or base,
        live=True,
        start_offsets=dict(history.end_offsets),
    )
