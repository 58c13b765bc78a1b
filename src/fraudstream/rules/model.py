"""Versioned rule settings: what a live rule change is, how it is checked, how it travels.

A `RuleSet` is the live part of the settings (each rule's switch, threshold, window, cooldown
and severity; the model's takeover threshold and `min_risk`) with a version. Version 0 is the
settings' own rules; every change publishes the whole set again as the next version on the
rules topic (key: the version), so any version can be shown, backtested or reverted to alone.

This module is pure Python: the CLI validates with it before publishing, the job validates
every message on the topic with it (an invalid one becomes a dead letter and changes nothing),
and the Java rule steps receive only what it accepted, flattened by `to_row` (FLAT_FIELDS is
the contract between the two, docs/rules.md).
"""

from __future__ import annotations

import dataclasses
import getpass
import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from fraudstream.config import Settings
from fraudstream.detectors.base import RULE_ALERT_TYPES
from fraudstream.errors import UserFacingError

RULES = ("velocity", "device_sharing", "high_value", "geo")
ALERT_TYPES = RULE_ALERT_TYPES
SEVERITIES = ("LOW", "MEDIUM", "HIGH", "CRITICAL")
# Which knobs each rule has: geo alerts on any other city (no threshold), high value has no window.
KNOBS: dict[str, tuple[str, ...]] = {
    "velocity": ("enabled", "threshold", "window_ms", "cooldown_ms", "severity"),
    "device_sharing": ("enabled", "threshold", "window_ms", "cooldown_ms", "severity"),
    "high_value": ("enabled", "threshold", "cooldown_ms", "severity"),
    "geo": ("enabled", "window_ms", "cooldown_ms", "severity"),
}
MODEL_KNOBS = ("takeover_risk", "min_risk")
# The flat row the Java rule steps read (sql engine), position by position. A knob a rule does
# not have is -1 (threshold, window_ms).
FLAT_FIELDS: tuple[str, ...] = (
    "version",
    "effective_from",  # event time ms; -1 = from the watermark when it reaches the job
    *(f"{rule}.{knob}" for rule in RULES for knob in ("enabled", "threshold", "window_ms", "cooldown_ms", "severity")),
    "model.takeover_risk",
    "model.min_risk",
)


class RuleError(UserFacingError):
    """A rule change (or a rules message) that is not valid: unknown key, wrong type, out of range."""


class NothingChanges(RuleError):
    """Every value given is already in force: valid, but no new version."""


@dataclass(frozen=True, slots=True)
class Rule:
    enabled: bool
    cooldown_ms: int
    severity: str
    threshold: float | None = None  # velocity, device sharing: a count; high value: an amount (INR)
    window_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Limits:
    """What a change may ask for, from the job's settings: a window only as wide as the state
    kept (rules.<rule>_max_window_ms), a takeover threshold only as low as the orders explained."""

    max_window_ms: Mapping[str, int]
    min_takeover_risk: float
    max_takeover_risk: float  # model.high_risk: above it, a takeover would outrank its severity bands

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(
            {r: settings.rules.max_window_of(r) for r in ("velocity", "device_sharing", "geo")},
            settings.rules.min_takeover_risk,
            settings.model.high_risk,
        )


@dataclass(frozen=True, slots=True)
class RuleSet:
    version: int
    rules: Mapping[str, Rule]
    takeover_risk: float
    min_risk: float
    author: str = ""
    created_at: int = 0  # wall-clock ms of the change
    comment: str = ""
    reverts: int | None = None  # the version whose rules this one restores
    effective_from: int | None = None  # event time ms it asks to apply from (None: the watermark)
    changes: tuple[str, ...] = field(default=())  # "velocity.threshold 3 -> 5", for history

    @classmethod
    def from_settings(cls, settings: Settings) -> RuleSet:
        """Version 0: the rules of the settings (defaults, file, environment, flags)."""
        d = settings.detectors
        rules = {}
        for rule in RULES:
            knobs = KNOBS[rule]
            rules[rule] = Rule(
                enabled=getattr(d, f"{rule}_enabled"),
                cooldown_ms=d.cooldown_of(rule),
                severity=getattr(d, f"{rule}_severity"),
                threshold=float(getattr(d, f"{rule}_threshold")) if "threshold" in knobs else None,
                window_ms=getattr(d, f"{rule}_window_ms") if "window_ms" in knobs else None,
            )
        return cls(0, rules, settings.model.takeover_risk, settings.alerts.min_risk, author="settings")

    # ---- reading and changing -------------------------------------------------------------

    def value(self, key: str) -> Any:
        """`velocity.threshold`, `model.min_risk` ... -> its value in this set."""
        rule, knob = _split(key)
        if rule == "model":
            return getattr(self, knob)
        return getattr(self.rules[rule], knob)

    def items(self) -> list[tuple[str, Any]]:
        """Every key with its value, in a stable order (for show and diffs)."""
        out = [(f"{r}.{k}", getattr(self.rules[r], k)) for r in RULES for k in KNOBS[r]]
        return out + [(f"model.{k}", getattr(self, k)) for k in MODEL_KNOBS]

    def with_changes(
        self, changes: Mapping[str, Any], limits: Limits, *, author: str | None = None, comment: str = ""
    ) -> RuleSet:
        """The next version: this set with `changes` (key -> value, strings as typed on a
        command line, or JSON values) applied and checked. Raises RuleError, naming the key."""
        if not changes:
            raise RuleError("no change given: say KEY=VALUE, e.g. velocity.threshold=5")
        rules = {r: dict(dataclasses.asdict(self.rules[r])) for r in RULES}
        model = {"takeover_risk": self.takeover_risk, "min_risk": self.min_risk}
        said = []
        for raw_key, raw in changes.items():
            key, value = _normalise_key(raw_key, raw)
            rule, knob = _split(key)
            old = self.value(key)
            new = _coerce(key, knob, value)
            (model if rule == "model" else rules[rule])[knob] = new
            if new != old:
                said.append(f"{key} {show_value(old)} -> {show_value(new)}")
        if not said:
            raise NothingChanges("nothing would change: every value given is already in force")
        out = dataclasses.replace(
            self,
            version=self.version + 1,
            rules={r: Rule(**rules[r]) for r in RULES},
            takeover_risk=model["takeover_risk"],
            min_risk=model["min_risk"],
            author=author or default_author(),
            created_at=int(time.time() * 1000),
            comment=comment,
            reverts=None,
            effective_from=None,
            changes=tuple(said),
        )
        check(out, limits)
        return out

    def reverted_to(self, old: RuleSet, limits: Limits, *, author: str | None = None, comment: str = "") -> RuleSet:
        """The next version (after this one), with the rules of `old`."""
        said = tuple(
            f"{k} {show_value(a)} -> {show_value(b)}"
            for (k, a), (_, b) in zip(self.items(), old.items(), strict=True)
            if a != b
        )
        out = dataclasses.replace(
            old,
            version=self.version + 1,
            author=author or default_author(),
            created_at=int(time.time() * 1000),
            comment=comment or f"revert to version {old.version}",
            reverts=old.version,
            effective_from=None,
            changes=said,
        )
        check(out, limits)
        return out

    def to_overrides(self) -> dict[str, Any]:
        """The settings overrides that give a job these rules statically (a backtest's candidate,
        the datastream engine)."""
        out: dict[str, Any] = {}
        for rule in RULES:
            r = self.rules[rule]
            out[f"detectors.{rule}_enabled"] = r.enabled
            out[f"detectors.{rule}_severity"] = r.severity
            out[f"detectors.{rule}_cooldown_ms"] = r.cooldown_ms
            if r.threshold is not None:
                out[f"detectors.{rule}_threshold"] = int(r.threshold) if rule != "high_value" else r.threshold
            if r.window_ms is not None:
                out[f"detectors.{rule}_window_ms"] = r.window_ms
        out["model.takeover_risk"] = self.takeover_risk
        out["alerts.min_risk"] = self.min_risk
        return out

    # ---- the wire ---------------------------------------------------------------------------

    def to_message(self) -> dict[str, Any]:
        """The JSON object published on the rules topic (docs/rules.md)."""
        return {
            "version": self.version,
            "author": self.author,
            "created_at": self.created_at,
            "comment": self.comment,
            "reverts": self.reverts,
            "effective_from": self.effective_from,
            "changes": list(self.changes),
            "rules": {r: {k: getattr(self.rules[r], k) for k in KNOBS[r]} for r in RULES},
            "model": {"takeover_risk": self.takeover_risk, "min_risk": self.min_risk},
        }

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.to_message())

    def to_row(self) -> tuple[Any, ...]:
        """The flat row of FLAT_FIELDS for the Java rule steps (-1: not set or not a knob)."""
        row: list[Any] = [self.version, -1 if self.effective_from is None else self.effective_from]
        for rule in RULES:
            r = self.rules[rule]
            row += [
                r.enabled,
                -1.0 if r.threshold is None else float(r.threshold),
                -1 if r.window_ms is None else r.window_ms,
                r.cooldown_ms,
                r.severity,
            ]
        return (*row, float(self.takeover_risk), float(self.min_risk))


def from_message(data: bytes | str | Mapping[str, Any], limits: Limits) -> RuleSet:
    """A RuleSet from a rules-topic message, checked completely. Raises RuleError saying what is wrong."""
    if isinstance(data, bytes | str):
        try:
            data = orjson.loads(data)
        except orjson.JSONDecodeError as e:
            raise RuleError(f"not JSON: {e}") from None
    if not isinstance(data, Mapping):
        raise RuleError("a rules message must be a JSON object")
    known = {"version", "author", "created_at", "comment", "reverts", "effective_from", "changes", "rules", "model"}
    extra = sorted(set(data) - known)
    if extra:
        raise RuleError(f"unknown field(s): {', '.join(extra)}")
    for needed in ("version", "rules", "model"):
        if needed not in data:
            raise RuleError(f"missing field: {needed}")
    version = _int("version", data["version"])
    if version < 1:
        raise RuleError(f"version must be 1 or more (0 is the settings' own rules), got {version}")
    rules_in = data["rules"]
    if not isinstance(rules_in, Mapping) or set(rules_in) != set(RULES):
        raise RuleError(f"rules must name exactly {', '.join(RULES)}")
    rules = {}
    for rule in RULES:
        given = rules_in[rule]
        if not isinstance(given, Mapping) or set(given) != set(KNOBS[rule]):
            raise RuleError(f"rules.{rule} must have exactly {', '.join(KNOBS[rule])}")
        rules[rule] = Rule(**{k: _coerce(f"{rule}.{k}", k, given[k]) for k in KNOBS[rule]})
    model_in = data["model"]
    if not isinstance(model_in, Mapping) or set(model_in) != set(MODEL_KNOBS):
        raise RuleError(f"model must have exactly {', '.join(MODEL_KNOBS)}")
    effective = data.get("effective_from")
    changes = data.get("changes") or []
    if not isinstance(changes, list) or not all(isinstance(c, str) for c in changes):
        raise RuleError("changes must be a list of strings")
    out = RuleSet(
        version=version,
        rules=rules,
        takeover_risk=_coerce("model.takeover_risk", "takeover_risk", model_in["takeover_risk"]),
        min_risk=_coerce("model.min_risk", "min_risk", model_in["min_risk"]),
        author=_str("author", data.get("author") or ""),
        created_at=_int("created_at", data.get("created_at") or 0),
        comment=_str("comment", data.get("comment") or ""),
        reverts=None if data.get("reverts") is None else _int("reverts", data["reverts"]),
        effective_from=None if effective is None else _int("effective_from", effective),
        changes=tuple(changes),
    )
    check(out, limits)
    return out


def check(rules: RuleSet, limits: Limits) -> None:
    """Ranges that depend on the job: the window maxima and the takeover threshold's band."""
    for rule, most in limits.max_window_ms.items():
        window = rules.rules[rule].window_ms
        if window is not None and window > most:
            raise RuleError(
                f"{rule}.window_ms {window} is wider than the {most} ms the job keeps state for "
                f"(rules.{rule}_max_window_ms)"
            )
    if not limits.min_takeover_risk <= rules.takeover_risk <= limits.max_takeover_risk:
        raise RuleError(
            f"model.takeover_risk {rules.takeover_risk:g} must be within [{limits.min_takeover_risk:g}, "
            f"{limits.max_takeover_risk:g}] (rules.min_takeover_risk, model.high_risk)"
        )


def default_author() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return os.environ.get("USER", "unknown")


# ---- helpers -------------------------------------------------------------------------------

_MINUTES = {"window_minutes": "window_ms", "cooldown_minutes": "cooldown_ms"}
_RULE_ALIASES = {"device": "device_sharing"}


def _normalise_key(key: str, value: Any) -> tuple[str, Any]:
    """`velocity.window_minutes=10` -> (`velocity.window_ms`, 600000); `alerts.min_risk` -> `model.min_risk`."""
    rule, sep, knob = key.strip().partition(".")
    rule = _RULE_ALIASES.get(rule, rule)
    if rule == "alerts" and knob == "min_risk":
        rule = "model"
    if knob in _MINUTES:
        try:
            minutes = float(value)
        except (TypeError, ValueError):
            raise RuleError(f"{key} must be a number of minutes, got {value!r}") from None
        if not math.isfinite(minutes):
            raise RuleError(f"{key} must be a finite number of minutes")
        knob, value = _MINUTES[knob], round(minutes * 60_000)
    key = f"{rule}.{knob}" if sep else key
    _split(key)
    return key, value


def _split(key: str) -> tuple[str, str]:
    rule, sep, knob = key.partition(".")
    if rule == "model" and knob in MODEL_KNOBS:
        return rule, knob
    if not sep or rule not in KNOBS or knob not in KNOBS[rule]:
        known = [f"{r}.{k}" for r in RULES for k in KNOBS[r]] + [f"model.{k}" for k in MODEL_KNOBS]
        raise RuleError(f"unknown rule setting {key!r}; known: {', '.join(known)}")
    return rule, knob


def _coerce(key: str, knob: str, value: Any) -> Any:
    """`value` (a command-line string or a JSON value) as the knob's type, within its range."""
    if knob == "enabled":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "on", "yes", "1", "false", "off", "no", "0"):
            return value.strip().lower() in ("true", "on", "yes", "1")
        raise RuleError(f"{key} must be true or false, got {value!r}")
    if knob == "severity":
        if isinstance(value, str) and value.strip().upper() in SEVERITIES:
            return value.strip().upper()
        raise RuleError(f"{key} must be one of {', '.join(SEVERITIES)}, got {value!r}")
    if knob in ("window_ms", "cooldown_ms"):
        n = _int(key, value)
        if knob == "window_ms" and n <= 0:
            raise RuleError(f"{key} must be more than 0, got {n}")
        if n < 0:
            raise RuleError(f"{key} must be 0 or more, got {n}")
        return n
    if knob == "threshold":
        x = _number(key, value)
        if x < 0:
            raise RuleError(f"{key} must be 0 or more, got {x:g}")
        if not key.startswith("high_value") and x != int(x):
            raise RuleError(f"{key} is a count: a whole number, got {x:g}")
        return float(x)
    x = _number(key, value)  # takeover_risk, min_risk
    if not 0 <= x <= 1:
        raise RuleError(f"{key} must be within [0, 1], got {x:g}")
    return x


def _number(key: str, value: Any) -> float:
    if isinstance(value, bool):
        raise RuleError(f"{key} must be a number, got {value!r}")
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise RuleError(f"{key} must be a number, got {value!r}") from None
    if not math.isfinite(x):
        raise RuleError(f"{key} must be a finite number, got {value!r}")
    return x


def _int(key: str, value: Any) -> int:
    if isinstance(value, bool):
        raise RuleError(f"{key} must be a whole number, got {value!r}")
    if isinstance(value, int):
        n = value
    else:
        x = _number(key, value)
        if x != int(x):
            raise RuleError(f"{key} must be a whole number, got {value!r}")
        n = int(x)
    if abs(n) > 2**62:
        raise RuleError(f"{key} is out of range: {n}")
    return n


def _str(key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise RuleError(f"{key} must be a string")
    return value[:500]


def show_value(value: Any) -> str:
    """A value as the change lines say it: on/off, 5 rather than 5.0."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float) and value == int(value):
        return str(int(value))
    return str(value)
