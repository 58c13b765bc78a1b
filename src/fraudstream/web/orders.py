"""An alert's orders, read back from the raw-event archive (`flink/archive.py`): the triggering
order with all its fields, and the orders its rule looked at (a user's or a device's orders in
the rule's window). The store keeps only an alert's summary; the archive keeps every valid
order as received, by hour of event time, so only the hours that can hold them are opened.

Part files appear when the job's checkpoint covering them completes; in-progress files are
hidden (`.part-...`) and never read. A reason string says why orders are missing, never an
exception: a missing folder, a corrupt file or a remote archive end up in `archive`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from fraudstream.config import Settings
from fraudstream.evaluation.labels import archived_record

logger = logging.getLogger(__name__)

AVAILABLE = "available"
NOT_YET = "not yet archived (appears after the next checkpoint)"
OFF = "archive off"
NO_ARCHIVE = "no archive"
NOT_FOUND = "not in the archive (archived before the archive was on, or removed)"

MAX_ORDERS = 50  # orders listed with an alert (newest first); the total is counted
MAX_HOURS = 49  # hour partitions read for one alert at most (a 48-hour window and its edge)
HOUR_MS = 3_600_000
# The triggering order is looked up this far either side of the alert's event time: the
# alert carries its order's event time, so this only absorbs an hour boundary's partition.
SLACK_MS = 1_000
_COLUMNS = ("transaction_id", "user_id", "device_id", "restaurant_id", "amount", "city", "payment_method",
            "event_time", "behavior", "raw")  # fmt: skip
# Rule -> (the field its orders share, the settings field of its window).
_WINDOWS = {
    "VELOCITY_FRAUD": ("user_id", "velocity_window_ms"),
    "GEO_ANOMALY_FRAUD": ("user_id", "geo_window_ms"),
    "DEVICE_SHARING_FRAUD": ("device_id", "device_sharing_window_ms"),
}
# ACCOUNT_TAKEOVER has no window (the model reads the user's whole bounded history): the user's
# orders of the two days before show the analyst what was usual for them (devices, cities, amounts).
_HISTORY = {"ACCOUNT_TAKEOVER": ("user_id", 48 * HOUR_MS)}


@dataclass(frozen=True)
class Window:
    """The orders behind an alert: those with `key` = `value` and after < event_time <= until."""

    key: str
    value: str
    after: int
    until: int
    truncated: bool = False  # the window is longer than MAX_HOURS: only its newest hours are read


def window_for(settings: Settings, row: dict[str, Any], rule: dict[str, Any]) -> Window | None:
    """The rule's window (t - w, t] around the alert's order, or None for a rule of one order.

    The window the rule ran with (its details' `window_ms`) wins over today's settings."""
    found = _WINDOWS.get(row["alert_type"])
    if found is not None:
        key, setting = found
        window_ms = rule.get("window_ms")
        if not isinstance(window_ms, int) or isinstance(window_ms, bool) or window_ms <= 0:
            window_ms = getattr(settings.detectors, setting)
    elif row["alert_type"] in _HISTORY:
        key, window_ms = _HISTORY[row["alert_type"]]
    else:
        return None
    t = int(row["event_time"])
    after = t - window_ms
    truncated = (t // HOUR_MS) - (after + 1) // HOUR_MS + 1 > MAX_HOURS
    if truncated:
        after = (t // HOUR_MS - MAX_HOURS + 1) * HOUR_MS - 1
    return Window(key, str(row[key]), after, t, truncated)


def partitions(since: int, until: int) -> list[str]:
    """The archive's hour folders (`dt=YYYY-MM-DD/hour=HH`) holding event times since..until."""
    out = []
    for hour in range(since // HOUR_MS, until // HOUR_MS + 1):
        d = datetime.fromtimestamp(hour * 3600, UTC)
        out.append(f"dt={d:%Y-%m-%d}/hour={d:%H}")
    return out


def archive_folder(settings: Settings) -> Path | str:
    """The orders folder of a local archive, or why the dashboard cannot read it."""
    uri = urlparse(settings.archive_uri)
    if uri.scheme != "file":
        return f"the dashboard reads only a local archive, not {uri.scheme}://"
    return Path(unquote(uri.path)) / "orders"


def _query(con: Any, files: list[str], where: str, params: list[Any]) -> list[dict[str, Any]]:
    # The partition columns are in the paths, not needed: event_time is in every row.
    cur = con.execute(
        f"SELECT * FROM read_parquet(?, union_by_name = true, hive_partitioning = false) WHERE {where}",
        [files, *params],
    )
    names = [d[0] for d in cur.description]
    return [{k: v for k, v in zip(names, values, strict=True) if k in _COLUMNS} for values in cur.fetchall()]


def _read(files: list[Path], where: str, params: list[Any]) -> tuple[list[dict[str, Any]], list[str]]:
    """The rows of `files` matching `where`; a file that cannot be read is named, not raised."""
    import duckdb

    if not files:
        return [], []
    con = duckdb.connect()  # in memory, this request's own
    try:
        try:
            return _query(con, [str(f) for f in files], where, params), []
        except duckdb.Error:
            pass  # one bad file fails the whole scan: read them one by one to name it
        rows: list[dict[str, Any]] = []
        problems: list[str] = []
        for path in files:
            try:
                rows.extend(_query(con, [str(path)], where, params))
            except duckdb.Error as exc:
                logger.warning("archive file %s cannot be read: %s", path, exc)
                problems.append(f"cannot read {path.name}: {str(exc).splitlines()[0][:200]}")
        return rows, problems
    finally:
        con.close()


def for_alert(settings: Settings, row: dict[str, Any], rule: dict[str, Any]) -> dict[str, Any]:
    """The alert's triggering order (None if not archived), its rule's orders, and the
    archive's state: `{"archive": ..., "order": ..., "orders": {...}}`. Blocking: call it in a
    worker thread. Never raises: what goes wrong is said in `archive`."""
    try:
        return _for_alert(settings, row, rule)
    except Exception as exc:  # an unreadable folder, an odd row: the alert's page still opens
        logger.warning("the archive could not be read for alert %s", row.get("alert_id"), exc_info=True)
        orders = {"items": [], "total": 0}
        return {"archive": f"cannot read the archive: {str(exc)[:200]}", "order": None, "orders": orders}


def _for_alert(settings: Settings, row: dict[str, Any], rule: dict[str, Any]) -> dict[str, Any]:
    t = int(row["event_time"])
    window = window_for(settings, row, rule)
    orders: dict[str, Any] = {"items": [], "total": 0}
    if window is not None:
        orders.update(key=window.key, value=window.value, after=window.after, until=window.until)
        if window.truncated:
            orders["truncated"] = True
    result: dict[str, Any] = {"archive": AVAILABLE, "order": None, "orders": orders}
    folder = archive_folder(settings)
    if isinstance(folder, str):
        result["archive"] = folder
        return result
    if not folder.is_dir():
        result["archive"] = NO_ARCHIVE if settings.archive.enabled else OFF
        return result

    since = t - SLACK_MS if window is None else min(window.after + 1, t - SLACK_MS)
    hours = partitions(since, t + SLACK_MS)
    files = [
        f
        for hour in hours
        if (folder / hour).is_dir()
        for f in sorted((folder / hour).iterdir())
        if f.is_file() and not f.name.startswith((".", "_"))  # in progress, or _SUCCESS
    ]
    # Only fixed column names go into the SQL; every value is a parameter.
    where = "(transaction_id = ? AND user_id = ? AND event_time BETWEEN ? AND ?)"
    params: list[Any] = [str(row["transaction_id"]), str(row["user_id"]), t - SLACK_MS, t + SLACK_MS]
    if window is not None:
        where += f" OR ({window.key} = ? AND event_time > ? AND event_time <= ?)"
        params += [window.value, window.after, window.until]
    rows, problems = _read(files, where, params)

    seen: set[str] = set()
    matched: list[dict[str, Any]] = []
    for r in sorted(rows, key=lambda r: (-r["event_time"], r["transaction_id"] or "")):
        if r["transaction_id"] in seen:  # the archive holds each order once; a copy is shown once
            continue
        seen.add(r["transaction_id"])
        matched.append(archived_record(r))
    trigger = next(
        (r for r in matched if r["transaction_id"] == row["transaction_id"] and r.get("user_id") == row["user_id"]),
        None,
    )
    result["order"] = trigger
    if window is not None:
        inside = [
            r for r in matched if r.get(window.key) == window.value and window.after < r["event_time"] <= window.until
        ]
    else:
        inside = [trigger] if trigger is not None else []
    orders["items"], orders["total"] = inside[:MAX_ORDERS], len(inside)

    if problems:
        result["archive"] = "; ".join(problems[:3]) + (f" (and {len(problems) - 3} more)" if len(problems) > 3 else "")
    elif trigger is None:
        result["archive"] = _missing(settings, folder / partitions(t, t)[0], row)
    return result


def _missing(settings: Settings, hour: Path, row: dict[str, Any]) -> str:
    """Why the triggering order is not among the committed files."""
    if not settings.archive.enabled:
        return OFF
    in_progress = hour.is_dir() and any(f.name.startswith(".") for f in hour.iterdir())
    c = settings.checkpoint
    recent = time.time() * 1000 - (row.get("detected_at") or 0) < c.longest_interval_ms + c.timeout_ms
    return NOT_YET if in_progress or recent else NOT_FOUND
