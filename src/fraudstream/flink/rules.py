"""The job's rules-topic glue: each message checked in Python, valid versions into the JVM.

    rules topic (value bytes, parallelism 1) -> CheckRules -> flat rows (RuleRows.flatType)
                                                          -> side output: DeadLetter "invalid_rules"

The check is `fraudstream.rules.model.from_message`, the same one the CLI uses, so the job
accepts exactly what `fraudstream rules` would publish; the Java steps receive only
`RuleSet.to_row()` (FLAT_FIELDS, the contract between the two). `job._rule_versions` reads the
topic into this step when the rules are live (`fraudstream.rules.live`), and
`sql_engine.detect(..., versions=...)` takes the checked stream.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from pyflink.common import Row, Types
from pyflink.datastream import OutputTag
from pyflink.datastream.functions import ProcessFunction, RuntimeContext

from fraudstream.events.model import DeadLetter
from fraudstream.flink.job_metrics import JobMetrics
from fraudstream.rules.model import FLAT_FIELDS, RULES, Limits, RuleError, from_message

logger = logging.getLogger(__name__)

INVALID = OutputTag("invalid-rules", Types.PICKLED_BYTE_ARRAY())


def flat_type() -> Any:
    """The flat version row (FLAT_FIELDS order), typed as RuleRows.flatType is in Java."""
    types: list[Any] = [Types.LONG(), Types.LONG()]
    for _ in RULES:
        types += [Types.BOOLEAN(), Types.DOUBLE(), Types.LONG(), Types.LONG(), Types.STRING()]
    types += [Types.DOUBLE(), Types.DOUBLE()]
    return Types.ROW_NAMED(list(FLAT_FIELDS), types)


def check(value: bytes | str, limits: Limits, max_chars: int) -> tuple[tuple[Any, ...] | None, DeadLetter | None]:
    """A rules-topic message as (flat row, None) when valid, or (None, dead letter) saying why not."""
    try:
        return from_message(value, limits).to_row(), None
    except RuleError as e:
        raw = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
        return None, DeadLetter(
            reason="invalid_rules", detail=str(e), raw=raw[:max_chars], seen_at=int(time.time() * 1000)
        )


class CheckRules(ProcessFunction):
    """Valid versions out as flat rows; invalid ones to INVALID as dead letters (and a warning)."""

    def __init__(self, limits: Limits, max_chars: int) -> None:
        self.limits = limits
        self.max_chars = max_chars

    def open(self, runtime_context: RuntimeContext) -> None:
        self.metrics = JobMetrics.from_context(runtime_context)

    def process_element(self, value: Any, ctx: ProcessFunction.Context) -> Any:
        row, dead = check(value, self.limits, self.max_chars)
        if dead is not None:
            logger.warning("rules message refused: %s", dead.detail)
            self.metrics.dead_letter(dead.reason)
            yield INVALID, dead
            return
        assert row is not None
        yield Row(*row)
