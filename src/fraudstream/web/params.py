"""Query parameters of the dashboard's API, checked: a mistake is a `BadRequest` with a reason
(the app answers 400 with it), never an exception deeper down."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from fraudstream.store.queries import REVIEW_FILTERS, SEVERITIES, SORTS, AlertFilter

MAX_TEXT = 200  # characters of a user or device id searched for
_TYPE = re.compile(r"[A-Za-z0-9_]{1,64}")


class BadRequest(ValueError):
    """A query parameter that cannot be used; the message says why."""


# held_back=: "hide" the alerts held back as normal for their customer, or show "only" them.
HELD_BACK = {"hide": False, "only": True}


@dataclass(frozen=True)
class Search:
    filter: AlertFilter
    page: int
    page_size: int
    sort: str = "time"


def _single(params: Mapping[str, Sequence[str]], allowed: set[str]) -> dict[str, str]:
    """One value per known parameter; empty values count as absent (an empty search box)."""
    out = {}
    for name, values in params.items():
        if name not in allowed:
            raise BadRequest(f"unknown parameter {name!r} (known: {', '.join(sorted(allowed))})")
        if len(values) > 1:
            raise BadRequest(f"parameter {name!r} given more than once")
        if values and values[0].strip():
            out[name] = values[0].strip()
    return out


def integer(name: str, text: str | None, default: int, low: int, high: int | None = None) -> int:
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise BadRequest(f"{name} must be a whole number, not {text[:40]!r}") from None
    if value < low or (high is not None and value > high):
        raise BadRequest(f"{name} must be between {low} and {high}" if high is not None else f"{name} must be >= {low}")
    return value


def fraction(name: str, text: str | None) -> float | None:
    """A number from 0 to 1 (a risk), or None when absent."""
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        raise BadRequest(f"{name} must be a number from 0 to 1, not {text[:40]!r}") from None
    if not 0 <= value <= 1:  # NaN fails this too
        raise BadRequest(f"{name} must be a number from 0 to 1")
    return value


def timestamp(name: str, text: str | None) -> int | None:
    """Epoch milliseconds, or an ISO 8601 time with its zone (2026-01-01T10:00:00Z)."""
    if text is None:
        return None
    if re.fullmatch(r"-?\d{1,16}", text):
        return int(text)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise BadRequest(f"{name} must be epoch milliseconds or an ISO 8601 time, not {text[:40]!r}") from None
    if parsed.tzinfo is None:
        raise BadRequest(f"{name} needs a time zone (for example {text[:19]}Z)")
    return int(parsed.timestamp() * 1000)


def _text(name: str, text: str | None) -> str | None:
    if text is not None and len(text) > MAX_TEXT:
        raise BadRequest(f"{name} longer than {MAX_TEXT} characters")
    return text


def time_window(values: dict[str, str]) -> tuple[int | None, int | None]:
    since, until = timestamp("since", values.get("since")), timestamp("until", values.get("until"))
    if since is not None and until is not None and since >= until:
        raise BadRequest("since must be before until")
    return since, until


SEARCH_PARAMS = {
    "user", "device", "type", "severity", "since", "until", "review", "page", "page_size", "before_id",
    "min_risk", "held_back", "sort", "rule_version",
}  # fmt: skip


def search(params: Mapping[str, Sequence[str]], default_page_size: int) -> Search:
    """GET /api/alerts?user=&device=&type=&severity=&since=&until=&review=&min_risk=&held_back=
    &rule_version=&sort=&page=&page_size=&before_id=

    rule_version: alerts raised by that version of the live rules (docs/rules.md); min_risk: alerts whose order's risk is at least this (0-1); held_back: hide|only; sort:
    time (newest first) or risk (riskiest first); before_id: the first page's max_id, so that
    later pages count and show the same rows."""
    v = _single(params, SEARCH_PARAMS)
    held = v.get("held_back")
    if held is not None and held not in HELD_BACK:
        raise BadRequest(f"held_back must be one of {', '.join(HELD_BACK)}")
    sort = v.get("sort", "time")
    if sort not in SORTS:
        raise BadRequest(f"sort must be one of {', '.join(SORTS)}")
    alert_type = v.get("type")
    if alert_type is not None and not _TYPE.fullmatch(alert_type):
        raise BadRequest("type must be an alert type such as VELOCITY_FRAUD")
    severity = v.get("severity")
    if severity is not None:
        severity = severity.upper()
        if severity not in SEVERITIES:
            raise BadRequest(f"severity must be one of {', '.join(SEVERITIES)}")
    review = v.get("review")
    if review is not None and review not in REVIEW_FILTERS:
        raise BadRequest(f"review must be one of {', '.join(REVIEW_FILTERS)}")
    since, until = time_window(v)
    found = AlertFilter(
        user=_text("user", v.get("user")),
        device=_text("device", v.get("device")),
        alert_type=alert_type,
        severity=severity,
        since=since,
        until=until,
        review=review,
        max_id=None if "before_id" not in v else integer("before_id", v["before_id"], 0, 0),
        held_back=None if held is None else HELD_BACK[held],
        min_risk=fraction("min_risk", v.get("min_risk")),
        rule_version=None if "rule_version" not in v else integer("rule_version", v["rule_version"], 0, 0, 2**62),
    )
    page = integer("page", v.get("page"), 1, 1, 1_000_000)
    page_size = integer("page_size", v.get("page_size"), default_page_size, 1, 500)
    return Search(found, page, page_size, sort)


@dataclass(frozen=True)
class StatsQuery:
    since: int | None
    until: int | None
    bucket_ms: int | None  # None = chosen from the span
    top: int


def stats(params: Mapping[str, Sequence[str]]) -> StatsQuery:
    """GET /api/stats?since=&until=&bucket_ms=&top="""
    v = _single(params, {"since", "until", "bucket_ms", "top"})
    since, until = time_window(v)
    bucket = v.get("bucket_ms")
    return StatsQuery(
        since,
        until,
        None if bucket is None else integer("bucket_ms", bucket, 0, 1_000, 31 * 86_400_000),
        integer("top", v.get("top"), 10, 1, 100),
    )


def no_params(params: Mapping[str, Sequence[str]]) -> None:
    _single(params, set())


def feed_after(params: Mapping[str, Sequence[str]]) -> int | None:
    """`after`: the newest alert row a page's live feed had, when the page makes a new
    EventSource (a browser's gives up for good on a 503 or 401, and a new one cannot send
    Last-Event-ID)."""
    given = _single(params, {"after"}).get("after")
    if given is None:
        return None
    if not given.isdigit() or len(given) > 18:
        raise BadRequest("after must be an alert row id (digits)")
    return int(given)
